"""Differentiable quantizers (straight-through estimators) and scale search."""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def round_ste(x: Tensor) -> Tensor:
    """round(x) forward, identity backward."""
    return x + (torch.round(x) - x).detach()


class _RoundClamp(torch.autograd.Function):
    """``clamp(round(x), lo, hi)`` forward; backward the gradient where the rounded value lies in [lo, hi],
    0 elsewhere: what ``torch.clamp(round_ste(x), lo, hi)`` computes, in two operations instead of four
    forward and with one saved mask instead of clamp's comparisons backward (every training step of the
    code domain runs it on every core's output). The mask is where clamping left the rounded value as it was:
    one comparison instead of two and their conjunction, 35 to 50 % less time for the three (a NaN or an
    infinity is outside either way)."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: float, hi: float) -> Tensor:  # noqa: D102
        r = torch.round(x)
        clamped = r.clamp(lo, hi)
        ctx.save_for_backward(clamped == r)
        return clamped

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: D102
        (inside,) = ctx.saved_tensors
        return torch.where(inside, grad, torch.zeros((), dtype=grad.dtype)), None, None


def round_clamp_ste(x: Tensor, lo: float, hi: float) -> Tensor:
    """``clamp(round(x), lo, hi)`` with the straight-through gradient inside the range (see `_RoundClamp`)."""
    return _RoundClamp.apply(x, lo, hi)


def fake_quant_act(y: Tensor, scale: Tensor, qmax: int) -> Tensor:
    """A ReLU neuron's output code, as a value: ``clamp(round(y / s), 0, qmax) * s``.

    The gradient with respect to `scale` is that of LSQ (Esser et al., 2020): ``round(v) - v`` inside the
    range, ``qmax`` above it.
    """
    v = torch.clamp(y / scale, 0, qmax)
    return round_ste(v) * scale


def best_act_scale(y: Tensor, qmax: int, candidates: int = 40) -> float:
    """The step that minimizes the MSE of quantizing `y` (>= 0) to codes 0..qmax, by grid search over clips."""
    y = y.detach().flatten().float()
    top = float(y.max())
    if top <= 0:
        return 1.0
    if y.numel() > 200_000:
        y = y[torch.randint(0, y.numel(), (200_000,), generator=torch.Generator().manual_seed(0))]
    best, best_err = top / qmax, float("inf")
    for frac in torch.linspace(0.2, 1.0, candidates):
        s = top * float(frac) / qmax
        err = float(((torch.clamp(torch.round(y / s), 0, qmax) * s - y) ** 2).mean())
        if err < best_err:
            best, best_err = s, err
    return best


SCALE_SAMPLE = 2**20  # weights the candidate steps are compared on; a larger tensor is sampled by columns


def best_weight_scale(w: Tensor, wmax: int, per_column: bool, candidates: int = 40,
                      stored: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Per-column (or one) weight step minimizing ``|w - s * stored(clamp(round(w / s), -wmax, wmax))|^2``;
    `stored(codes)`: the weights a chip holds for integer codes (noise-aware tuning: one drawn chip, the same
    for every candidate, `dse.tune.noise`), else the codes themselves.

    The candidates are steps of a clip between 0.3 and 1 times the largest |weight| (over the whole tensor);
    their errors are measured on at most `SCALE_SAMPLE` weights, a fixed sample of the columns of a larger
    tensor (VGG's FC1, 103 M weights: 40 candidates over all of them in float64 took minutes)."""
    flat = w.detach().reshape(w.shape[0], -1)
    top = flat.abs().amax(dim=1) if per_column else flat.abs().max().expand(w.shape[0])
    top = torch.where(top > 0, top, torch.ones_like(top)).double()
    rows, cols = flat.shape
    keep = min(cols, max(SCALE_SAMPLE // rows, 256 if per_column else 1))
    if keep < cols:
        flat = flat[:, torch.randperm(cols, generator=torch.Generator().manual_seed(0))[:keep].sort().values]
    flat = flat.double()
    best = top / wmax
    best_err = torch.full_like(top, float("inf"))
    for frac in torch.linspace(0.3, 1.0, candidates, dtype=torch.float64):
        s = top * frac / wmax
        q = torch.clamp(torch.round(flat / s[:, None]), -wmax, wmax)
        q = (q if stored is None else stored(q)) * s[:, None]
        err = ((q - flat) ** 2).sum(dim=1)
        if not per_column:
            err = err.sum().expand_as(err)
        better = err < best_err
        best = torch.where(better, s, best)
        best_err = torch.where(better, err, best_err)
    return best.float()
