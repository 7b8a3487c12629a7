"""Threads: a compile computes on one torch thread and its big products on the caller's threads
(`dse.sim.threads`), with the same numbers whatever the thread count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dse.compile import compile, load_model, prepare
from dse.config import compose_config, hardware_from
from dse.sim import threads
from dse.sim.threads import compute_threads, conv_macs, op_threads
from dse.tune import TuneOptions

FEW_STEPS = TuneOptions(free_steps=4, range_steps=2, round_fractions=(0.5, 1.0), round_steps=2, spike_steps=2,
                        output_spike_steps=2, spike_calib_samples=50)


@pytest.fixture
def every_product_big(monkeypatch):
    """Every product counts as big: it runs on all the caller's threads."""
    monkeypatch.setattr(threads, "BIG_OP_MACS", 0)


def test_small_products_run_on_one_thread_big_ones_on_the_callers(monkeypatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "BIG_OP_MACS", 1000)
    with compute_threads(2):
        assert torch.get_num_threads() == 1
        with op_threads(999):
            assert torch.get_num_threads() == 1
        with op_threads(1000):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with op_threads(10**9):  # outside a compile: the caller's setting stands
        assert torch.get_num_threads() == before


def test_macs_of_a_convolution_and_a_matrix_product() -> None:
    assert conv_macs(torch.Size([10, 3, 8, 8]), torch.Size([4, 3, 3, 3]), (2, 2)) == 10 * 4 * 27 * 16
    assert conv_macs(torch.Size([10, 20]), torch.Size([5, 20])) == 10 * 5 * 20


@pytest.mark.parametrize("chip", ["chip_a", pytest.param("chip_b", marks=pytest.mark.slow)])
def test_a_compile_is_bit_identical_on_one_and_two_threads(every_product_big, chip: str) -> None:
    graph, data = load_model("lenet_mnist", "mnist", calib_samples=120, test_samples=60)
    hw = hardware_from(compose_config("compile", [f"hardware={chip}"]).hardware)
    runs = []
    for n in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            prepared = prepare(graph, data, name="lenet_mnist")
            result = compile(prepared, hw, tuning=FEW_STEPS)
        finally:
            torch.set_num_threads(before)
        runs.append((prepared, result))
    (p1, r1), (p2, r2) = runs
    assert np.array_equal(p1.original_test_logits, p2.original_test_logits)
    assert r1.layers == r2.layers and r1.report.verify == r2.report.verify
    assert r1.report.metrics == r2.report.metrics
    for a, b in zip(r1.graph, r2.graph, strict=True):
        if getattr(a.op, "quant", None) is not None:
            assert np.array_equal(a.op.quant.weight_int, b.op.quant.weight_int)
            assert np.array_equal(a.op.quant.out_scale, b.op.quant.out_scale)
