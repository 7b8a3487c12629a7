"""Spare columns (`hardware.crossbar.spare_columns`): the cells a chip reads a repaired column from.

A physical column of a core is what its fault map's cell array (slices, columns, O, *fan-in) calls one: one bit
slice of one side of one output, its fan-in cells. Each crossbar of the core (the output channels it holds,
`dse.cost.resources.channel_crossbars`) carries `spare_columns` more, each with cells of its own on the rows
that crossbar reads. A fault map holds them per core under `spare_key(core)`: (crossbars,
spare_columns or more (the first serve), *fan-in), the cell a spare has on the row of fan-in position f (a
grouped crossbar's groups stack their rows: there the spare's cell of position f is taken as one, whichever
group's column it replaces).

The compiled core records its repairs in `CoreQuant.spare_of` (slices, columns, O): the spare (0 ..
spare_columns-1, of the crossbar holding output o) each column is read from, -1 for its own cells.
`chip_cells` gives the cells the chip really computes with: the core's own, a repaired column's from its spare.
"""

from __future__ import annotations

import numpy as np

from dse.cost.resources import crossbar_of
from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph

PREFIX = "spare_columns/"  # a fault map's key of a core's spare cells: PREFIX + the core's name


def spare_key(core: str) -> str:
    return PREFIX + core


def spare_shape(op: o.CoreOp, hw: HardwareSpec) -> tuple[int, ...]:
    """The cells of a core's spare columns: (crossbars, spare_columns, *fan-in)."""
    crossbars = int(crossbar_of(op, hw).max(initial=-1)) + 1
    return (crossbars, hw.crossbar.spare_columns, *op.weight.shape[1:])


def chip_cells(faults: np.ndarray, spares: np.ndarray | None, spare_of: np.ndarray | None,
               crossbar: np.ndarray) -> np.ndarray:
    """The stuck cells a core computes with (slices, columns, O, *fan-in): its own `faults`, except that a
    column repaired onto spare k (`spare_of`) has the cells of spare k of its crossbar (`spares`)."""
    if spare_of is None or not (spare_of >= 0).any():
        return faults
    out = faults.copy()
    s, c, j = np.nonzero(spare_of >= 0)
    out[s, c, j] = spares[crossbar[j], spare_of[s, c, j]]
    return out


def chip_fault_map(graph: Graph, hw: HardwareSpec, faults: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per core-op, the stuck cells the chip computes with (`chip_cells`) under the compiled cores' repairs."""
    out = {}
    for node in graph.of_type(o.CoreOp):
        spare_of = node.op.quant.spare_of if node.op.quant is not None else None
        spares = faults.get(spare_key(node.name))
        if spare_of is not None and spares is None:
            raise ConfigError(f"fault map: crossbar {node.name!r} reads repaired columns from spare columns the "
                              f"map does not hold ({spare_key(node.name)!r})")
        out[node.name] = chip_cells(faults[node.name], spares, spare_of,
                                    crossbar_of(node.op, hw) if spare_of is not None else None)
    return out


def check_spares(graph: Graph, hw: HardwareSpec, faults: dict[str, np.ndarray], path: str) -> None:
    """Refuse spare cells that are not those of the chip's crossbars, naming the crossbar. A map may hold more
    spares than the chip has (its first ones serve: one map drawn for the most spares serves a sweep over
    `spare_columns`), not fewer: a map without them on a chip with spares is refused too, since spares of unknown
    cells would be repaired onto blindly."""
    cores = {n.name: n.op for n in graph.of_type(o.CoreOp)}
    for key in faults:
        if key.startswith(PREFIX) and key[len(PREFIX):] not in cores:
            raise ConfigError(f"fault map {path}: {key!r}: crossbar {key[len(PREFIX):]!r} is not a core-op of the "
                              f"compiled network")
    count = hw.crossbar.spare_columns
    for name, op in cores.items():
        key = spare_key(name)
        if count and key not in faults:
            raise ConfigError(f"fault map {path}: crossbar {name!r} has no spare columns ({key!r}), the chip has "
                              f"hardware.crossbar.spare_columns={count}: draw the map for this chip")
        if key not in faults:
            continue
        crossbars, _, *fan_in = spare_shape(op, hw)
        got = tuple(faults[key].shape)
        if len(got) != 2 + len(fan_in) or got[0] != crossbars or list(got[2:]) != fan_in or got[1] < count:
            raise ConfigError(f"fault map {path}: crossbar {name!r} has spare cells {got}, the chip's are "
                              f"{(crossbars, count, *fan_in)} (crossbars, spare_columns or more, *fan-in)")
