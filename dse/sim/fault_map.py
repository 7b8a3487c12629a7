"""`python -m dse.sim.fault_map`: write the stuck cells of one drawn chip, for `hardware.device.fault_map`.

    python -m dse.sim.fault_map RUN/compiled.npz faults.npz --stuck-low 0.005 --stuck-high 0.005 [--seed 0]
        [--spare-columns K]

RUN is a compile's run folder (its compiled.npz names the chip and holds the crossbars). The file holds one
int8 array per core-op, named by it, of its cells (slices, columns, *weight shape): 0 working, 1 stuck at the
lowest level, 2 stuck at the highest (`dse.sim.device_noise`); on a chip with spare columns
(`hardware.crossbar.spare_columns`, or `--spare-columns K` for a chip that has K), one more per core-op,
`spare_columns/<core-op>`, of its crossbars' spare columns' cells (crossbars, K, *fan-in; `dse.sim.spares`).
The crossbars depend on the network and the chip's crossbar, weights and strategy, not on tuning: the map
serves every compile of that network and chip. Exit status 2 with one line on bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import zipfile

import numpy as np

from dse.bounds import check_int
from dse.errors import DseError
from dse.files import atomic_write, not_an_npz, npz_shapes
from dse.hardware.spec import HardwareSpec
from dse.ir.serialize import load_graph
from dse.sim.device_noise import HIGH, LOW, draw_fault_map, not_a_fault_map


def write_fault_map(compiled: str, out: str, stuck_low: float, stuck_high: float, seed: int,
                    spare_columns: int | None = None) -> dict[str, int]:
    """Draw and save the map (for `spare_columns` spares per crossbar; None: the compiled chip's); returns the
    stuck cells by kind."""
    check_int("--seed", seed, 0)  # the seed starts numpy streams
    _check_not_the_input(compiled, out)
    try:
        graph, meta = load_graph(compiled)
    except (OSError, ValueError, KeyError) as e:
        raise DseError(f"{compiled}: not a compiled network ({e})") from None
    hw = HardwareSpec.from_dict(meta["report"]["hardware"])
    device = dataclasses.replace(hw.device, stuck_low=stuck_low, stuck_high=stuck_high, fault_map=None)
    crossbar = hw.crossbar if spare_columns is None else dataclasses.replace(hw.crossbar, spare_columns=spare_columns)
    hw = dataclasses.replace(hw, device=device, crossbar=crossbar)
    hw.validate()
    faults = draw_fault_map(graph, hw, seed)
    atomic_write(out, lambda tmp: _save(tmp, faults))  # a folder that takes no file: one line; never half a map
    cells = sum(f.size for f in faults.values())
    return {"cells": cells, "stuck_low": int(sum((f == LOW).sum() for f in faults.values())),
            "stuck_high": int(sum((f == HIGH).sum() for f in faults.values()))}


def _check_not_the_input(compiled: str, out: str) -> None:
    """The map written over the compiled network (the two names swapped, or one pasted twice) lost the compile;
    written over any other file that is not a fault map (a run's report.json, another run's compiled.npz, a
    dataset's .npz), it lost that file. A fault map (or an archive of no arrays) is written over (drawn again).
    What an existing .npz holds is told from its arrays' headers (`npz_shapes`): a dataset is not read."""
    try:
        same = os.path.samefile(compiled, out)
    except OSError:  # either is missing: the read or the write names it
        same = False
    if same:
        raise DseError(f"{out} is the compiled network {compiled}; name another file for the fault map")
    if not os.path.isfile(out):
        return
    problem = not_an_npz(out)
    if problem is None:
        try:
            shapes = npz_shapes(out)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            problem = f"an unreadable .npz ({e})"
        else:
            held = not_a_fault_map(shapes) if shapes else None
            problem = None if held is None else f"it holds {held}"
    if problem:
        raise DseError(f"{out} exists and is not a fault map ({problem}); name another file for the fault map")


def _save(path: str, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: numpy adds no ".npz" to a name without it
        np.savez_compressed(f, **arrays)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m dse.sim.fault_map", description=__doc__.split("\n")[0])
    parser.add_argument("compiled", help="a compile's compiled.npz")
    parser.add_argument("out", help="the fault map to write (.npz)")
    parser.add_argument("--stuck-low", type=float, default=0.005, help="fraction of cells stuck low (default 0.005)")
    parser.add_argument("--stuck-high", type=float, default=0.005, help="fraction of cells stuck high (default 0.005)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--spare-columns", type=int, default=None,
                        help="spare columns per crossbar of the chip the map is for (default: the compiled chip's)")
    args = parser.parse_args(argv)
    try:
        counts = write_fault_map(args.compiled, args.out, args.stuck_low, args.stuck_high, args.seed,
                                 args.spare_columns)
    except DseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{args.out}: {counts['stuck_low']} cells stuck low, {counts['stuck_high']} stuck high "
          f"of {counts['cells']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
