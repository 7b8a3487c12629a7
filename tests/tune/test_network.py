"""End-to-end noise-aware tuning of a spiking network (dse/tune/network.py): its forward pass is the spiking
simulator's (`spike_graph` with `SPIKING_EXEC`'s rules, its own rule for a core only); it trains on drawn chips,
keeps the chip's integers and masks, is reproducible, and runs only where asked."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dse.compile import compile, load_model, prepare
from dse.config import compose_config, hardware_from
from dse.errors import ConfigError
from dse.hardware.device import Device
from dse.ir import ops as o
from dse.ir.shapes import infer_shapes
from dse.sim.spiking import run_spiking
from dse.tune import TuneOptions, network
from dse.tune.losses import BlockLoss, BlockReport, host_loss
from dse.tune.network import _Chip, _cores, _forward, tune_network

CHIP_B = hardware_from(compose_config("compile", ["hardware=chip_b"]).hardware)
MISMATCHED = dataclasses.replace(CHIP_B, device=Device(threshold_mismatch=0.2, weight_mismatch=0.05))
SHORT = TuneOptions(network_steps=20, network_check_steps=5, network_batch=16, network_held=16, noise_checks=2)


@pytest.fixture(scope="module")
def lenet():
    """lenet_mnist compiled for chip_b by rounding (fast), and a few calibration images with the teacher's
    logits."""
    graph, data = load_model("lenet_mnist", "mnist", calib_samples=64, test_samples=32)
    prepared = prepare(graph, data, name="lenet")
    compiled = compile(prepared, CHIP_B, tuning=TuneOptions(mode="none")).graph
    x = prepared.calib_x[:48]
    target = torch.as_tensor(prepared.teachers.calibration(prepared.exact)(prepared.exact.outputs[0])[:48])
    return compiled, prepared, x, target


def test_its_forward_pass_is_the_spiking_simulators(lenet) -> None:
    """On the exact chip the phase's forward pass (real spikes, the model only in the gradient) gives the
    simulator's outputs exactly."""
    compiled, prepared, x, _ = lenet
    got = _forward(compiled, x, CHIP_B, _cores(compiled, infer_shapes(compiled)), None)
    want, _, _ = run_spiking(compiled, CHIP_B.neuron, x.numpy(), batch_size=len(x))
    np.testing.assert_array_equal(got.detach().numpy(), want)


def test_a_drawn_chip_gives_each_image_its_own_thresholds(lenet) -> None:
    """A drawn chip moves the outputs; the same key draws the same chip."""
    compiled, _, x, _ = lenet
    exact = _forward(compiled, x, CHIP_B, _cores(compiled, infer_shapes(compiled)), None)
    drawn = [_forward(compiled, x, MISMATCHED, _cores(compiled, infer_shapes(compiled)), _Chip(MISMATCHED, [0, k]))
             for k in (1, 1, 2)]
    assert not torch.equal(drawn[0], exact)
    assert torch.equal(drawn[0], drawn[1])
    assert not torch.equal(drawn[0], drawn[2])


def test_it_keeps_the_chips_integers_and_is_reproducible(lenet) -> None:
    compiled, _, x, target = lenet
    reports: list[BlockReport] = []
    tuned = [tune_network(compiled, MISMATCHED, x, target, SHORT, reports if k == 0 else None) for k in range(2)]
    wmax = CHIP_B.weight_max
    moved = False
    for before, after, again in zip(*(g.of_type(o.CoreOp) for g in (compiled, *tuned)), strict=True):
        w, w0 = np.asarray(after.op.quant.weight_int), np.asarray(before.op.quant.weight_int)
        assert w.dtype == w0.dtype and np.abs(w).max() <= wmax
        if before.op.mask is not None:
            assert not w[np.asarray(before.op.mask) == 0].any()
        if before.op.fixed:  # max-pooling cores are exact: never trained
            assert np.array_equal(w, w0) and np.array_equal(after.op.quant.bias_int, before.op.quant.bias_int)
        moved |= not np.array_equal(w, w0) or not np.array_equal(after.op.quant.bias_int, before.op.quant.bias_int)
        assert np.array_equal(w, np.asarray(again.op.quant.weight_int))
        assert np.array_equal(after.op.quant.bias_int, again.op.quant.bias_int)
    (report,) = reports
    assert report.name == "network" and 0 < report.steps["network"] <= SHORT.network_steps
    assert report.losses["network"] <= report.losses["network_start"]
    assert moved == (report.losses["network"] < report.losses["network_start"])


def test_it_runs_only_with_noise_aware_tuning_on_a_spiking_chip_with_a_device(lenet) -> None:
    _, prepared, _, _ = lenet
    fast = dataclasses.replace(SHORT, free_steps=10, range_steps=10, round_fractions=(1.0,), spike_steps=5,
                               output_spike_steps=5, spike_calib_samples=48)

    def blocks(hw, **kw):
        report = compile(prepared, hw, tuning=dataclasses.replace(fast, **kw)).report.to_dict()
        return [b["name"] for b in report["blocks"]]

    assert "network" in blocks(MISMATCHED, noise_aware=True)
    assert "network" not in blocks(MISMATCHED, noise_aware=True, network_steps=0)
    assert "network" not in blocks(MISMATCHED, noise_aware=False)
    assert "network" not in blocks(CHIP_B, noise_aware=True)  # an ideal device: nothing to be aware of


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"network_steps": -1}, "tuning.network_steps must be an integer >= 0"),
    ({"network_temperature": 0.0}, "tuning.network_temperature must be > 0"),
    ({"network_batch": 0}, "tuning.network_batch must be an integer >= 1"),
    ({"network_held": 0}, "tuning.network_held must be an integer >= 1"),
])
def test_bad_values_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TuneOptions(**kwargs)


def test_its_loss_is_the_output_loss_the_options_name() -> None:
    """`tuning.output_loss` as for the output block: distillation of class scores at the phase's temperature,
    the squared error over the teacher's variance for `mse` or for outputs that are not class scores."""
    gen = torch.Generator().manual_seed(0)
    got, want = torch.randn(8, 10, generator=gen), torch.randn(8, 10, generator=gen)
    t = SHORT.network_temperature
    mse = torch.nn.functional.mse_loss(got, want) / (want.var() + 1e-12)
    kd = torch.nn.functional.kl_div(torch.log_softmax(got / t, 1), torch.log_softmax(want / t, 1), log_target=True,
                                    reduction="batchmean") * t**2

    def loss(output_loss: str, target: torch.Tensor) -> BlockLoss:
        return host_loss(target, output_loss, temperature=t)

    assert torch.allclose(loss("kd", want)(got, want), kd)
    assert torch.allclose(loss("mse", want)(got, want), mse)
    assert torch.allclose(loss("mse+kd", want)(got, want), mse + kd)
    maps = torch.randn(2, 3, 4, 4, generator=gen)  # not class scores: the squared error
    assert torch.allclose(loss("kd", maps)(maps + 1, maps), 1 / (maps.var() + 1e-12))


def test_held_out_images_run_in_chunks_where_they_are_many(lenet, monkeypatch) -> None:
    compiled, _, x, target = lenet
    monkeypatch.setattr(network, "HELD_FLOATS", 1)  # one image at a time
    reports: list[BlockReport] = []
    tune_network(compiled, MISMATCHED, x, target, dataclasses.replace(SHORT, network_steps=5), reports)
    assert np.isfinite(reports[0].losses["network_start"])
