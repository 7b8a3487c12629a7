"""Post-training-quantization options: bias correction against its closed form, and each option switched on
through `compile` (legal, recorded in the report)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dse.compile import Prepared, compile
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.tune import TuneOptions
from dse.tune.qcore import QCore


@pytest.mark.parametrize("dense", [True, False])
def test_bias_correction_removes_the_mean_error_of_rounding_where_the_neuron_is_active(dense: bool) -> None:
    """After rounding W to 4-bit codes, the pre-activation differs from the float one by (W_q - W) x; on the
    inputs where the float neuron is active its mean is taken back, only the bias's own rounding is left
    (half a weight step at most)."""
    rng = np.random.default_rng(0)
    shape = (6, 20, 1, 1) if dense else (6, 3, 3, 3)
    w = rng.standard_normal(shape).astype(np.float32)
    op = o.CoreOp(w, rng.standard_normal(6).astype(np.float32), padding=(0,) * 4 if dense else (1,) * 4,
                  dense=dense)
    in_scale = torch.full((shape[1],), 0.1)
    # inputs far from zero mean (as ReLU outputs are): rounding errors do not cancel
    x = torch.round(torch.rand(256, *((shape[1],) if dense else (shape[1], 5, 5))) * 15) * 0.1 + 0.3

    def mean_error(correct: bool) -> np.ndarray:
        core = QCore(op, in_scale, 15, 7, per_column=False)
        with torch.no_grad():
            exact = core.pre(x)
            core.round_weights(keep_target=correct)
            if correct:
                core.correct_bias([x[:100], x[100:]])
            got = core.pre(x / (in_scale if dense else in_scale.reshape(-1, 1, 1)))
            err, on = ((v.transpose(0, 1).reshape(6, -1)) for v in (got - exact, exact > 0))
        return ((err * on).sum(dim=1) / on.sum(dim=1)).numpy(), core.ws.numpy()

    plain, _ = mean_error(False)
    corrected, step = mean_error(True)
    assert np.all(np.abs(corrected) <= step / 2 + 1e-5)
    assert np.abs(corrected).max() < np.abs(plain).max()


def chip(scale: str = "per_crossbar") -> HardwareSpec:
    return HardwareSpec(name="w4", crossbar=Crossbar(256, 256, 4, True), weights=Weights(4, scale), io=IO(4, 4))


SHORT = dict(free_steps=20, range_steps=5, round_steps=3, output_loss="mse")


@pytest.mark.parametrize("tuning", [TuneOptions(mode="none", bias_correction=True, equalize=True),
                                    TuneOptions(**SHORT, bias_correction=True, equalize=True)],
                         ids=["none", "multiphase"])
def test_every_option_together_compiles_legal_and_is_recorded(prepared: Prepared, tuning: TuneOptions) -> None:
    result = compile(prepared, chip("per_column"), tuning=tuning)
    assert result.legal, result.violations[:3]
    assert result.report.equalize and result.report.bias_correction
    assert result.report.verify.integer_vs_quantized_agreement == 1.0
    assert result.report.resources.weight_scales == sum(lr["neurons"] for lr in result.layers)
    if tuning.mode == "multiphase":  # the tuner weighed the rounded start with its biases corrected
        assert all("rounded_start_bias_corrected" in b.losses for b in result.blocks)


def test_per_column_scales_differ_by_column_and_per_crossbar_ones_do_not(prepared: Prepared) -> None:
    for scale in ("per_crossbar", "per_column"):
        result = compile(prepared, chip(scale), tuning=TuneOptions(mode="none"))
        assert result.legal
        spreads = [np.ptp(n.op.quant.weight_scale) for n in result.graph if isinstance(n.op, o.CoreOp)]
        assert (max(spreads) > 0) == (scale == "per_column")
