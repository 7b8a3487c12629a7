"""Repair onto spare columns (`hardware.crossbar.spare_columns`, a known fault map): part of "fault_correct".

A column's harm is the error its stuck cells leave in its output once the chip has programmed around them
(`program_levels`) and `fault_correct` has moved the output's healthy weights and bias by least squares: for
output o with weight errors ``e`` on the weights S that have a stuck cell, and its inputs' second moments M
(over the calibration rows, the bias a constant input), ``H = min_d E[((e + d) . [x, 1])^2]`` over ``d`` on the
free weights F and the bias, ``= e_S^T (M_SS - M_SF M_FF^-1 M_FS) e_S`` (before rounding; a fixed core is not
corrected: ``e^T M e``). A column's harm is how much H falls when its stuck cells are taken away.

On each crossbar, the columns are taken in order of harm, most first; each is moved onto the free spare that
leaves its output the least H (a spare's own stuck cells count as the column's), if that is less than now, while
free spares are left (and at most `CANDIDATES_PER_SPARE` columns per spare are tried).
"""

from __future__ import annotations

import numpy as np

from dse.ir import ops as o
from dse.sim.device_noise import OK, CellLayout, program_levels

RIDGE = 1e-6  # relative ridge on the moment matrix (a constant input column, a dead input), here and in the correction
CANDIDATES_PER_SPARE = 4  # columns tried per spare column, most harmful first


class _Output:
    """One output channel of a core: its integer weights (stored scaled by `gain`), mask and input moments."""

    def __init__(self, layout: CellLayout, w: np.ndarray, gain: int, mask: np.ndarray, moments: np.ndarray,
                 correctable: bool):
        self.layout, self.w, self.gain, self.mask = layout, w, gain, mask
        self.m, self.correctable = moments, correctable

    def harm(self, cells: np.ndarray) -> float:
        """H of this output when its cells (slices, columns, fan-in) are stuck as `cells` says."""
        stored = program_levels(self.layout, self.w * self.gain, cells).astype(np.float64)
        e = (self.layout.weight(stored) / self.gain - self.w) * self.mask
        s = e != 0
        if not s.any():
            return 0.0
        es, si = e[s], np.append(s, False)
        block = self.m[np.ix_(si, si)]
        if self.correctable:
            free = np.append(~(cells != OK).any(axis=(0, 1)) & self.mask.astype(bool), True)
            a = self.m[np.ix_(free, free)]
            a = a + RIDGE * np.trace(a) / len(a) * np.eye(len(a))
            block = block - self.m[np.ix_(si, free)] @ np.linalg.solve(a, self.m[np.ix_(free, si)])
        return float(max(es @ block @ es, 0.0))


def repair(op: o.CoreOp, layout: CellLayout, faults: np.ndarray, spares: np.ndarray, crossbar: np.ndarray,
           moments: np.ndarray) -> np.ndarray | None:
    """The spare each physical column of `op` is read from (slices, columns, O; -1 its own cells), None when no
    column is worth repairing. `faults` (slices, columns, O, *fan-in), `spares` (crossbars, K, *fan-in),
    `crossbar` (O,) each output's crossbar, `moments` (groups, F+1, F+1) as `fault_correct._moments`."""
    w = np.asarray(op.quant.weight_int, np.int64)
    out_c = w.shape[0]
    sl, co = faults.shape[:2]
    cells = faults.reshape(sl, co, out_c, -1).copy()
    spare_cells = spares.reshape(*spares.shape[:2], -1)
    mask = np.ones(cells.shape[2:]) if op.mask is None else op.mask.reshape(out_c, -1)
    gain, per_group = layout.gain(w), out_c // op.groups
    w = w.reshape(out_c, -1)
    outputs = [_Output(layout, w[j], gain, mask[j], moments[j // per_group], not op.fixed) for j in range(out_c)]
    spare_of = np.full((sl, co, out_c), -1, np.int16)
    for b in range(spare_cells.shape[0]):
        free = list(range(spare_cells.shape[1]))
        for _, j, s, c in _by_harm(outputs, cells, np.flatnonzero(crossbar == b), CANDIDATES_PER_SPARE * len(free)):
            if not free:
                break
            now = outputs[j].harm(cells[:, :, j])
            trial = cells[:, :, j].copy()
            harms = []
            for k in free:
                trial[s, c] = spare_cells[b, k]
                harms.append(outputs[j].harm(trial))
            best = int(np.argmin(harms))
            if harms[best] < now:
                cells[s, c, j] = spare_cells[b, free[best]]
                spare_of[s, c, j] = free.pop(best)
    return spare_of if (spare_of >= 0).any() else None


def _by_harm(outputs: list[_Output], cells: np.ndarray, members: np.ndarray, count: int
             ) -> list[tuple[float, int, int, int]]:
    """(harm, output, slice, column) of the `count` columns of outputs `members` whose stuck cells do the most
    harm, most first (ties: lowest output, slice, column). A column's harm is at most its output's H, so the
    outputs are visited by H, most first, until the next cannot reach the `count` found (the same list as
    measuring every column, a fraction of the work)."""
    base = {int(j): outputs[j].harm(cells[:, :, j]) for j in members}
    found: list[tuple[float, int, int, int]] = []
    for j in sorted((j for j in base if base[j] > 0), key=lambda j: (-base[j], j)):
        if len(found) >= count and base[j] < found[count - 1][0]:
            break
        for s, c in zip(*np.nonzero((cells[:, :, j] != OK).any(axis=2)), strict=True):
            cleared = cells[:, :, j].copy()
            cleared[s, c] = OK
            harm = base[j] - outputs[j].harm(cleared)
            if harm > 0:
                found.append((harm, j, int(s), int(c)))
        found.sort(key=lambda f: (-f[0], f[1], f[2], f[3]))
    return found[:count]
