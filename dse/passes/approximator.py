"""The MLP universal approximator: an element-wise function the chip lacks, as one hidden layer of ReLUs.

``f(s) ~ c + sum_k a_k relu(s - t_k)``: a continuous piecewise-linear function with `width` hinges at the
knots `t_k`, placed at quantiles of the values that really reach the function (so resolution goes where the
data is), its coefficients fitted by least squares on those values plus a uniform grid over their range (so
the fit holds between samples). The constant `c` is carried by one always-on neuron per channel, so a zero
padding downstream still sees zero, as in the original network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dse.ir import ops as o

# The element-wise ops the chip lacks, by IR op type, as functions of the op and a float64 array. (HardSigmoid is
# piecewise linear and imports exactly as a ScaleShift and a Clip; HardSwish, x * HardSigmoid(x), is quadratic on
# [-3, 3]; Silu is x * Sigmoid(x); Gelu is x * Phi(x), Phi the normal distribution function, whose erf numpy
# lacks: torch's, in float64; Elu is ELU and SELU; Mish is x * tanh(softplus(x)).)
FUNCTIONS: dict[type[o.Op], Callable[[o.Op, np.ndarray], np.ndarray]] = {
    o.Sigmoid: lambda op, x: 1.0 / (1.0 + np.exp(-x)),
    o.Tanh: lambda op, x: np.tanh(x),
    o.HardSwish: lambda op, x: x * np.clip(x / 6.0 + 0.5, 0.0, 1.0),
    o.Silu: lambda op, x: x / (1.0 + np.exp(-x)),
    o.Gelu: lambda op, x: torch.nn.functional.gelu(torch.from_numpy(np.asarray(x, np.float64)),
                                                    approximate=op.approximate).numpy(),
    o.Elu: lambda op, x: op.gamma * np.where(x > 0, x, op.alpha * np.expm1(np.minimum(x, 0.0))),
    o.Softplus: lambda op, x: np.logaddexp(0.0, x),
    o.Mish: lambda op, x: x * np.tanh(np.logaddexp(0.0, x)),
}
DEFAULT_RANGE = (-8.0, 8.0)  # used when no sample of the input is known


@dataclass(frozen=True)
class HingeFit:
    knots: np.ndarray  # (width,)
    coeffs: np.ndarray  # (width,)
    const: float
    max_error: float  # on the fitting points

    def __call__(self, s: np.ndarray) -> np.ndarray:
        return self.const + (np.maximum(s[..., None] - self.knots, 0.0) * self.coeffs).sum(axis=-1)

    @property
    def lowest(self) -> float:
        """The fit's minimum up to its last knot: below the first knot it is `const`, between knots linear. Beyond
        the last knot its slope is the sum of the coefficients: > 0 for GELU, SiLU, Mish, HardSwish, ELU and
        Softplus (about their slope there), about 0 for Sigmoid and Tanh, which saturate, and may be slightly
        negative: past the calibration range the fit can then go below this, where the function itself does not
        (every function here is bounded below: GELU at -0.17, SiLU -0.28, Mish -0.31, HardSwish -0.375, Tanh -1,
        ELU -alpha * gamma, Sigmoid and Softplus 0)."""
        return float(min(self.const, self(self.knots).min()))


def fit_hinges(fn: Callable[[np.ndarray], np.ndarray], samples: np.ndarray | None, width: int) -> HingeFit:
    """`samples`: finite values (the caller refuses others, naming its node)."""
    if width < 2:
        raise ValueError("the approximator needs at least 2 hidden units")
    if samples is None or samples.size == 0:
        lo, hi = DEFAULT_RANGE
        data = np.linspace(lo, hi, 4001)
    else:
        data = np.asarray(samples, dtype=np.float64).reshape(-1)
        if data.size > 200_000:
            data = np.random.default_rng(0).choice(data, 200_000, replace=False)
        lo, hi = np.quantile(data, [0.0005, 0.9995])
        # a range too narrow to hold `width` distinct knots, relative to its magnitude (at 1e30, 1e30 + 1 is
        # 1e30): widened, so that the fill below ends
        pad = max(1.0, 1e-6 * max(abs(lo), abs(hi)))
        if hi - lo < 1e-6 * pad:
            lo, hi = lo - pad, hi + pad
    # the first knot sits at the bottom of the range: below it the fit is the constant, as a saturating f is
    knots = np.unique(np.concatenate([[lo], np.quantile(np.clip(data, lo, hi), np.linspace(0, 1, width + 1)[1:-1])]))
    fill = width - knots.size
    while knots.size < width:  # ties in the data: fill with evenly spaced knots, more each time one collides
        knots = np.unique(np.concatenate([knots, np.linspace(lo, hi, fill + 2)[1:-1]]))
        fill *= 2
    knots = np.sort(knots)[:width]
    points = np.concatenate([np.clip(data, lo, hi), np.linspace(lo, hi, 2001)])
    basis = np.concatenate([np.ones((points.size, 1)), np.maximum(points[:, None] - knots, 0.0)], axis=1)
    target = fn(points)
    solution, *_ = np.linalg.lstsq(basis, target, rcond=None)
    fit = HingeFit(knots, solution[1:], float(solution[0]), 0.0)
    return HingeFit(knots, solution[1:], float(solution[0]), float(np.abs(fit(points) - target).max()))
