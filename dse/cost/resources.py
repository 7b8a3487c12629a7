"""Resources a compiled graph needs on a chip: crossbars, cells, neurons, synapses, per layer and in total.

Mapping. A core-op's output neurons are packed onto crossbars greedily in channel order: a neuron joins the
current crossbar while the union of the input rows its crossbar reads stays within `rows` and its physical
columns (bit slices, doubled when differential) within `cols`; neurons that share inputs (a dense layer)
share rows, neurons with disjoint inputs (a depthwise max-pooling stage, a merge) stack their rows.

`time_multiplexed` (PIM): one set of crossbars serves every position of a convolution, one after the other.
`expanded` (spatial chips): every output position has neurons of its own; neighbouring positions are packed
into one crossbar as a tile while their joint receptive field fits the rows and their neurons the columns.
For a core-op without a mask, the neurons per crossbar and the tile are chosen together (`_expanded_uniform`):
a depthwise layer is best mapped with few channels and many positions per crossbar.

Grouped core-ops (depthwise and grouped convolutions, pooling, the merges of a split; kind `grouped`) are
packed block-diagonally: the groups on one crossbar stack their rows and share none, so a crossbar of R rows
holds ``floor(R / rows_per_group)`` groups (and at most its logical columns of neurons). Their cells are used
only on the diagonal blocks: a depthwise 3x3 layer on 256 x 256 cells with 4 cells per weight fills 28
groups x 9 rows x 4 cells = 1,008 of 65,536 cells (1.5 %), with 252 of its 256 rows in use. The report gives
`grouped_utilization` (cells used over the cells of the crossbars grouped layers take) to show it.

`core_assignment` maps each output of a core-op to the crossbar that computes it, by the same packing and tiling
(the cost model's traffic and placement read it).

`weight_scales`: the weight scales the periphery holds, one per crossbar (`per_crossbar`) or one per neuron
column (`per_column`: a scale register and a multiplier behind each column's ADC).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes


@dataclass(frozen=True)
class LayerResources:
    name: str
    block: str
    kind: str  # dense, conv, or grouped (each neuron reads only its group's channels: depthwise convs, pooling)
    groups: int  # channel groups of the core-op (1: every neuron may read every input channel)
    fan_in: int  # max inputs of one neuron (crossbar rows it needs)
    fan_out: int  # output channels (logical columns)
    positions: int  # output positions of a convolution (1 when dense)
    crossbars: int
    cells_used: int
    utilization: float  # cells used / cells of its crossbars
    neurons: int
    synapses: int
    weight_scales: int  # scales the periphery holds: per crossbar, or per neuron column

    def as_dict(self) -> dict:
        return asdict(self)


def pack_columns(row_sets: np.ndarray, rows: int | None, logical_cols: int | None,
                 groups: int = 1) -> list[np.ndarray]:
    """Greedy packing of neurons onto crossbars; returns, per crossbar, the neuron indices it holds.

    `row_sets` (O, R): the rows each neuron reads. With `groups` > 1 they are rows of the neuron's own group
    (a grouped op: neurons of different groups read disjoint inputs), so a crossbar's rows are the sum over
    its groups of each group's union; this keeps a merge of thousands of neurons at O x (its fan-in), never
    O x (all inputs).
    """
    n = row_sets.shape[0]
    if rows is None and logical_cols is None:
        return [np.arange(n)]
    per_group = n // groups
    crossbars: list[np.ndarray] = []
    current: list[int] = []
    closed = 0  # rows of the current crossbar taken by groups before the current neuron's
    union = np.zeros(row_sets.shape[1], dtype=bool)
    for j in range(n):
        if j % per_group == 0 and current:  # a new group: its rows are new rows
            closed += int(union.sum())
            union = np.zeros_like(union)
        new_union = union | row_sets[j]
        fits_rows = rows is None or closed + int(new_union.sum()) <= rows
        fits_cols = logical_cols is None or len(current) < logical_cols
        if current and not (fits_rows and fits_cols):
            crossbars.append(np.array(current))
            current, closed, new_union = [], 0, row_sets[j].copy()
        current.append(j)
        union = new_union
    if current:
        crossbars.append(np.array(current))
    return crossbars


def pack_uniform(groups: int, per_group: int, group_rows: int, rows: int | None, logical_cols: int | None
                 ) -> list[int]:
    """`pack_columns` when every neuron of a group reads all of its group's `group_rows` rows (no mask): the
    same greedy packing, in integers, without a row table (a VGG layer split in 98 partial-sum cores holds
    800,000 neurons). Returns the number of neurons on each crossbar."""
    if rows is None and logical_cols is None:
        return [groups * per_group]
    counts: list[int] = []
    count = used = 0
    for _ in range(groups):
        for j in range(per_group):
            extra = group_rows if j == 0 or count == 0 else 0  # the group's rows join with its first neuron here
            fits = (rows is None or used + extra <= rows) and (logical_cols is None or count < logical_cols)
            if count and not fits:
                counts.append(count)
                count, used, extra = 0, 0, group_rows
            count += 1
            used += extra
    if count:
        counts.append(count)
    return counts


def _channels_read(op: o.CoreOp, members: np.ndarray) -> int:
    """Distinct input channels the neurons `members` read (summed over their groups)."""
    use = op.synapse_mask()[members].any(axis=(2, 3))  # (members, C/groups)
    group = members // (op.out_channels // op.groups)
    return int(sum(use[group == g].any(axis=0).sum() for g in np.unique(group)))


def _valid_synapses(op: o.CoreOp, in_shape: tuple[int, ...]) -> int:
    """Synapses over all positions that read a real input (not padding): what an expanded chip wires."""
    mask = torch.as_tensor(op.synapse_mask(), dtype=torch.float64)
    ones = torch.ones((1, *in_shape), dtype=torch.float64)
    top, left, bottom, right = op.padding
    ones = F.pad(ones, (left, right, top, bottom))
    return int(F.conv2d(ones, mask, stride=op.stride, groups=op.groups).sum())


def _tile_crossbars(op: o.CoreOp, members: np.ndarray, in_channels: int, out_hw: tuple[int, int],
                    hw: HardwareSpec) -> tuple[int, tuple[int, int]]:
    """Crossbars for one channel group of an expanded conv, and the best tile (th, tw) of positions sharing a
    crossbar."""
    rows, cols, cpw = hw.crossbar.rows, hw.crossbar.cols, hw.columns_per_weight
    ho, wo = out_hw
    kh, kw = op.kernel
    sh, sw = op.stride
    best, tile = ho * wo, (1, 1)
    for th in range(1, ho + 1):
        for tw in range(1, wo + 1):
            need_rows = in_channels * ((th - 1) * sh + kh) * ((tw - 1) * sw + kw)
            need_cols = th * tw * len(members) * cpw
            if (rows is not None and need_rows > rows) or (cols is not None and need_cols > cols):
                continue
            count = math.ceil(ho / th) * math.ceil(wo / tw)
            if count < best:
                best, tile = count, (th, tw)
    return best, tile


def _expanded_uniform(op: o.CoreOp, out_hw: tuple[int, int], hw: HardwareSpec
                      ) -> tuple[int, np.ndarray, tuple[int, int]]:
    """Crossbars for an expanded core-op without a mask: the fewest over the neurons one crossbar holds (part
    of a group, or whole groups) and the tile of positions that share it. Returns the count, the set of channels
    each output channel is in (O,), and the tile (th, tw).

    A crossbar holding `c` whole groups (or `m` neurons of one group) over a tile of th x tw positions needs
    ``c * in_g * ((th-1)*sh + kh) * ((tw-1)*sw + kw)`` rows (in_g: input channels per group) and
    ``c * per_group * th * tw * cols_per_weight`` columns; the layer needs ``ceil(G / c) * ceil(Ho / th) *
    ceil(Wo / tw)`` of them. For each choice the widest tile of every height is tried (the count falls as the
    tile widens).
    """
    rows = math.inf if hw.crossbar.rows is None else hw.crossbar.rows
    cols = math.inf if hw.crossbar.cols is None else hw.crossbar.cols
    out_c, in_g, kh, kw = op.weight.shape
    sh, sw = op.stride
    ho, wo = out_hw
    per_group = out_c // op.groups
    channel = np.arange(out_c)
    # (sets of neurons on one crossbar, input channels they read, neurons, set of each channel): distinct counts
    choices = {(op.groups * math.ceil(per_group / m), in_g, m, ("part", m)) for m in
               {math.ceil(per_group / k) for k in range(1, per_group + 1)}}
    choices |= {(math.ceil(op.groups / c), c * in_g, c * per_group, ("whole", c)) for c in
                {math.ceil(op.groups / k) for k in range(1, op.groups + 1)}}
    best, pick = math.inf, (("whole", 1), (1, 1))
    for sets, channels, neurons, packing in sorted(choices):
        for th in range(1, ho + 1):
            span_w = rows // (channels * ((th - 1) * sh + kh))  # widest receptive field the rows hold
            tw = min(wo, (span_w - kw) // sw + 1 if span_w >= kw else 0,
                     cols // (neurons * th * hw.columns_per_weight))
            if tw >= 1 and sets * math.ceil(ho / th) * math.ceil(wo / tw) < best:
                best, pick = sets * math.ceil(ho / th) * math.ceil(wo / tw), (packing, (th, tw))
    (how, k), tile = pick
    if best == math.inf:  # nothing fits: one neuron per crossbar
        return op.out_channels * ho * wo, channel, (1, 1)
    group = channel // per_group
    sets_of = (group * math.ceil(per_group / k) + (channel % per_group) // k) if how == "part" else group // k
    return int(best), sets_of, tile


def _kind(op: o.CoreOp) -> str:
    return "dense" if op.dense else "grouped" if op.groups > 1 else "conv"


def channel_crossbars(op: o.CoreOp, hw: HardwareSpec) -> list[np.ndarray]:
    """The output channels each crossbar of `op` holds, packed greedily (`pack_uniform`, `pack_columns`)."""
    if op.mask is None:
        sizes = pack_uniform(op.groups, op.out_channels // op.groups, int(np.prod(op.weight.shape[1:])),
                             hw.crossbar.rows, hw.logical_cols)
        return np.split(np.arange(op.out_channels), np.cumsum(sizes)[:-1])
    return pack_columns(op.mask.reshape(op.out_channels, -1).astype(bool), hw.crossbar.rows, hw.logical_cols,
                        op.groups)


def _tiled(sets_of: np.ndarray, tile: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Crossbar of each output (O, Ho, Wo) when channel set s and the tile of positions t share crossbar
    ``s * tiles + t`` (tiles numbered row-major)."""
    (th, tw), (ho, wo) = tile, out_hw
    tile_of = (np.arange(ho)[:, None] // th) * math.ceil(wo / tw) + np.arange(wo)[None, :] // tw
    return sets_of[:, None, None] * (math.ceil(ho / th) * math.ceil(wo / tw)) + tile_of[None]


def crossbar_of(op: o.CoreOp, hw: HardwareSpec) -> np.ndarray:
    """The crossbar (0 .. of `channel_crossbars`) holding each output channel, (O,)."""
    return _crossbar_index(channel_crossbars(op, hw), op.out_channels)


def _crossbar_index(groups: list[np.ndarray], out_channels: int) -> np.ndarray:
    out = np.empty(out_channels, dtype=np.int64)
    for i, members in enumerate(groups):
        out[members] = i
    return out


def core_assignment(op: o.CoreOp, out_shape: tuple[int, ...], hw: HardwareSpec) -> np.ndarray:
    """The crossbar (0 .. crossbars-1 of the layer, as `layer_resources` counts them) that computes each output
    of `op`, shaped as its per-sample output: which core sends each value, and which core reads it."""
    groups = channel_crossbars(op, hw)
    by_channel = _crossbar_index(groups, op.out_channels)
    if op.dense:
        return by_channel
    out_hw = (int(out_shape[1]), int(out_shape[2]))
    if hw.mapping.reuse != "expanded":  # one crossbar serves every position
        return np.broadcast_to(by_channel[:, None, None], (op.out_channels, *out_hw)).copy()
    if op.mask is None:
        _, sets_of, tile = _expanded_uniform(op, out_hw, hw)
        return _tiled(sets_of, tile, out_hw)
    out = np.empty((op.out_channels, *out_hw), dtype=np.int64)
    offset = 0
    for members in groups:
        count, tile = _tile_crossbars(op, members, _channels_read(op, members), out_hw, hw)
        out[members] = offset + _tiled(np.zeros(len(members), dtype=np.int64), tile, out_hw)
        offset += count
    return out


def layer_resources(graph: Graph, hw: HardwareSpec) -> list[LayerResources]:
    shapes = infer_shapes(graph)
    cpw = hw.columns_per_weight
    expanded = hw.mapping.reuse == "expanded"
    layers = []
    for node in graph:
        op = node.op
        if not isinstance(op, o.CoreOp):
            continue
        out_shape = shapes[node.name]
        in_shape = shapes[node.inputs[0]]
        positions = 1 if op.dense else out_shape[1] * out_shape[2]
        groups = channel_crossbars(op, hw)
        n_syn = int(op.weight.size if op.mask is None else op.mask.astype(bool).sum())
        if expanded and not op.dense:
            if op.mask is None:
                crossbars = _expanded_uniform(op, out_shape[1:], hw)[0]
            else:
                crossbars = sum(_tile_crossbars(op, members, _channels_read(op, members), out_shape[1:], hw)[0]
                                for members in groups)
            neurons = op.out_channels * positions
            synapses = _valid_synapses(op, in_shape)
        else:
            crossbars = len(groups)
            neurons = op.out_channels
            synapses = n_syn
        cells = synapses * cpw
        if hw.crossbar.rows is None or hw.crossbar.cols is None:
            capacity = cells
        else:
            capacity = crossbars * hw.crossbar.rows * hw.crossbar.cols
        layers.append(LayerResources(
            name=node.name, block=node.block_name, kind=_kind(op), groups=op.groups,
            fan_in=int(op.fan_in().max()), fan_out=op.out_channels, positions=positions, crossbars=crossbars,
            cells_used=cells, utilization=cells / capacity if capacity else 0.0, neurons=neurons, synapses=synapses,
            weight_scales=neurons if hw.weights.scale == "per_column" else crossbars,
        ))
    return layers


def total_resources(layers: list[LayerResources], hw: HardwareSpec) -> dict:
    crossbars = sum(x.crossbars for x in layers)
    cells = sum(x.cells_used for x in layers)
    capacity = crossbars * (hw.crossbar.rows or 0) * (hw.crossbar.cols or 0)
    grouped = [x for x in layers if x.kind == "grouped"]
    grouped_capacity = sum(x.crossbars for x in grouped) * (hw.crossbar.rows or 0) * (hw.crossbar.cols or 0)
    out = {
        "crossbars": crossbars,
        "cells_used": cells,
        "utilization": cells / capacity if capacity else 1.0,
        "grouped_crossbars": sum(x.crossbars for x in grouped),
        # 0 when no grouped layer takes a crossbar (a number always: a results column has one type)
        "grouped_utilization": sum(x.cells_used for x in grouped) / grouped_capacity if grouped_capacity else 0.0,
        "weight_scales": sum(x.weight_scales for x in layers),
        "neurons": sum(x.neurons for x in layers),
        "synapses": sum(x.synapses for x in layers),
        "core_ops": len(layers),
        "depth": None,  # filled by the caller from the graph
    }
    if hw.mapping.cores_per_chip:
        out["chips"] = math.ceil(crossbars / hw.mapping.cores_per_chip)
    return out


def depth(graph: Graph) -> int:
    """Core-ops on the longest path from input to output (latency in crossbar steps)."""
    d: dict[str, int] = {}
    for node in graph:
        base = max((d[s] for s in node.inputs), default=0)
        d[node.name] = base + (1 if isinstance(node.op, o.CoreOp) else 0)
    return max(d[out] for out in graph.outputs)
