"""Cores on a 2-D mesh: the traffic between them, two placements, XY routing and its hops.

Traffic. Every crossbar of a compiled graph is a core (`core_assignment` says which core computes each output).
A value a core emits travels once to every other core that reads it (a consumer core buffers it for all the
positions it serves): on a PIM chip one value (of the chip's edge bits) per output per inference; on a spiking
chip the output's spikes, each layer's measured spikes spread evenly over its neurons. The host's input and pads
and the outputs the host reads are not mesh traffic.

Mesh. A chip is a grid of ``chip_width x chip_height = cores_per_chip`` cores (the squarest factorization),
chips are tiled into a near-square grid, and the system is one mesh of cores across chip boundaries.

Placements. `in_order`: cores in graph order fill chip after chip, row-major within a chip. `partitioned`:
recursive bisection of the core graph (METIS through pymetis, weights: traffic both ways) onto halves of the
cells the in-order placement uses (split across their longer extent), so that cores that talk a lot end up
close; it uses the same chips.

Routing: XY (dimension order), a packet from (x0, y0) to (x1, y1) takes |x1-x0| east-west and |y1-y0|
north-south hops; `chip_crossings` counts the chip boundaries on the way (charged as ordinary hops).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from dse.cost.resources import LayerResources, core_assignment
from dse.errors import ConfigError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.sim.float_exec import FLOAT_EXEC
from dse.sim.spiking import SpikeStats

if TYPE_CHECKING:  # scipy and pymetis load when traffic is counted, not with the report's types
    import scipy.sparse as sp

Tensor = torch.Tensor
PLACEMENTS = ("in_order", "partitioned")
_READ_FLOATS = 2**22  # values of one chunk of crossbars' reads computed at once (16 MB of float32)


@dataclass(frozen=True)
class Traffic:
    """`matrix[p, c]`: values (PIM) or spikes (spiking) core p sends core c per inference; `layer_of[c]`: the
    index (in `layers`) of the layer core c belongs to."""

    matrix: sp.csr_matrix
    layer_of: np.ndarray
    layers: tuple[str, ...]

    @property
    def cores(self) -> int:
        return len(self.layer_of)


def wired_labels(graph: Graph, labels: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """For every node, the label of the core-op output each of its values is (`labels[core-op]`, shaped as its
    per-sample output), carried through the wiring; -1 for a value the host sends. Batch axis of 1."""
    count = max((int(v.max()) + 1 for v in labels.values() if v.size), default=0)
    return dict(_walk_labels(graph, labels, count, free=False))


def core_inputs_labelled(graph: Graph, labels: Mapping[str, np.ndarray], count: int
                         ) -> Iterator[tuple[str, torch.Tensor]]:
    """Each core-op (in graph order) with the labels of its input, as `wired_labels` has them, holding only the
    labels some later node still reads: the whole graph's labels at once are several times its core outputs
    (VGG-16's split cores: 4 GB in float64). `labels[core-op]` is asked for once, when the walk reaches it, and
    the labels lie in 0..count-1."""
    return _walk_labels(graph, labels, count, free=True)


def _walk_labels(graph: Graph, labels: Mapping[str, np.ndarray], count: int, *, free: bool
                 ) -> Iterator[tuple[str, torch.Tensor]]:
    """The wire labels in graph order. Without `free`: every node with its own labels. With `free`: each core-op
    with the labels of its input, each value dropped after its last reader. Labels are carried as floats through
    the wiring ops, float32 where every label is exact in it (below 2**24), else float64."""
    dtype = torch.float32 if count < 2**24 else torch.float64
    shapes = infer_shapes(graph)
    last_use = {src: i for i, node in enumerate(graph) for src in node.inputs}
    out: dict[str, torch.Tensor] = {}
    for i, node in enumerate(graph):
        op = node.op
        if isinstance(op, o.CoreOp):
            if free:
                yield node.name, out[node.inputs[0]]
            out[node.name] = torch.as_tensor(labels[node.name]).to(dtype)[None]
        elif isinstance(op, (o.Input, o.Readout)) or graph.host_input(node.name):
            out[node.name] = torch.full((1, *shapes[node.name]), -1.0, dtype=dtype)
        elif isinstance(op, o.Pad):  # a pad the host sends
            out[node.name] = FLOAT_EXEC[o.Pad](o.Pad(op.padding, (-1.0,)), [out[node.inputs[0]]])
        else:
            out[node.name] = FLOAT_EXEC[type(op)](op, [out[s] for s in node.inputs])
        if not free:
            yield node.name, out[node.name]
            continue
        for src in node.inputs:
            if last_use[src] == i:
                out.pop(src, None)


@dataclass(frozen=True)
class _Geometry:
    """A core-op's synapses and its crossbars' outputs, for finding which inputs each crossbar reads. With
    groups, a crossbar reads only the groups of its output channels: its reads are computed on those groups alone
    (a merge core of VGG-16's 512 groups: each crossbar touches a few of them), not on every input."""

    live: np.ndarray  # (O, I/g, kh, kw) bool: the synapses that exist (non-zero weights once quantized)
    op: o.CoreOp
    in_shape: tuple[int, ...]
    owner: np.ndarray  # each output's crossbar within the core-op (`core_assignment`)
    touched: np.ndarray  # (crossbars, groups) bool: the groups each crossbar has outputs in

    @classmethod
    def of(cls, op: o.CoreOp, in_shape: tuple[int, ...], owner: np.ndarray, crossbars: int) -> _Geometry:
        live = op.synapse_mask() if op.quant is None else op.quant.weight_int != 0
        group_of = np.arange(live.shape[0]) // (live.shape[0] // op.groups)
        touched = np.zeros((crossbars, op.groups), dtype=bool)
        touched[owner.reshape(len(group_of), -1), group_of[:, None]] = True
        return cls(live, op, tuple(in_shape), owner, touched)

    def _floats_per_group(self) -> int:
        """Values one crossbar's reads of one group take: its inputs, its outputs' map, the transposed
        product's columns (inputs of a group x taps x output positions)."""
        outputs, inputs = self.live.shape[0] // self.op.groups, self.live.shape[1]
        positions_in = int(np.prod(self.in_shape[1:])) if not self.op.dense else 1
        positions_out = int(self.owner[0].size) if not self.op.dense else 1
        taps = int(np.prod(self.live.shape[2:]))
        return max(inputs * positions_in, outputs * positions_out, inputs * taps * positions_out)

    def chunks(self) -> Iterator[np.ndarray]:
        """The crossbars in order, a chunk at a time: `_READ_FLOATS` values at most (one crossbar at least)."""
        per_group, touched = self._floats_per_group(), self.touched.sum(axis=1)
        crossbars, lo = len(touched), 0
        while lo < crossbars:
            hi, groups = lo + 1, int(touched[lo])
            while hi < crossbars and (hi + 1 - lo) * (groups + touched[hi]) * per_group <= _READ_FLOATS:
                groups += int(touched[hi])
                hi += 1
            yield np.arange(lo, hi)
            lo = hi

    def reads(self, cores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(cores), columns) bool: which inputs each core reads, and the columns' indices among the
        core-op's (flattened per-sample) inputs: those of the groups the cores have outputs in, in order."""
        op, g = self.op, self.op.groups
        groups = np.flatnonzero(self.touched[cores].any(axis=0))
        if not len(groups):  # crossbars without outputs read nothing
            return np.zeros((len(cores), 0), dtype=bool), np.zeros(0, dtype=np.int64)
        out_per, in_per = self.live.shape[0] // g, self.live.shape[1]
        outs = (groups[:, None] * out_per + np.arange(out_per)).reshape(-1)
        per_channel = 1 if op.dense else int(np.prod(self.in_shape[1:]))
        columns = (groups[:, None] * (in_per * per_channel) + np.arange(in_per * per_channel)).reshape(-1)
        in_shape = (len(groups) * in_per, *self.in_shape[1:])
        reads = _reads(self.live[outs], len(groups), op, in_shape, self.owner[outs], cores)
        return reads, columns


def _reads(live: np.ndarray, groups: int, op: o.CoreOp, in_shape: tuple[int, ...], owner: np.ndarray,
           cores: np.ndarray) -> np.ndarray:
    """(len(cores), inputs): which of its inputs each core (local index) reads through a live synapse of `live`
    ((O, I/groups, kh, kw); `op` gives the stride, padding and whether it is dense): the transposed product of
    each core's outputs (a 0/1 map) with the live synapses, > 0. Counts of at most outputs x taps per input,
    exact in float32. It is the input gradient of the core's outputs summed, without the forward product
    autograd would run first: half the work and memory (VGG-16's 22,582 crossbars)."""
    w = torch.as_tensor(live, dtype=torch.float32)
    ind = owner[None] == cores.reshape(-1, *([1] * owner.ndim))
    reads = _synapses_of(ind, w, groups) if op.dense else _transposed(ind, w, op, groups, in_shape)
    return (reads > 0).numpy()


def _synapses_of(channels: np.ndarray, w: Tensor, groups: int) -> Tensor:
    """(N, groups x inputs of one x taps): for each of N cores, its output channels' (`channels`, (N, O) bool)
    live synapses `w` ((O, I/groups, kh, kw)) summed, laid out as the core-op's inputs."""
    per = w.reshape(groups, w.shape[0] // groups, -1)  # (groups, outputs of one, inputs of one x taps)
    ind = torch.as_tensor(channels, dtype=torch.float32).reshape(len(channels), groups, -1)
    return torch.einsum("ngo,goi->ngi", ind, per).reshape(len(channels), -1)


def _transposed(ind: np.ndarray, w: Tensor, op: o.CoreOp, groups: int, in_shape: tuple[int, ...]) -> Tensor:
    """The transpose of `op`'s convolution (with `w`, `groups`) applied to output maps `ind` (N, O, Ho, Wo, bool):
    (N, C*H*W), each input position's sum over the outputs reading it. The convolution pads its input (top,
    left, bottom, right); the transpose covers the padded input up to its last window (the rows and columns past
    it get nothing: zeros) and the padding is cut off.

    A core that serves a set of output channels at a set of positions (every core `core_assignment` makes) has
    a map that is their product: its channels' synapses are summed first into one kernel per core, and only the
    positions are transposed (a grouped product, a group per core), O times less work than every output channel's
    map; the sums are the same."""
    _, h, wd = in_shape
    n, top, left = len(ind), op.padding[0], op.padding[1]
    channels, positions = ind.any(axis=(2, 3)), ind.any(axis=1)
    if np.array_equal(ind.sum(axis=(1, 2, 3)), channels.sum(axis=1) * positions.sum(axis=(1, 2))):
        kernels = _synapses_of(channels, w, groups).reshape(n, -1, *w.shape[2:])  # (cores, inputs, kh, kw)
        y = F.conv_transpose2d(torch.as_tensor(positions, dtype=torch.float32)[None], kernels, stride=op.stride,
                               groups=n)
        y = y.reshape(n, kernels.shape[1], *y.shape[2:])
    else:
        y = F.conv_transpose2d(torch.as_tensor(ind, dtype=torch.float32), w, stride=op.stride, groups=groups)
    y = y[:, :, top : top + h, left : left + wd]
    if y.shape[2:] != (h, wd):
        y = F.pad(y, (0, wd - y.shape[3], 0, h - y.shape[2]))
    return y.reshape(n, -1)


def core_traffic(graph: Graph, hw: HardwareSpec, layers: list[LayerResources], stats: SpikeStats | None = None
                 ) -> Traffic:
    """Traffic between the cores of compiled `graph` per inference; `stats` (the spiking simulator's activity)
    is required on a spiking chip."""
    if hw.spiking and (stats is None or not stats.samples):
        raise ConfigError("the traffic of a spiking chip needs the simulator's spike counts")
    import scipy.sparse as sp
    shapes = infer_shapes(graph)
    offsets, start = {}, 0
    for lr in layers:
        offsets[lr.name], start = start, start + lr.crossbars
    layer_of = np.repeat(np.arange(len(layers)), [lr.crossbars for lr in layers])
    if hw.spiking:  # spikes per output per inference, each layer's spread evenly
        rate = np.array([stats.spikes[lr.name] / stats.samples / stats.neurons[lr.name] for lr in layers])
    else:
        rate = np.ones(len(layers))
    layer_index = {lr.name: k for k, lr in enumerate(layers)}
    labels = _CoreLabels(graph, hw, shapes, offsets)
    rows, cols, vals = [], [], []
    for name, inputs in core_inputs_labelled(graph, labels, start):
        lr, node = layers[layer_index[name]], graph[name]
        src = inputs[0].numpy().reshape(-1).astype(np.int32 if start < 2**31 else np.int64)  # the sending core
        if not (src >= 0).any():
            continue
        geometry = _Geometry.of(node.op, shapes[node.inputs[0]], labels.owner(name), lr.crossbars)
        for chunk in geometry.chunks():
            reads, columns = geometry.reads(chunk)
            core, value = np.nonzero(reads)
            sender = src[columns[value]]
            from_core = sender >= 0
            core, sender = core[from_core], sender[from_core]
            # one value per (core, value it reads), summed per sender: every term of a sum is the sender layer's rate,
            # so the order of the additions cannot change it
            sent = sp.csr_matrix((rate[layer_of[sender]], (core, sender)), shape=(len(chunk), start)).tocoo()
            rows.append(sent.col)
            cols.append(sent.row + offsets[lr.name] + chunk[0])
            vals.append(sent.data)
    matrix = sp.csr_matrix((_cat(vals, np.float64), (_cat(rows, np.int64), _cat(cols, np.int64))), shape=(start, start))
    return Traffic(matrix, layer_of, tuple(lr.name for lr in layers))


class _CoreLabels(Mapping[str, np.ndarray]):
    """Each core-op's outputs labelled with the global index of the crossbar (core) that computes them, made
    when asked for (`core_inputs_labelled` asks once per core-op)."""

    def __init__(self, graph: Graph, hw: HardwareSpec, shapes: dict, offsets: dict[str, int]) -> None:
        self.graph, self.hw, self.shapes, self.offsets = graph, hw, shapes, offsets
        self._owners: dict[str, np.ndarray] = {}  # made for a core's traffic, kept until its labels are asked for

    def owner(self, name: str) -> np.ndarray:
        """Each output's crossbar within its core-op."""
        if name not in self._owners:
            self._owners[name] = core_assignment(self.graph[name].op, self.shapes[name], self.hw)
        return self._owners[name]

    def __getitem__(self, name: str) -> np.ndarray:
        owner = self.owner(name)
        del self._owners[name]
        return owner + self.offsets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.offsets)

    def __len__(self) -> int:
        return len(self.offsets)


def _cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


@dataclass(frozen=True)
class Mesh:
    """`width x height` cores in all; chips of `chip_width x chip_height` cores."""

    width: int
    height: int
    chip_width: int
    chip_height: int

    @property
    def size(self) -> int:
        return self.width * self.height

    def chip_of(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) chip grid coordinates of cores at `xy`."""
        return xy // np.array([self.chip_width, self.chip_height])


def chip_shape(cores_per_chip: int) -> tuple[int, int]:
    """The squarest ``width x height = cores_per_chip`` (width >= height): 16 -> 4 x 4, 128 -> 16 x 8."""
    h = max(d for d in range(1, math.isqrt(cores_per_chip) + 1) if cores_per_chip % d == 0)
    return cores_per_chip // h, h


def build_mesh(cores: int, cores_per_chip: int | None = None, width: int | None = None,
               height: int | None = None) -> Mesh:
    """The mesh for a network of `cores` cores: `width x height` when given (a multiple of the chip's shape),
    else chips in a near-square grid, as few as hold the cores."""
    if (width is None) != (height is None):
        raise ConfigError("give both mesh width and height, or neither")
    if cores_per_chip is None:
        side = math.isqrt(max(cores - 1, 0)) + 1
        cw, ch = (width, height) if width is not None else (side, math.ceil(cores / side))
    else:
        cw, ch = chip_shape(cores_per_chip)
    if width is not None:
        if width % cw or height % ch:
            raise ConfigError(f"mesh {width} x {height} is not a whole number of chips of {cw} x {ch} cores")
        mesh = Mesh(width, height, cw, ch)
    else:
        chips = math.ceil(cores / (cw * ch))
        across = math.isqrt(max(chips - 1, 0)) + 1
        mesh = Mesh(across * cw, math.ceil(chips / across) * ch, cw, ch)
    if mesh.size < cores:
        raise ConfigError(f"the network needs {cores} cores but the mesh of {mesh.width} x {mesh.height} holds "
                          f"{mesh.size}")
    return mesh


def place_in_order(cores: int, mesh: Mesh) -> np.ndarray:
    """(cores, 2) x, y: core i on chip i // cores_per_chip (chips row-major), row-major within the chip."""
    per_chip = mesh.chip_width * mesh.chip_height
    i = np.arange(cores)
    chip, within = i // per_chip, i % per_chip
    chips_across = mesh.width // mesh.chip_width
    x = (chip % chips_across) * mesh.chip_width + within % mesh.chip_width
    y = (chip // chips_across) * mesh.chip_height + within // mesh.chip_width
    return np.stack([x, y], axis=1)


def _cells_of_used_chips(cores: int, mesh: Mesh) -> np.ndarray:
    """Every cell of the chips the in-order placement uses."""
    per_chip = mesh.chip_width * mesh.chip_height
    return place_in_order(math.ceil(cores / per_chip) * per_chip, mesh)


def _bisect(adj: sp.csr_matrix, first: int, seed: int) -> np.ndarray:
    """Boolean: the vertices of the part of exactly `first` vertices (METIS, then the fewest moves)."""
    n = adj.shape[0]
    if first in (0, n):
        return np.full(n, first == n)
    if adj.nnz == 0:
        part = np.arange(n) >= first
    else:
        import pymetis

        weights = np.maximum(np.rint(adj.data / adj.data.max() * 10_000), 1).astype(np.int64)
        _, labels = pymetis.part_graph(2, pymetis.CSRAdjacency(adj_starts=adj.indptr, adjacent=adj.indices),
                                       eweights=weights,
                                       tpwgts=[first / n, 1 - first / n], options=pymetis.Options(seed=seed))
        part = np.asarray(labels, dtype=bool)  # True: the second part
    # move the vertices tied least to their side until the first part holds exactly `first`
    while (~part).sum() != first:
        grow_first = (~part).sum() < first
        side = part if grow_first else ~part
        gain = np.asarray(adj @ (~side).astype(np.float64) - adj @ side.astype(np.float64)).ravel()
        candidates = np.flatnonzero(side)
        move = candidates[np.argmax(gain[candidates])]
        part[move] = not grow_first
    return ~part


def _pull(adj: sp.csr_matrix, part: np.ndarray, placed: np.ndarray, out: np.ndarray) -> Callable[[np.ndarray], float]:
    """For cells: traffic x distance from the centre of the cells to the cores already placed (`placed`) that the
    cores `part` talk to. The traffic is summed once per part, for both halves its cores may go to."""
    traffic = np.asarray(adj[part].sum(axis=0)).ravel()[placed]
    where = out[placed]
    return lambda cells: float(traffic @ np.abs(where - cells.mean(axis=0)).sum(axis=1))


def _place_recursive(adj: sp.csr_matrix, nodes: np.ndarray, cells: np.ndarray, out: np.ndarray, seed: int) -> None:
    """Bisect `nodes` onto the two halves of `cells` (cut across their longer extent), each half of the nodes on
    the side nearer the cores it talks to that are already placed (terminal propagation), and recurse."""
    if len(nodes) == 0:
        return
    if len(nodes) == 1 or len(cells) == 1:
        out[nodes] = cells[: len(nodes)]
        return
    axis = 0 if np.ptp(cells[:, 0]) >= np.ptp(cells[:, 1]) else 1
    cells = cells[np.lexsort((cells[:, 1 - axis], cells[:, axis]))]
    half = len(cells) // 2
    first = int(np.clip(round(len(nodes) * half / len(cells)), len(nodes) - (len(cells) - half), half))
    in_first = _bisect(adj[nodes][:, nodes], first, seed)
    a, b = nodes[in_first], nodes[~in_first]
    low, high = cells[:half], cells[half:]
    placed = out[:, 0] >= 0
    if len(a) <= len(high) and len(b) <= len(low) and placed.any():
        pull_a, pull_b = _pull(adj, a, placed, out), _pull(adj, b, placed, out)
        if pull_a(high) + pull_b(low) < pull_a(low) + pull_b(high):
            low, high = high, low
    _place_recursive(adj, a, low, out, seed)
    _place_recursive(adj, b, high, out, seed)


def place_partitioned(traffic: Traffic, mesh: Mesh, seed: int = 0) -> np.ndarray:
    """(cores, 2) x, y by recursive bisection of the traffic graph onto the cells of the in-order chips."""
    sym = (traffic.matrix + traffic.matrix.T).tocsr()
    sym.setdiag(0)
    sym.eliminate_zeros()
    out = np.full((traffic.cores, 2), -1, dtype=np.int64)
    _place_recursive(sym, np.arange(traffic.cores), _cells_of_used_chips(traffic.cores, mesh), out, seed)
    return out


@dataclass(frozen=True)
class Routes:
    """Traffic routed XY on one placement, per inference."""

    placement: str
    xy: np.ndarray  # (cores, 2)
    hops_x: np.ndarray  # per layer: values/spikes x east-west hops the layer's cores send
    hops_y: np.ndarray  # per layer: north-south
    chip_crossings: float  # values/spikes x chip boundaries crossed
    chips: int

    @property
    def hops(self) -> float:
        """Hop-weighted traffic: sum over packets of their hops."""
        return float(self.hops_x.sum() + self.hops_y.sum())


def route(traffic: Traffic, mesh: Mesh, xy: np.ndarray, placement: str) -> Routes:
    coo = traffic.matrix.tocoo()
    dx = np.abs(xy[coo.row, 0] - xy[coo.col, 0])
    dy = np.abs(xy[coo.row, 1] - xy[coo.col, 1])
    chip = mesh.chip_of(xy)
    crossings = np.abs(chip[coo.row] - chip[coo.col]).sum(axis=1)
    n = len(traffic.layers)
    layer = traffic.layer_of[coo.row]
    return Routes(placement, xy, np.bincount(layer, coo.data * dx, minlength=n),
                  np.bincount(layer, coo.data * dy, minlength=n), float((coo.data * crossings).sum()),
                  len(np.unique(chip[:, 0] * (mesh.width // mesh.chip_width + 1) + chip[:, 1])))


def place(traffic: Traffic, mesh: Mesh, placement: str, seed: int = 0) -> Routes:
    """Place the cores (`in_order` or `partitioned`) and route their traffic."""
    if placement == "in_order":
        xy = place_in_order(traffic.cores, mesh)
    elif placement == "partitioned":
        xy = place_partitioned(traffic, mesh, seed)
    else:
        raise ConfigError(f"placement must be one of {', '.join(PLACEMENTS)} (got {placement!r})")
    return route(traffic, mesh, xy, placement)
