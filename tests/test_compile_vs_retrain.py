"""The retraining side of bench/compile_vs_retrain.py meets the chip's constraints it claims to."""

from __future__ import annotations

import torch

from bench.compile_vs_retrain import Limits, QatLeNet, tile_quant
from dse.data.train_models import load_trained


def test_tile_quant_one_scale_per_crossbar_tile() -> None:
    w = torch.randn(150, 400, generator=torch.Generator().manual_seed(0))
    lim = Limits(weight_max=7, rows=256, cols=64, input_max=15, act_max=15, out_max=15)
    q = tile_quant(w, lim)
    for r in (slice(0, 256), slice(256, 400)):
        for c in (slice(0, 64), slice(64, 128), slice(128, 150)):
            tile, step = q[c, r], w[c, r].abs().max() / 7
            codes = tile / step
            assert torch.allclose(codes, codes.round(), atol=1e-4)  # one step for the whole tile
            assert codes.abs().max() <= 7 + 1e-4


def test_qat_lenet_with_wide_codes_is_the_float_network() -> None:
    """At 16-bit everything the quantized network computes the float one (a differential check)."""
    base = load_trained("lenet_mnist")
    x = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    x = torch.round(x * 65535) / 65535  # on the input grid
    big = 2**15 - 1
    model = QatLeNet(load_trained("lenet_mnist"), Limits(big, 256, 64, 65535, 65535, big))
    model.calibrate(x)
    with torch.no_grad():
        ref, got = base(x), model(x)
    assert (got - ref).abs().max() / ref.abs().max() < 2e-3
