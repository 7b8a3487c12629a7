"""A population readout (`strategy.readout_k`): the outputs the host reads are carried by k neurons each, with
thresholds one full count range apart, and the host sums the copies. On a spiking chip a logit of one pair of
neurons takes only 2T + 1 values; k copies give finer logits for a few neurons more."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from compiler_helpers import run_pass

from dse.compile import CompileResult, Prepared, compile
from dse.config import compose_config, hardware_from
from dse.errors import ConstraintError
from dse.hardware.legality import check
from dse.ir import ops as o
from dse.tune.options import TuneOptions

SHORT = TuneOptions(free_steps=60, range_steps=20, round_steps=10, spike_steps=30)


def chip(name: str):
    return hardware_from(compose_config("compile", [f"hardware={name}"]).hardware)


@pytest.fixture(scope="module")
def spiking(prepared: Prepared) -> dict[int, CompileResult]:
    # the default tuning but for the output loss: the copies' thresholds are fitted to the dynamics in the
    # spike-aware steps, and the logits match the original's values (finer values are what the copies are for)
    return {k: compile(prepared, chip("chip_b"), tuning=TuneOptions(output_loss="mse"), readout_k=k) for k in (1, 4)}


def test_only_the_cores_the_host_reads_are_copied(prepared: Prepared) -> None:
    graph = run_pass("reencode", prepared.exact, chip("chip_b"), k=1, readout_k=3)
    cores = [n for n in graph if isinstance(n.op, o.CoreOp)]
    read = {n.inputs[0] for n in graph if isinstance(n.op, o.Readout)}
    assert read and all(n.op.population == (3 if n.name in read else 1) for n in cores)
    for n in cores:
        if n.name in read:
            before = prepared.exact[n.name].op
            np.testing.assert_array_equal(n.op.weight, np.concatenate([before.weight] * 3))
    assert [n.op.population for n in graph if isinstance(n.op, o.Readout)] == [3]


def test_a_spiking_chip_refuses_reencoding_but_not_a_population_readout(prepared: Prepared) -> None:
    with pytest.raises(ConstraintError, match="reencode_k > 1"):
        run_pass("reencode", prepared.exact, chip("chip_b"), k=2)
    with pytest.raises(ConstraintError, match="readout_k must be an integer >= 1"):
        run_pass("reencode", prepared.exact, chip("chip_b"), readout_k=0)


def test_a_population_readout_gives_a_spiking_chip_finer_logits(spiking: dict[int, CompileResult]) -> None:
    one, four = spiking[1], spiking[4]
    assert one.legal and four.legal, four.violations[:3]
    assert check(four.graph, chip("chip_b")) == []
    logits = [n.op for n in four.graph if isinstance(n.op, o.CoreOp)][-1]
    assert logits.population == 4 and logits.out_channels == 4 * 2 * 10
    # copy i's bias sits i full count ranges (T spikes) below copy 0's
    q = logits.quant
    step = q.out_scale / q.weight_scale[0]
    bias = q.bias_int.reshape(4, -1)
    np.testing.assert_allclose(bias[0] - bias[3], 3 * 16 * step, atol=1.0)
    # the logits the host decodes are closer to the original's (the block's error over the calibration set)
    assert four.blocks[-1].losses["final"] < 0.85 * one.blocks[-1].losses["final"]
    assert four.report.metrics.logits_rel_error < one.report.metrics.logits_rel_error
    assert four.report.resources.crossbars == one.report.resources.crossbars  # 60 neurons more


def test_a_population_readout_on_a_quantized_chip_is_exact(prepared: Prepared) -> None:
    hw = dataclasses.replace(chip("chip_a"))
    result = compile(prepared, hw, tuning=SHORT, readout_k=2)
    assert result.legal and result.report.verify.integer_vs_quantized_agreement == 1.0
    assert result.report.metrics.accuracy_delta_pp < 3
