"""When a training phase is done: the patience rule on held-out rows, shared by every phase (dse/tune/phases.py,
dse/tune/spiking.py).

Every `check_steps` steps the phase's loss is measured on the held-out rows of its block (rows of the
calibration data that no step trains on, `Fit.held` / the spiking phase's own). A check *improves* when its
loss is below ``(1 - min_improvement)`` times the last improving one (the phase's start counts as one); after
`patience` checks in a row without improving, or after the phase's step cap, the phase ends. The parameters
of the lowest loss measured (the start included) are the ones kept, and that loss is the phase's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

S = TypeVar("S")  # a copy of the parameters being trained


@dataclass
class Patience:
    patience: int  # checks in a row without improving that end the phase
    min_improvement: float  # relative: an improving check's loss is below (1 - this) times the reference
    reference: float  # the last improving loss (the start's at first)
    lowest: float  # the lowest loss measured so far
    misses: int = 0

    def check(self, loss: float) -> bool:
        """Record a held-out loss; True when it is the lowest so far (NaN never is)."""
        if loss < self.reference * (1 - self.min_improvement):
            self.reference, self.misses = loss, 0
        else:
            self.misses += 1
        if loss < self.lowest:
            self.lowest = loss
            return True
        return False

    @property
    def done(self) -> bool:
        return self.misses >= self.patience


def train_until_done(rule: Patience, max_steps: int, check_steps: int, step: Callable[[], None],
                     measure: Callable[[], float], save: Callable[[], S], load: Callable[[S], None]) -> int:
    """Run `step` up to `max_steps` times, measuring every `check_steps` steps (and after the last) until `rule`
    says the phase is done; leave the parameters of the lowest loss measured (`save`d at the start and at
    each new lowest, `load`ed back unless they are the current ones). Returns the steps run."""
    best, best_is_current, steps = save(), True, 0
    while steps < max_steps and not rule.done:
        step()
        steps += 1
        best_is_current = False
        if steps % check_steps == 0 or steps == max_steps:
            if rule.check(measure()):
                best, best_is_current = save(), True
    if not best_is_current:
        load(best)
    return steps


def copy_params(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Copies of `params`: the `save` of a phase that trains plain tensors."""
    return [p.detach().clone() for p in params]


def load_params(params: list[torch.Tensor], copies: list[torch.Tensor]) -> None:
    """`copy_params`'s copies back into `params`: the matching `load`."""
    with torch.no_grad():
        for p, c in zip(params, copies, strict=True):
            p.copy_(c)
