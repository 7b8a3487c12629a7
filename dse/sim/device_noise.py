"""Chip instances: the integer weights a compiled graph holds, as the cells of a manufactured chip store them.

`cell_levels` splits each integer weight into the levels of its cells (bit slices; a differential pair's
positive and negative columns, or offset binary on one column: `dse.hardware.device`). `draw_instances` draws
N chips from `hardware.device`: each cell's programmed level (programming variation, drift, stuck cells; or
the stuck cells of a known fault map) folded back into one effective real-valued weight per synapse, a fixed
offset per output converter and, on a spiking chip, a threshold factor per neuron and a weight factor per
synapse. `instance_table` gives the integer (or spiking) simulator's rules that run all N chips at once, the
instances stacked along the batch axis; read noise and converter noise are drawn there, at every read.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from dse.errors import ConfigError
from dse.hardware.device import DRIFT_T0_S, Device, programming_shape
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.ir.shapes import infer_shapes
from dse.sim import spares
from dse.sim.float_exec import conv_core

Tensor = torch.Tensor
OK, LOW, HIGH = 0, 1, 2  # a cell of a fault map: working, stuck at its lowest, stuck at its highest level


@dataclass(frozen=True)
class CellLayout:
    """How a chip stores one integer weight: `slices` cells of `cell_bits` bits (least significant first) in
    each of `columns` columns (2: positive and negative of a differential pair), minus a digital `offset`."""

    slices: int
    columns: int
    cell_bits: int
    offset: int
    wmax: int  # the largest weight magnitude

    @classmethod
    def of(cls, hw: HardwareSpec) -> CellLayout:
        columns = 2 if hw.crossbar.differential else 1
        offset = 0 if hw.crossbar.differential else 2 ** (hw.weights.bits - 1)
        return cls(hw.columns_per_weight // columns, columns, hw.crossbar.cell_bits, offset, hw.weight_max)

    def gain(self, w_int: np.ndarray) -> int:
        """The factor a core's integers are stored scaled up by: the largest that keeps them in the weight range,
        the periphery's scale divided by it (the same function). A max-pooling core's +-1 weights are stored as
        +-wmax: on the lowest cell's level 1 a cell error of a fraction of the range would swamp them."""
        top = int(np.abs(w_int).max(initial=0))
        return max(1, self.wmax // top) if top else 1

    @property
    def top(self) -> int:
        """The highest level of a cell."""
        return 2**self.cell_bits - 1

    def levels(self, w_int: np.ndarray) -> np.ndarray:
        """Cell levels (slices, columns, *w.shape), int64, of integer weights `w_int`."""
        w = np.asarray(w_int, dtype=np.int64)
        parts = [np.maximum(w, 0), np.maximum(-w, 0)] if self.columns == 2 else [w + self.offset]
        return np.stack([np.stack([(p >> (s * self.cell_bits)) & self.top for p in parts])
                         for s in range(self.slices)])

    def weight(self, levels: np.ndarray) -> np.ndarray:
        """The weight real-valued cell levels (slices, columns, ...) store (the inverse of `levels`)."""
        place = (2.0 ** (self.cell_bits * np.arange(self.slices))).reshape(-1, *([1] * (levels.ndim - 1)))
        column = (levels * place).sum(axis=0)
        return column[0] - column[1] if self.columns == 2 else column[0] - self.offset

    def read_gain(self) -> float:
        """The std of a weight's read error in weight units, per unit of std of each of its cells' levels."""
        return float(np.sqrt(self.columns * np.sum(4.0 ** (self.cell_bits * np.arange(self.slices)))))


@dataclass
class Instances:
    """N drawn chips: per core-op (node name), each instance's effective weights (N, *weight shape), its
    converters' offsets in LSB (N, O) and, on a spiking chip, its neurons' threshold factors (N, O, ...)."""

    count: int
    device: Device
    weights: dict[str, Tensor] = field(default_factory=dict)
    adc_offset: dict[str, Tensor] = field(default_factory=dict)
    threshold: dict[str, Tensor] = field(default_factory=dict)
    read_std: dict[str, float] = field(default_factory=dict)  # read noise, std in weight units per unit input
    _row_sums: dict[str, float] = field(default_factory=dict)
    _converted: dict[tuple[str, torch.dtype], Tensor] = field(default_factory=dict)

    def weights_as(self, name: str, dtype: torch.dtype) -> Tensor:
        """A core's drawn weights in `dtype`, converted once (every batch reads them)."""
        key = (name, dtype)
        if key not in self._converted:
            self._converted[key] = self.weights[name].to(dtype)
        return self._converted[key]

    def row_sum(self, name: str) -> float:
        """The largest sum of |weight| over one output's synapses, over the instances (accumulator bounds)."""
        if name not in self._row_sums:
            w = self.weights[name]
            self._row_sums[name] = float(w.abs().reshape(w.shape[0], w.shape[1], -1).sum(-1).max())
        return self._row_sums[name]


def draw_faults(shape: tuple[int, ...], device: Device, rngs: list[np.random.Generator]) -> np.ndarray:
    """Stuck cells (int8: OK, LOW, HIGH) of a cell array of `shape`, each cell independently, per stream."""
    u = np.stack([r.random(shape, dtype=np.float32) for r in rngs])
    return np.where(u < device.stuck_low, LOW, np.where(u < device.stuck_low + device.stuck_high, HIGH, OK)
                    ).astype(np.int8)


def _normal(rngs: list[np.random.Generator], shape: tuple[int, ...]) -> np.ndarray:
    """(len(rngs), *shape) standard normals, one stream per instance."""
    return np.stack([r.standard_normal(shape, dtype=np.float32) for r in rngs])


def perturbed_levels(levels: np.ndarray, layout: CellLayout, device: Device, rngs: list[np.random.Generator],
                     faults: np.ndarray | None) -> np.ndarray:
    """Real-valued levels (instances, *levels.shape) the cells hold when read, one instance per stream:
    programmed with an error, drifted (and compensated), stuck cells at their stuck level. `faults`: the stuck
    cells of every instance (None: drawn from the device's rates)."""
    top = layout.top
    g = np.broadcast_to(levels.astype(np.float32), (len(rngs), *levels.shape))
    if device.programming_sigma:
        sigma = device.programming_sigma * top * programming_shape(device.programming_model, g / top)
        g = np.clip(g + sigma * _normal(rngs, levels.shape), 0.0, top)
    if device.drift_active:
        g = _drifted(g, device, rngs, levels.shape)
    if faults is None and not (device.stuck_low or device.stuck_high):
        return g.astype(np.float32)
    faults = draw_faults(levels.shape, device, rngs) if faults is None else faults
    return np.where(faults == LOW, 0.0, np.where(faults == HIGH, float(top), g)).astype(np.float32)


def _drifted(g: np.ndarray, device: Device, rngs: list[np.random.Generator], shape: tuple[int, ...]) -> np.ndarray:
    """Levels `g` (instances, *shape) read `device.drift_seconds` after programming: each cell times
    ``(t / t0) ** -nu``, taken as ``exp(-nu log(t / t0))``, so that any time float64 holds is computed (``t / t0``
    past float32's 3.4e38 overflowed the power, with numpy's warning: every cell read 0, compensated or not).
    With global compensation (one factor per core: its total conductance programmed / read) the cells' factors
    are taken relative to the core's largest, which the compensation cancels: no time underflows them to 0."""
    nu = np.maximum(device.drift_nu + device.drift_nu_sigma * _normal(rngs, shape), 0.0)
    log_factor = nu * np.float32(-math.log(device.drift_seconds / DRIFT_T0_S))
    if not device.drift_compensation:
        return g * np.exp(log_factor)
    axes = tuple(range(1, g.ndim))
    drifted = g * np.exp(log_factor - log_factor.max(axis=axes, keepdims=True))
    return drifted * (g.sum(axis=axes, keepdims=True) / np.maximum(drifted.sum(axis=axes, keepdims=True), 1e-30))


def program_levels(layout: CellLayout, w_int: np.ndarray, faults: np.ndarray | None) -> np.ndarray:
    """The levels the chip writes for integer weights `w_int` (slices, columns, *w.shape). Without `faults`
    (stuck cells unknown) the plain bit slices; with them, each weight that has a stuck cell gets the levels of
    its free cells whose sum with the stuck ones is nearest to it (the other column of a pair takes back a stuck
    high cell), fewest levels among equals."""
    levels = layout.levels(w_int)
    if faults is None or not faults.any():
        return levels
    cells = layout.slices * layout.columns
    if (layout.top + 1) ** cells > 2**20:
        return levels  # too many level combinations to search: plain slices
    flat_f = faults.reshape(cells, -1)
    flat_l = levels.reshape(cells, -1).copy()
    target = np.asarray(w_int, np.int64).ravel()
    hit = np.flatnonzero(flat_f.any(axis=0))
    patterns, which = np.unique(flat_f[:, hit].T, axis=0, return_inverse=True)
    for p, pattern in enumerate(patterns):
        values, combos = _reachable(layout, pattern.tobytes())
        idx = hit[which.ravel() == p]
        pos = np.clip(np.searchsorted(values, target[idx]), 1, len(values) - 1)
        left_better = np.abs(values[pos - 1] - target[idx]) <= np.abs(values[pos] - target[idx])
        flat_l[:, idx] = combos[np.where(left_better, pos - 1, pos)].T
    return flat_l.reshape(levels.shape)


@functools.lru_cache(maxsize=256)
def _reachable(layout: CellLayout, pattern: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The weights a weight's cells can store around the stuck ones of `pattern` (int8 per cell, slice-major),
    ascending and distinct, and for each the levels (cells,) that store it with the fewest levels in all."""
    cells = layout.slices * layout.columns
    stuck = np.frombuffer(pattern, np.int8)
    grid = np.stack(np.meshgrid(*[np.arange(layout.top + 1)] * cells, indexing="ij"), -1).reshape(-1, cells)
    combos = np.where(stuck == LOW, 0, np.where(stuck == HIGH, layout.top, grid))
    values = layout.weight(combos.T.reshape(layout.slices, layout.columns, -1).astype(np.float64))
    order = np.lexsort((combos.sum(axis=1), values))
    distinct, first = np.unique(values[order], return_index=True)  # the first of equals: fewest levels
    return distinct, combos[order[first]]


def drawn_weights(w_int: np.ndarray, layout: CellLayout, device: Device, rngs: list[np.random.Generator],
                  faults: np.ndarray | None = None) -> np.ndarray:
    """The effective weights (instances, *w_int.shape) the cells of integer weights `w_int` hold when read, one
    instance per stream: programmed (around the stuck cells of `faults` where the fault map is known,
    `program_levels`), perturbed (`perturbed_levels`), and each synapse's weight mismatch."""
    gain = layout.gain(w_int)
    known = faults is not None and device.fault_map_known
    levels = program_levels(layout, w_int * gain, faults if known else None)
    g = perturbed_levels(levels, layout, device, rngs, faults)
    w = layout.weight(np.moveaxis(g, 0, 2)) / gain  # (slices, columns, instances, ...) -> (instances, ...)
    if device.weight_mismatch:
        w = w * (1.0 + device.weight_mismatch * _normal(rngs, levels.shape[2:]))
    return w


def read_std(layout: CellLayout, device: Device, w_int: np.ndarray) -> float:
    """The std of each weight's read noise, in units of the integer weights `w_int` (summed over its cells)."""
    return device.read_sigma * layout.top * layout.read_gain() / layout.gain(w_int)


def draw_core(op: o.CoreOp, layout: CellLayout, device: Device, rngs: list[np.random.Generator],
              faults: np.ndarray | None) -> np.ndarray:
    """Every instance's effective weights of a core (instances, *weight shape), one instance per stream."""
    w = drawn_weights(np.asarray(op.quant.weight_int), layout, device, rngs, faults)
    return w if op.mask is None else w * op.mask


def draw_instances(graph: Graph, hw: HardwareSpec, count: int, seed: int,
                   fault_map: dict[str, np.ndarray] | None = None) -> Instances:
    """`count` chips drawn from `hw.device`, instance i from its own streams (seed, i, core): the same chip
    whatever `count`. A `fault_map` fixes every instance's stuck cells (per core-op, `CellLayout.levels` shape;
    a column a core has repaired onto a spare reads the spare's, `dse.sim.spares.chip_fault_map`)."""
    device, layout = hw.device, CellLayout.of(hw)
    fault_map = None if fault_map is None else spares.chip_fault_map(graph, hw, fault_map)
    shapes = infer_shapes(graph)
    inst = Instances(count, device)
    for k, node in enumerate(graph.of_type(o.CoreOp)):
        op, name = node.op, node.name
        rngs = [np.random.default_rng([seed, i, k]) for i in range(count)]
        inst.weights[name] = torch.as_tensor(draw_core(op, layout, device, rngs, None if fault_map is None
                                                       else fault_map[name]))
        if device.adc_offset_lsb:
            inst.adc_offset[name] = torch.as_tensor(device.adc_offset_lsb * _normal(rngs, (op.out_channels,)),
                                                    dtype=torch.float64)
        if device.threshold_mismatch:
            inst.threshold[name] = torch.as_tensor(1.0 + device.threshold_mismatch * _normal(rngs, shapes[name]))
        if device.read_sigma:
            inst.read_std[name] = read_std(layout, device, op.quant.weight_int)
    return inst


def check_fault_map(graph: Graph, hw: HardwareSpec, faults: dict[str, np.ndarray], path: str) -> None:
    """Refuse a fault map that does not hold exactly the compiled network's crossbars' cells (and their spare
    columns', `dse.sim.spares.check_spares`), naming one."""
    layout = CellLayout.of(hw)
    cores = {n.name: n.op for n in graph.of_type(o.CoreOp)}
    for name in faults:
        if name not in cores and not name.startswith(spares.PREFIX):
            raise ConfigError(f"fault map {path}: crossbar {name!r} is not a core-op of the compiled network")
    for name, op in cores.items():
        want = (layout.slices, layout.columns, *op.weight.shape)
        if name not in faults:
            raise ConfigError(f"fault map {path}: crossbar {name!r} is missing")
        if tuple(faults[name].shape) != want:
            raise ConfigError(f"fault map {path}: crossbar {name!r} has cells {tuple(faults[name].shape)}, the "
                              f"compiled network's has {want} (slices, columns, *weight shape)")
    spares.check_spares(graph, hw, faults, path)
    check_cells(faults, path)


def check_cells(faults: dict[str, np.ndarray], path: str) -> None:
    """Refuse a map whose arrays are not cells' states (0 working, 1 stuck low, 2 stuck high), naming one."""
    for name, cells in faults.items():
        if not np.isin(cells, (OK, LOW, HIGH)).all():
            raise ConfigError(f"fault map {path}: {name!r} holds values other than 0, 1, 2")


def load_fault_map(path: str) -> dict[str, np.ndarray]:
    """The arrays of the fault map at `path`; ConfigError, one line, where it cannot be read (the command lines
    read it before any work; its fit to the compiled network is checked once there is one)."""
    import zipfile

    from dse.files import not_an_npz

    problem = not_an_npz(path)
    if problem:
        raise ConfigError(f"hardware.device.fault_map: cannot read {path} ({problem}: a fault map is the .npz "
                          "python -m dse.sim.fault_map writes)")
    try:
        with np.load(path, allow_pickle=False) as data:
            faults = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:  # EOFError: an empty file
        raise ConfigError(f"hardware.device.fault_map: cannot read {path} ({e})") from None
    check_arrays(faults, path)  # a dataset's or a compiled network's .npz named as the map
    check_cells(faults, path)
    return faults


def not_a_fault_map(shapes: dict[str, tuple[int, ...]]) -> str | None:
    """What an .npz of arrays of these shapes holds instead of crossbars' cells, or None where it holds cells: a
    core-op's cells have four axes or more (slices, columns, *weight shape), its spare columns' three or more
    (crossbars, K, *fan-in). Shapes alone (`dse.files.npz_shapes` reads them from the headers) tell a dataset
    (its 'y' has one axis) or a compiled network ('__graph__') from a map."""
    flat = [k for k, shape in shapes.items() if len(shape) < (3 if k.startswith(spares.PREFIX) else 4)]
    if shapes and not flat:
        return None
    from dse.data.user_data import ARRAYS

    data = [k for k in shapes if k in ARRAYS]
    return (f"a dataset's arrays ({', '.join(map(repr, data))})" if data
            else "a compiled network ('__graph__')" if "__graph__" in shapes
            else f"{flat[0]!r} of shape {shapes[flat[0]]}" if flat else "no arrays")


def check_arrays(faults: dict[str, np.ndarray], path: str) -> None:
    """Refuse an .npz that holds no crossbar's cells at all, saying what it holds instead (`not_a_fault_map`). A
    dataset's .npz was read as the map; a float 'x' was refused as 'values other than 0, 1, 2', a binary one
    only after the whole compile, as a crossbar the network does not have."""
    held = not_a_fault_map({k: tuple(a.shape) for k, a in faults.items()})
    if held is not None:
        raise ConfigError(f"hardware.device.fault_map: {path} is not a fault map: it holds {held}, not each "
                          "crossbar's cells (one array per core-op, (slices, columns, *weight shape), as python -m "
                          "dse.sim.fault_map writes)")


def draw_fault_map(graph: Graph, hw: HardwareSpec, seed: int) -> dict[str, np.ndarray]:
    """The stuck cells of one chip drawn from `hw.device`'s stuck-at rates, per core-op, and of its crossbars'
    spare columns (`dse.sim.spares`). Each spare column from a stream of its own: the core's cells and its
    first k spares are the same whatever `hardware.crossbar.spare_columns`."""
    layout = CellLayout.of(hw)
    out = {}
    for k, n in enumerate(graph.of_type(o.CoreOp)):
        out[n.name] = draw_faults((layout.slices, layout.columns, *n.op.weight.shape), hw.device,
                                  [np.random.default_rng([seed, 0, k])])[0]
        if hw.crossbar.spare_columns:
            crossbars, count, *fan_in = spares.spare_shape(n.op, hw)
            out[spares.spare_key(n.name)] = np.stack(
                [draw_faults((crossbars, *fan_in), hw.device, [np.random.default_rng([seed, 1, k, j])])[0]
                 for j in range(count)], axis=1)
    return out


# --- the simulators' rules for N instances at once (instances stacked along the batch axis) -----------------


def instance_linear(x: Tensor, w: Tensor, op: o.CoreOp, shared: bool = False) -> Tensor:
    """conv(x_i, w_i) for every instance i, instance-major (rows i * N + n): x (I*N, C, ...) codes, or (N, C, ...)
    the same for every instance (`shared`: the input's, before any core), w (I, *weight shape); returns (I*N, O,
    ...). A dense core is one batched matrix product; a shared input one convolution with every instance's
    output channels; a convolution whose kernel tiles its input (stride = kernel, no padding: the max-pooling
    cores, 1x1 cores) one batched product of its tiles; any other convolution runs instance by instance on
    contiguous slices (2-4x faster on CPU than one grouped convolution of I times the channels)."""
    n_inst = w.shape[0]
    if shared and not op.dense:
        return _shared_conv(x, w, op)
    x = x.expand(n_inst, *x.shape) if shared else x.reshape(n_inst, -1, *x.shape[1:])
    if op.dense:
        g = op.groups
        xi = x.reshape(n_inst, x.shape[1], g, -1)
        return torch.einsum("inge,igoe->ingo", xi, w.reshape(n_inst, g, -1, xi.shape[-1])).reshape(-1, w.shape[1])
    if op.kernel == op.stride and not any(op.padding):
        return _tiled_conv(x, w, op)
    return torch.cat([conv_core(x[i], w[i], None, op) for i in range(n_inst)])


def _shared_conv(x: Tensor, w: Tensor, op: o.CoreOp) -> Tensor:
    """Every instance's convolution of one input x (N, C, H, W): one convolution, its output channels
    group-major then instance (what a grouped convolution needs), reordered instance-major."""
    n_inst, out_c, g = w.shape[0], w.shape[1], op.groups
    stacked = w.reshape(n_inst, g, out_c // g, *w.shape[2:]).transpose(0, 1).reshape(-1, *w.shape[2:])
    y = conv_core(x, stacked, None, op)  # (N, g * I * O/g, Ho, Wo)
    y = y.reshape(len(x), g, n_inst, out_c // g, *y.shape[2:]).permute(2, 0, 1, 3, 4, 5)
    return y.reshape(n_inst * len(x), out_c, *y.shape[-2:])


def _tiled_conv(x: Tensor, w: Tensor, op: o.CoreOp) -> Tensor:
    """A convolution whose kernel tiles its input, x (I, N, C, H, W): every tile's product with every
    instance's weights as one batched matrix product (I x groups of them)."""
    n_inst, n, c, h, wd = x.shape
    out_c, g, (kh, kw) = w.shape[1], op.groups, op.kernel
    ho, wo = h // kh, wd // kw
    tiles = x[..., : ho * kh, : wo * kw].reshape(n_inst, n, g, c // g, ho, kh, wo, kw)
    tiles = tiles.permute(0, 2, 3, 5, 7, 1, 4, 6).reshape(n_inst * g, -1, n * ho * wo)
    y = torch.bmm(w.reshape(n_inst * g, out_c // g, -1), tiles)  # (I * g, O/g, N * Ho * Wo)
    y = y.reshape(n_inst, g, out_c // g, n, ho, wo).permute(0, 3, 1, 2, 4, 5)
    return y.reshape(n_inst * n, out_c, ho, wo)


def read_noise(x: Tensor, op: o.CoreOp, std: float, gen: torch.Generator) -> Tensor:
    """Accumulator noise of every cell read with noise of `std`: sum_i x_i n_i has std ``std * ||x||``
    over the synapses of each output (exact in distribution, one normal draw per output)."""
    ones = torch.ones(op.weight.shape, dtype=x.dtype) if op.mask is None else torch.as_tensor(op.mask, dtype=x.dtype)
    energy = conv_core(x * x, ones, None, op)
    return std * energy.sqrt() * torch.randn(energy.shape, generator=gen, dtype=energy.dtype)
