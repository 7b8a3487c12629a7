"""Reform: rewrite a canonical network into core-ops (still float, still exact).

Every value of the network is carried on the chip as a *sum of terms*: slices of core-op outputs (all >= 0,
since the neuron is a ReLU) times constant coefficients. A linear op (Conv, Linear, AvgPool,
GlobalAvgPool, ScaleShift) reading such a sum becomes one core-op whose weights absorb the coefficients; it stays
*pending* until we know what follows it:

- a Relu turns it into one ReLU core-op; a PRelu/LeakyRelu into two, ``relu(s)`` and ``relu(-|a| s)``;
- a Clip(0, hi) into a core-op emitting ``relu(s)`` and ``relu(s - hi)`` (their difference is the clip): ReLU6,
  and HardSigmoid (imported as a ScaleShift and a Clip(0, 1)); a Clip(lo, hi) with lo != 0 (HardTanh) into
  ``relu(s - lo)``, ``relu(s - hi)`` and always-on units carrying lo (`hinge_core`);
- an element-wise function the chip lacks (Sigmoid, Tanh, HardSwish, SiLU, GELU, ELU, Softplus, Mish:
  `approximator.FUNCTIONS`) into the hidden layer of the MLP approximator, whose output layer the consumers'
  weights absorb (`approximator_output="merged"`) or a core of its own computes (`"core"`, `lift`);
- a MaxPool into a tree of fixed ReLU cores (`pool_tree`): of a value >= 0 directly (a Clip(0, hi)'s two ReLUs
  summed by one core first); of an approximated function or a HardTanh above its floor (`maxpool_above`); of a
  signed pair or a LeakyRelu as a max tree minus a min tree
  (`maxpool_pair`);
- anything else (a signed output: logits, a pre-activation feeding a residual add) into the pair
  ``relu(s), relu(-s)``, whose difference the consumer folds into its weights, or the host into a `Readout`.

Add of tensors concatenates terms (free). A signed average pooling that no activation follows pools each
term's node (a depthwise core whose fan-in is the window) and keeps the coefficients. Max pooling of values
>= 0 is an exact tree of ReLU core-ops:
``max(a, b) = relu(a - b) + relu(b)``, with weights of +-1 on codes of one scale (marked `fixed`).
Reshape/Flatten/Concat/Slice/Gather/DepthToSpace/SpaceToDepth are wiring. Every core-op is named after the
network node whose value it realizes, so its activation here is the teacher of tuning.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from dse.errors import NonFiniteError, UnsupportedOpError
from dse.hardware.spec import HardwareSpec
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.ir.shapes import SHAPE_RULES, Shape, infer_shapes
from dse.passes.approximator import FUNCTIONS, fit_hinges
from dse.passes.registry import register

# The MLP approximator's output layer: "merged" into every consumer's weights (each reads the hinges and the
# always-on units: k + 1 channels per value), or a "core" of its own emitting [v - L; 1] (2 per value)
ApproximatorOutput = Literal["merged", "core"]


@dataclass(frozen=True)
class Term:
    node: str  # a chip node whose output is >= 0
    start: int  # first channel (axis 1) of the slice
    count: int  # channels in the slice
    coeff: float


@dataclass(frozen=True)
class Terms:
    """value = sum(coeff * node[:, start:start+count]); `floor`: a bound below which the value does not go, where
    one is known by construction (an approximated function: `HingeFit.lowest`), else None; `lifted`: a node
    holding ``[value - floor; 1]`` (`lift`: the approximator's own core, or a max pooling's output,
    `maxpool_above`), which a next max pooling reads as it is; `disjoint`: two terms ``P - c N`` (c > 0) of which
    at most one is non-zero at any element (a signed pair relu(s), relu(-s); a PRelu's two ReLUs), so that
    ``max(value) = max(P) - c min(N)`` (`maxpool_pair`)."""

    terms: tuple[Term, ...]
    floor: float | None = None
    lifted: str | None = None
    disjoint: bool = False

    @property
    def nonneg(self) -> bool:
        return all(t.coeff > 0 for t in self.terms)


@dataclass(frozen=True)
class LinearSpec:
    """A linear map as core-op parameters (per output channel), before it meets its activation."""

    weight: np.ndarray  # (O, I/groups, kh, kw), float64
    bias: np.ndarray  # (O,)
    stride: tuple[int, int]
    padding: o.Pads
    groups: int
    dense: bool
    # (O, I/groups, kh, kw) the real synapses: of an expanded grouped op (groups == 1), or a Conv's `mask` (a
    # transposed convolution's phases, a linear upsampling's one or two taps per neuron; grouped or not)
    mask: np.ndarray | None = None
    order: np.ndarray | None = None  # a grouped op's outputs are put in this order by a Gather (see `copies`)


@dataclass(frozen=True)
class Pending:
    """A linear op not yet turned into a core-op; `name` is the network node whose value it is."""

    lin: LinearSpec
    src: Terms
    name: str
    pool: bool = False  # an average pooling (the same window on every channel, weights >= 0, no bias)


Value = Terms | Pending


class _Reformer:
    def __init__(self, graph: Graph, samples: dict[str, np.ndarray], width: int,
                 output: ApproximatorOutput) -> None:
        self.src = graph
        self.src_shapes = infer_shapes(graph)
        self.samples, self.width, self.approximator_output = samples, width, output
        self.b = GraphBuilder()
        self.values: dict[str, Value] = {}

    # --- chip graph construction -------------------------------------------------------------------------
    def add(self, base: str, op: o.Op, *inputs: str) -> str:
        return self.b.add(base, op, *inputs)

    def whole(self, t: Term) -> str:
        """The term's slice as a node of its own (a Slice when it is not the whole node)."""
        if t.start == 0 and t.count == self.b.shape(t.node)[0]:
            return t.node
        return self.add(f"{t.node}_slice", o.Slice(t.start, t.start + t.count), t.node)

    def wire_terms(self, name: str, op: o.Op, v: Terms) -> Terms:
        """A wiring op applied term by term (the wiring of a sum is the sum of the wirings), each term's slice
        wired whole."""
        out = []
        for t in v.terms:
            node = self.add(name, op, self.whole(t))
            out.append(Term(node, 0, self.b.shape(node)[0], t.coeff))
        return Terms(tuple(out), disjoint=v.disjoint)

    def core(self, base: str, lin: LinearSpec, src: Terms, *, fixed: bool = False) -> str:
        """One ReLU core-op computing relu(lin(src)) over the concatenation of the terms' nodes."""
        weight, groups, mask = lin.weight, lin.groups, None
        if len(src.terms) == 1 and groups > 1:  # keep a depthwise op depthwise
            t = src.terms[0]
            inp, weight, mask = self.whole(t), weight * t.coeff, lin.mask
        else:
            nodes = list(dict.fromkeys(t.node for t in src.terms))
            offsets = np.cumsum([0] + [self.b.shape(n)[0] for n in nodes])
            inp = nodes[0] if len(nodes) == 1 else self.add(f"{base}_in", o.Concat(0), *nodes)
            if groups > 1:  # a residual add, or a pooling of a sum: stays grouped, each group reading its
                # channels of every term, routed next to each other (a dense form would be mostly zeros)
                in_g = weight.shape[1]
                per_group = np.arange(groups)[:, None] * in_g + np.arange(in_g)[None, :]  # (groups, in_g)
                index = np.stack([offsets[nodes.index(t.node)] + t.start + per_group for t in src.terms], axis=1)
                inp = self.add(f"{base}_route", o.Gather(index.reshape(-1).astype(np.int64)), inp)
                weight = np.concatenate([t.coeff * weight for t in src.terms], axis=1)
                mask = None if lin.mask is None else np.concatenate([lin.mask] * len(src.terms), axis=1)
            elif len(src.terms) == 1 and offsets[-1] == src.terms[0].count:
                # the whole of one node: the weight as it is, not expanded into a zero tensor (for VGG's FC1,
                # two float64 copies of 0.8 GB fewer in `prepare`)
                weight = weight if src.terms[0].coeff == 1 else src.terms[0].coeff * weight
                mask = None if lin.mask is None or lin.mask.all() else lin.mask
            else:
                real = np.ones(weight.shape, bool) if lin.mask is None else lin.mask
                full = np.zeros((weight.shape[0], offsets[-1], *weight.shape[2:]))
                mask = np.zeros(full.shape, dtype=bool)
                for t in src.terms:
                    at = offsets[nodes.index(t.node)] + t.start
                    full[:, at : at + t.count] += t.coeff * weight
                    mask[:, at : at + t.count] |= real
                weight = full
                mask = None if mask.all() else mask
        op = o.CoreOp(
            weight.astype(np.float32), lin.bias.astype(np.float32), lin.stride, lin.padding, groups,
            lin.dense, None if mask is None or mask.all() else mask, fixed=fixed,
        )
        node = self.add(base, op, inp)
        return node if lin.order is None else self.add(f"{base}_order", o.Gather(lin.order), node)

    # --- value materialization ---------------------------------------------------------------------------
    def signed(self, v: Value, *, for_host: bool = False) -> Terms:
        """A value as terms, materializing a pending linear op (as a pair unless provably >= 0). `for_host`:
        the host reads the pair, so it must be a core's own output (no reordering Gather after it)."""
        if isinstance(v, Terms):
            return v
        base, lin, n_out = v.name, v.lin, v.lin.weight.shape[0]
        if v.src.nonneg and np.all(lin.weight >= 0) and np.all(lin.bias >= 0):
            return Terms((Term(self.core(base, lin, v.src), 0, n_out, 1.0),))
        if v.pool:
            return self.pool_terms(v)
        node = self.core(base, stacked(lin, -1.0, -lin.bias, keep_groups=not for_host), v.src)
        return Terms((Term(node, 0, n_out, 1.0), Term(node, n_out, n_out, -1.0)), disjoint=True)

    def pool_terms(self, v: Pending) -> Terms:
        """An average pooling of a signed sum of terms, term by term: each node the terms read is pooled by one
        depthwise core (its values are >= 0, so are their averages: no pair), and the coefficients carry over
        to the pooled channels. Its fan-in is then the window, not the window times the number of terms (the
        pair's 2, an approximated function's hinges plus one, before a 7x7 global pool)."""
        window = v.lin.weight[:1]  # the same on every channel
        pooled = {}
        for node in dict.fromkeys(t.node for t in v.src.terms):
            c = self.b.shape(node)[0]
            spec = LinearSpec(np.repeat(window, c, axis=0), np.zeros(c), v.lin.stride, v.lin.padding, c, False)
            pooled[node] = self.core(f"{v.name}_part", spec, Terms((Term(node, 0, c, 1.0),)))
        return Terms(tuple(Term(pooled[t.node], t.start, t.count, t.coeff) for t in v.src.terms))

    def relu(self, base: str, v: Value) -> Terms:
        if isinstance(v, Pending):
            return Terms((Term(self.core(base, v.lin, v.src), 0, v.lin.weight.shape[0], 1.0),))
        if len(v.terms) == 1 and v.nonneg:
            return v
        return self.relu(base, Pending(identity(self.shape_of(v)), v, base))

    def clip(self, base: str, v: Value, lo: float | None, hi: float | None, name: str) -> Terms:
        p = v if isinstance(v, Pending) else Pending(identity(self.shape_of(v)), v, base)
        if lo is not None and lo != 0:  # lo + relu(s - lo) - relu(s - hi): HardTanh's Clip(-1, 1), exact
            knots = [lo] if hi is None else [lo, hi]
            node, n_out = self.hinge_core(base, p, knots), p.lin.weight.shape[0]
            return Terms((*(Term(node, k * n_out, n_out, c) for k, c in enumerate((1.0, -1.0)[: len(knots)])),
                          Term(node, len(knots) * n_out, n_out, lo)), lo)
        if lo is None:  # min(s, hi) = s - relu(s - hi)
            s = self.signed(p)
            if hi is None:
                return s
            over = self.relu(f"{base}_over", shift(p, -hi))
            return Terms(s.terms + tuple(Term(t.node, t.start, t.count, -t.coeff) for t in over.terms))
        if hi is None:
            return self.relu(base, v)
        lin, n_out = p.lin, p.lin.weight.shape[0]
        node = self.core(base, stacked(lin, 1.0, lin.bias - hi), p.src)
        return Terms((Term(node, 0, n_out, 1.0), Term(node, n_out, n_out, -1.0)), 0.0)  # >= 0: may be max pooled

    def prelu(self, name: str, v: Value, op: o.PRelu) -> Terms:
        """``relu(s) - a * relu(-s)``: a core-op of ``relu(s)`` and one of ``relu(-|a| s)`` (the slope's magnitude
        folded into its weights, per output channel, its sign into the term's coefficient), reading the same
        inputs; a grouped op stays grouped in both. Slopes of both signs (a learned PReLU's) take one core of
        ``relu(-|a| s)`` per sign, each zero on the other sign's channels."""
        p = v if isinstance(v, Pending) else Pending(identity(self.shape_of(v)), v, name)
        shape = self.src_shapes[name]
        per = np.broadcast_to(np.asarray(op.slope, np.float64), shape).reshape(shape[0], -1)
        if not np.all(per == per[:, :1]):
            raise UnsupportedOpError("PRelu", name, "a slope that varies within a channel")
        slope = per[:, 0]
        lin, n_out = p.lin, p.lin.weight.shape[0]
        if np.any(slope > 0) and np.any(slope < 0):
            # learned per-channel slopes of both signs: relu(s) - a+ relu(-s) + a- relu(-s) (a+ = max(a, 0),
            # a- = max(-a, 0)), a core of relu(-a+ s) and one of relu(-a- s), each zero on the other sign's channels
            terms = [Term(self.core(name, lin, p.src), 0, n_out, 1.0)]
            for part, coeff, suffix in ((np.maximum(slope, 0), -1.0, "_neg"), (np.maximum(-slope, 0), 1.0, "_below")):
                neg = dataclasses.replace(lin, weight=-part.reshape(-1, 1, 1, 1) * lin.weight, bias=-part * lin.bias)
                terms.append(Term(self.core(f"{name}{suffix}", neg, p.src), 0, n_out, coeff))
            return Terms(tuple(terms))
        neg = dataclasses.replace(lin, weight=-np.abs(slope).reshape(-1, 1, 1, 1) * lin.weight,
                                  bias=-np.abs(slope) * lin.bias)
        pos_node, neg_node = self.core(name, lin, p.src), self.core(f"{name}_neg", neg, p.src)
        negative = bool(np.any(slope < 0))  # then both terms are >= 0: no pair to pool as one
        return Terms((Term(pos_node, 0, n_out, 1.0), Term(neg_node, 0, n_out, 1.0 if negative else -1.0)),
                     disjoint=not negative)

    def shape_of(self, v: Terms) -> Shape:
        t = v.terms[0]
        return (t.count, *self.b.shape(t.node)[1:])

    # --- ops ---------------------------------------------------------------------------------------------
    def run(self) -> Graph:
        for node in self.src:
            self.values[node.name] = self.convert(node)
        outputs = []
        for out in self.src.outputs:
            v = self.signed(self.values[out], for_host=True)
            outputs.append(self.output(out, v))
        return self.b.build(outputs).prune_dead()

    def output(self, name: str, v: Terms) -> str:
        if len(v.terms) == 1 and v.terms[0].coeff == 1.0:
            return self.whole(v.terms[0])
        pos, neg = v.terms if len(v.terms) == 2 else (None, None)
        is_pair = (
            pos is not None and pos.node == neg.node and pos.coeff == 1.0 and neg.coeff == -1.0
            and pos.start == 0 and neg.start == pos.count == neg.count == self.b.shape(pos.node)[0] // 2
        )
        if not is_pair:
            if len(self.shape_of(v)) not in (1, 3):  # the sum of its terms needs a core, on (F,) or (C, H, W)
                raise UnsupportedOpError("Output", name, f"an output of per-sample shape {self.shape_of(v)} that "
                                         "is a sum of values: the chip computes on (F,) or (C, H, W) values; "
                                         "flatten it")
            # one core sums them: its output is a pair, or one term when the sum is provably >= 0 (no Readout)
            return self.output(name, self.signed(Pending(identity(self.shape_of(v)), v, name), for_host=True))
        return self.add(f"{name}_readout", o.Readout(), pos.node)

    def convert(self, node) -> Value:  # noqa: C901 - one branch per op type
        op, name = node.op, node.name
        ins = [self.values[i] for i in node.inputs]
        rank = len(self.src_shapes[name])
        wiring = isinstance(op, (o.Input, o.Reshape, o.Slice, o.Concat, o.Identity))
        if rank not in (1, 3) and (rank == 0 or not wiring):
            # a core-op computes on features (F,) or images (C, H, W); wiring carries (C, L) and (C, H, W, ...)
            # values between them, but a per-sample scalar (a squeezed last output) has no channel to carry it on
            raise UnsupportedOpError(type(op).__name__, name, f"a value of per-sample shape "
                                     f"{self.src_shapes[name]} (the chip computes on (F,) or (C, H, W) values)")
        if isinstance(op, o.Input):
            self.b.add_exact(name, op)
            return Terms((Term(name, 0, op.shape[0], 1.0),))
        if isinstance(op, o.Pad) and any(op.value) and not self.src.host_input(node.inputs[0]):
            raise UnsupportedOpError("Pad", name, "a non-zero constant pad inside the network (only the host "
                                     "pads, and only the input)")
        if isinstance(op, (o.Pad, o.Reshape, o.Gather, o.DepthToSpace, o.SpaceToDepth)):
            # the host's pad of the input, a zero pad that did not fold into its reader, a reshape, a routing of
            # channels or of positions (an upsampling, a transposed convolution's interleave)
            return self.wire_terms(name, op, self.signed(ins[0]))
        if isinstance(op, (o.Conv, o.Linear, o.AvgPool, o.GlobalAvgPool, o.ScaleShift)):
            src = self.signed(ins[0])
            pool = isinstance(op, (o.AvgPool, o.GlobalAvgPool))
            return Pending(linear_spec(op, self.shape_of(src), name), src, name, pool)
        if isinstance(op, o.Relu):
            return self.relu(name, ins[0])
        if isinstance(op, o.Clip):
            return self.clip(name, ins[0], op.lo, op.hi, name)
        if isinstance(op, o.PRelu):
            return self.prelu(name, ins[0], op)
        if isinstance(op, o.Add):
            return Terms(tuple(t for v in ins for t in self.signed(v).terms))
        if isinstance(op, o.MaxPool):
            v = self.signed(ins[0])
            if len(v.terms) == 1 and v.nonneg:
                return self.maxpool(name, op, v)
            if v.nonneg:  # a sum of values >= 0 (ReLU outputs added): one core sums them, its ReLU exact
                return self.maxpool(name, op, self.relu(f"{name}_sum", v))
            if v.floor is not None:
                return self.maxpool_above(name, op, v)
            if v.disjoint:
                return self.maxpool_pair(name, op, v)
            raise UnsupportedOpError("MaxPool", name, "its input is a sum of values that may be < 0 (not a ReLU's "
                                     "output, a signed pair, a LeakyRelu or an approximated function)")
        if isinstance(op, o.Slice):
            v = self.signed(ins[0])
            return Terms(tuple(
                Term(t.node, t.start + op.start, op.stop - op.start, t.coeff) for t in v.terms
            ), v.floor, disjoint=v.disjoint)  # the same channels of each term: a bound and disjointness stay
        if isinstance(op, o.Concat):
            return self.concat(name, op, [self.signed(v) for v in ins])
        if type(op) in FUNCTIONS:
            return self.approximate(name, functools.partial(FUNCTIONS[type(op)], op), ins[0], node.inputs[0])
        if isinstance(op, o.Softmax):
            kind = "LogSoftmax" if op.log else "Softmax"
            raise UnsupportedOpError(kind, name, f"only a {kind} at the output is supported (it is dropped)")
        raise UnsupportedOpError(type(op).__name__, name, "no core-op form")

    def approximate(self, name: str, fn: Callable[[np.ndarray], np.ndarray], v: Value, src: str) -> Terms:
        """f(s) as hinge units relu(s - t_k) (one core-op, k-major channels) plus an always-on unit."""
        samples = self.samples.get(src)
        if samples is not None and not np.isfinite(samples).all():
            raise NonFiniteError(f"node {name}: the values reaching it on the calibration samples hold NaN or Inf "
                                 "(the network overflows or its weights are not finite)")
        fit = fit_hinges(fn, samples, self.width)
        p = v if isinstance(v, Pending) else Pending(identity(self.shape_of(v)), v, name)
        node, n_out, width = self.hinge_core(f"{name}_hidden", p, fit.knots), p.lin.weight.shape[0], len(fit.knots)
        terms = [Term(node, k * n_out, n_out, float(a)) for k, a in enumerate(fit.coeffs) if a != 0.0]
        v = Terms((*terms, Term(node, width * n_out, n_out, fit.const)), fit.lowest)
        return self.lift(name, v) if self.approximator_output == "core" else v

    def lift(self, base: str, v: Terms) -> Terms:
        """A value bounded below by L (`Terms.floor`: an approximated function, whose hinges sum to a signed value)
        as one ReLU core of ``v - L`` (>= 0 over the fit's range, so the ReLU changes nothing there; past it,
        where a saturating fit may drift below L, it clips to L, nearer the function than the fit) beside as
        many always-on units carrying the ``+ L``: the terms ``[v - L; 1]`` of one node (`Terms.lifted`)."""
        assert v.floor is not None
        c = self.shape_of(v)[0]
        lin = identity(self.shape_of(v))
        node = self.core(base, stacked(dataclasses.replace(lin, bias=lin.bias - v.floor), 0.0, np.ones(c)), v)
        return Terms((Term(node, 0, c, 1.0), Term(node, c, c, v.floor)), v.floor, node)

    def hinge_core(self, base: str, p: Pending, knots: list[float] | np.ndarray) -> str:
        """One core of the units relu(s - t) for each knot t (knot-major channels) and as many always-on units
        (zero weights, bias 1), s the pending linear op: the approximator's hidden layer, a Clip's two ReLUs and
        its constant lower bound. A grouped op (a depthwise convolution) stays grouped (`copies`): each unit reads
        its own group's rows, not a dense, mostly-zero copy of all of them."""
        lin, n_out = p.lin, p.lin.weight.shape[0]
        biases = [lin.bias - t for t in knots] + [np.ones(n_out)]
        return self.core(base, copies(lin, [1.0] * len(knots) + [0.0], biases), p.src)

    def concat(self, name: str, op: o.Concat, vs: list[Terms]) -> Terms:
        if op.axis != 0:
            # a concatenation along a spatial axis would need a core-op per position: not supported
            raise UnsupportedOpError("Concat", name, f"axis {op.axis + 1} (only the channel axis is supported)")
        if all(len(v.terms) == 1 and v.terms[0].coeff == 1.0 for v in vs):
            node = self.add(name, op, *(self.whole(v.terms[0]) for v in vs))
            return Terms((Term(node, 0, self.b.shape(node)[0], 1.0),))
        pairs = []
        for v in vs:  # each part as a pair [relu(s); relu(-s)], even one >= 0 (its negative half is then 0), so
            # that the positive and the negative concat line up channel for channel
            lin = identity(self.shape_of(v))
            node, c = self.core(f"{name}_part", stacked(lin, -1.0, -lin.bias), v), lin.weight.shape[0]
            pairs.append(Terms((Term(node, 0, c, 1.0), Term(node, c, c, -1.0))))
        pos = self.add(f"{name}_pos", op, *(self.whole(p.terms[0]) for p in pairs))
        neg = self.add(f"{name}_neg", op, *(self.whole(p.terms[-1]) for p in pairs))
        c = self.b.shape(pos)[0]
        return Terms((Term(pos, 0, c, 1.0), Term(neg, 0, c, -1.0)), disjoint=True)

    def maxpool(self, name: str, op: o.MaxPool, v: Terms) -> Terms:
        """max over each window of a value >= 0 (one term): a tree of fixed ReLU core-ops (`pool_tree`)."""
        src = self.whole(v.terms[0])
        return Terms((Term(self.pool_tree(name, op, src, "max"), 0, self.b.shape(src)[0], 1.0),))

    def pool_tree(self, name: str, op: o.MaxPool, src: str, kind: str) -> str:
        """The max (or min) over each window of `src` (>= 0) as a tree of fixed ReLU core-ops on codes of one
        scale, exact: stage 1 a depthwise convolution over the window, every later stage a depthwise 1x1. Each
        value of the tree is a signed sum of the last stage's neuron outputs ("parts"); two values a, b become
        the parts relu(a - b), relu(b) of max = their sum, or relu(a), relu(a - b) of min = their difference
        (a, b >= 0, so relu(a) = a and min(a, b) = a - relu(a - b)); a value left over passes as one part."""
        if overhangs(op, self.b.shape(src)):
            raise UnsupportedOpError("MaxPool", name, "ceil_mode=1 with a last window past the padding")
        channels = self.b.shape(src)[0]
        kh, kw = op.kernel
        values: list[np.ndarray] = list(np.eye(kh * kw))  # each tap, as coefficients over the window's taps
        node, first = src, True
        while first or len(values) > 1 or np.count_nonzero(values[0]) > 1:
            rows: list[np.ndarray] = []
            parts: list[list[tuple[int, float]]] = []  # each new value: (row, coefficient) pairs
            for a, b in zip(values[0:-1:2], values[1::2], strict=False):
                rows += [a - b, b] if kind == "max" else [a, a - b]
                parts.append([(len(rows) - 2, 1.0), (len(rows) - 1, 1.0 if kind == "max" else -1.0)])
            if len(values) % 2:
                rows.append(values[-1])
                parts.append([(len(rows) - 1, 1.0)])
            weight = np.stack(rows)
            if first:
                weight = dilate(weight.reshape(len(rows), 1, kh, kw), op.dilation)
                node = self.fixed_core(f"{name}_{kind}", np.tile(weight, (channels, 1, 1, 1)), channels, node,
                                       stride=op.stride, padding=op.padding)
            else:
                weight = weight.reshape(len(rows), -1, 1, 1)
                node = self.fixed_core(f"{name}_{kind}", np.tile(weight, (channels, 1, 1, 1)), channels, node)
            values = [np.zeros(len(rows)) for _ in parts]
            for value, terms in zip(values, parts, strict=True):
                for row, coeff in terms:
                    value[row] = coeff
            first = False
        return node

    def maxpool_above(self, name: str, op: o.MaxPool, v: Terms) -> Terms:
        """max over each window of a value bounded below by L (`Terms.floor`: an approximated function, whose
        hinges sum to a signed value): ``max(v) = max(v - L) + L``, the max-pooling tree (`maxpool`) on the
        lifted ``[v - L; 1]`` (`lift`); the always-on units pooled carry the ``+ L`` with the pooled shape (a zero
        padding after them sees zero, as in the original). A value lifted already (the approximator's own core,
        or a max pooling's output: SPPF's chain) is pooled as it is (`Terms.lifted`). With L = 0 (a Clip(0, hi):
        ReLU6, HardSigmoid) one core computes ``v`` alone, and the tree pools it as any value >= 0."""
        if v.floor == 0 and v.lifted is None:
            return self.maxpool(name, op, self.relu(f"{name}_lift", v))
        shape = self.shape_of(v)
        node = v.lifted or self.lift(f"{name}_lift", v).lifted
        pooled = self.maxpool(name, op, Terms((Term(node, 0, 2 * shape[0], 1.0),))).terms[0].node
        return Terms((Term(pooled, 0, shape[0], 1.0), Term(pooled, shape[0], shape[0], v.floor)), v.floor, pooled)

    def maxpool_pair(self, name: str, op: o.MaxPool, v: Terms) -> Terms:
        """max over each window of ``P - c N`` where at most one of P, N is non-zero at any element
        (`Terms.disjoint`: a convolution's output as its signed pair, a LeakyRelu): a window with an element > 0
        has its max in P, and N is 0 there; a window without has max(P) = 0 and its max is ``-c min(N)``. So
        ``max(P) - c min(N)``: a max tree of P and a min tree of N (`pool_tree`). The pooling's own padding is
        refused: a min tree would read its zeros as values (an explicit zero Pad before it is data, and fine)."""
        if any(op.padding):
            raise UnsupportedOpError("MaxPool", name, "padding of a value that may be < 0 (a convolution's or a "
                                     "LeakyRelu's output): its min tree would read the padding as zeros")
        pos, neg = v.terms
        high = self.pool_tree(name, op, self.whole(pos), "max")
        low = self.pool_tree(f"{name}_neg", op, self.whole(neg), "min")
        c = self.b.shape(high)[0]
        return Terms((Term(high, 0, c, 1.0), Term(low, 0, c, neg.coeff)), disjoint=True)

    def fixed_core(self, base: str, weight: np.ndarray, groups: int, src: str,
                   stride: tuple[int, int] = (1, 1), padding: o.Pads = (0, 0, 0, 0)) -> str:
        op = o.CoreOp(weight.astype(np.float32), np.zeros(weight.shape[0], np.float32), stride, padding, groups,
                      False, None, fixed=True)
        return self.add(base, op, src)


def identity(shape: Shape) -> LinearSpec:
    c = shape[0]
    return LinearSpec(np.ones((c, 1, 1, 1)), np.zeros(c), (1, 1), (0, 0, 0, 0), c, len(shape) == 1)


def shift(p: Pending, delta: float) -> Pending:
    lin = p.lin
    moved = LinearSpec(lin.weight, lin.bias + delta, lin.stride, lin.padding, lin.groups, lin.dense, lin.mask)
    return Pending(moved, p.src, p.name)


def stacked(lin: LinearSpec, sign: float, bias2: np.ndarray, *, keep_groups: bool = True) -> LinearSpec:
    """One op emitting ``[lin(x); sign * lin_weight(x) + bias2]``: a signed pair, or a clip's two ReLUs (`copies`)."""
    return copies(lin, [1.0, sign], [lin.bias, bias2], keep_groups=keep_groups)


def copies(lin: LinearSpec, scales: list[float], biases: list[np.ndarray], *, keep_groups: bool = True) -> LinearSpec:
    """One op emitting ``[scale_k * lin_weight(x) + bias_k for each k]`` (copy-major channels): a signed pair,
    a clip's two ReLUs, the approximator's hinges and always-on units (scale 0).

    Stacked on the output axis, a grouped op's groups would shift (a later copy would read other input channels
    than the first). A grouped op therefore stays grouped with each group's copies next to each other (every
    copy of an output reads the same rows: block-diagonal packing, no dense form of mostly zeros), and a Gather
    (`order`) routes its outputs into copy-major order. Without `keep_groups` (the host reads the pair, and a
    readout reads a core itself) it is expanded to a dense op whose mask keeps its real synapses.
    """
    weight, mask, n = lin.weight, lin.mask, len(scales)
    if lin.groups > 1 and keep_groups:
        out_c, groups = weight.shape[0], lin.groups
        per = out_c // groups
        w = weight.reshape(groups, per, *weight.shape[1:])
        b = np.stack([np.asarray(bias).reshape(groups, per) for bias in biases], axis=1)
        # group g holds outputs [copy 0; ...; copy n-1], per each: output j of copy k sits at g n per + k per + j % per
        j = np.arange(out_c)
        first = (j // per) * n * per + j % per
        if mask is not None:  # each copy reads the same synapses
            mask = np.concatenate([mask.reshape(w.shape)] * n, axis=1).reshape(n * out_c, *weight.shape[1:])
        return LinearSpec(np.concatenate([times(w, s) for s in scales], axis=1).reshape(n * out_c, *weight.shape[1:]),
                          b.reshape(-1), lin.stride, lin.padding, groups, lin.dense, mask,
                          np.concatenate([first + k * per for k in range(n)]))
    if lin.groups > 1:
        weight, dense_mask = expand_groups(weight, lin.groups)
        mask = dense_mask if mask is None else expand_groups(mask.astype(np.float64), lin.groups)[0].astype(bool)
    return LinearSpec(
        np.concatenate([times(weight, s) for s in scales]), np.concatenate(biases), lin.stride, lin.padding, 1,
        lin.dense, None if mask is None else np.concatenate([mask] * n),
    )


def times(weight: np.ndarray, scale: float) -> np.ndarray:
    """`scale * weight`, with +0 weights for a zero scale (always-on units; a negative weight would give -0)."""
    return scale * weight if scale else np.zeros_like(weight)


def expand_groups(weight: np.ndarray, groups: int) -> tuple[np.ndarray, np.ndarray]:
    """A grouped weight (O, I/g, kh, kw) as a dense (O, I, kh, kw) one plus the mask of real synapses."""
    out_c, in_g, kh, kw = weight.shape
    per_group = out_c // groups
    dense = np.zeros((out_c, in_g * groups, kh, kw))
    mask = np.zeros(dense.shape, dtype=bool)
    for oc in range(out_c):
        g = oc // per_group
        dense[oc, g * in_g : (g + 1) * in_g] = weight[oc]
        mask[oc, g * in_g : (g + 1) * in_g] = True
    return dense, mask


def dilate(weight: np.ndarray, dilation: tuple[int, int]) -> np.ndarray:
    """A kernel (..., kh, kw) with dilation as the bigger kernel it covers, zero between its taps."""
    if tuple(dilation) == (1, 1):
        return weight
    dh, dw = dilation
    kh, kw = weight.shape[-2:]
    big = np.zeros((*weight.shape[:-2], (kh - 1) * dh + 1, (kw - 1) * dw + 1), dtype=weight.dtype)
    big[..., ::dh, ::dw] = weight
    return big


def overhangs(op: o.MaxPool | o.AvgPool, in_shape: Shape) -> bool:
    """Whether `ceil_mode` adds a last window that reaches past the padding (it has fewer taps than the
    others); when it adds none, the op is the same as without it."""
    rule = SHAPE_RULES[type(op)]
    return op.ceil_mode and rule(op, [in_shape]) != rule(dataclasses.replace(op, ceil_mode=False), [in_shape])


def linear_spec(op: o.Op, in_shape: Shape, name: str) -> LinearSpec:
    """A linear network op as core-op parameters."""
    f64 = np.float64
    if isinstance(op, o.Linear):
        w = np.asarray(op.weight, f64)
        b = np.zeros(w.shape[0]) if op.bias is None else np.asarray(op.bias, f64)
        return LinearSpec(w.reshape(*w.shape, 1, 1), b, (1, 1), (0, 0, 0, 0), 1, True)
    if isinstance(op, o.Conv):
        w = dilate(np.asarray(op.weight, f64), op.dilation)
        b = np.zeros(w.shape[0]) if op.bias is None else np.asarray(op.bias, f64)
        mask = None if op.mask is None else dilate(op.mask, op.dilation)  # grouped or not, as `w`
        return LinearSpec(w, b, tuple(op.stride), tuple(op.padding), op.groups, False, mask)
    if isinstance(op, o.AvgPool):
        if overhangs(op, in_shape) or (any(op.padding) and not op.count_include_pad):
            # windows that overhang the border average fewer values: not one weight per tap
            raise UnsupportedOpError("AveragePool", name, "border windows with a varying divisor")
        c = in_shape[0]
        kh, kw = op.kernel
        return LinearSpec(dilate(np.full((c, 1, kh, kw), 1.0 / (kh * kw)), op.dilation), np.zeros(c),
                          tuple(op.stride), tuple(op.padding), c, False)
    if isinstance(op, o.GlobalAvgPool):
        c, h, w = in_shape
        return LinearSpec(np.full((c, 1, h, w), 1.0 / (h * w)), np.zeros(c), (1, 1), (0, 0, 0, 0), c, False)
    if isinstance(op, o.ScaleShift):
        from dse.passes.canonicalize import per_channel

        vec = per_channel(op, in_shape)
        full = np.broadcast_shapes(in_shape, np.shape(op.scale), np.shape(op.shift))
        if vec is None or full != tuple(in_shape):
            raise UnsupportedOpError("Mul/Add", name, "a constant that varies within a channel")
        scale, sh = vec
        c = in_shape[0]
        return LinearSpec(scale.reshape(c, 1, 1, 1), sh, (1, 1), (0, 0, 0, 0), c, len(in_shape) == 1)
    raise UnsupportedOpError(type(op).__name__, name, "not linear")


@register("reform", exact=True)
def reform(graph: Graph, hw: HardwareSpec | None = None, *, samples: dict[str, np.ndarray] | None = None,
           approximator_width: int = 8, approximator_output: ApproximatorOutput = "merged") -> Graph:
    """`samples`: values that reach each element-wise function the chip lacks (keyed by the node that feeds
    it), to place the approximator's knots; `approximator_width`: its hidden units per value;
    `approximator_output`: its output layer merged into the consumers' weights, or a core of its own."""
    return _Reformer(graph, samples or {}, approximator_width, approximator_output).run()
