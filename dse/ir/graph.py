"""The Graph: named nodes in topological order, one input, one or more outputs.

A Graph is treated as immutable: passes build a new one (with `GraphBuilder` or `Graph.replace_nodes`) and
never mutate the old, so a pass that fails leaves its input intact and every intermediate graph of a
pipeline can be kept for the trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from dse.ir.ops import Input, Op, Readout, Reshape
from dse.ir.shapes import SHAPE_RULES, Shape


@dataclass(frozen=True)
class Node:
    """A named op and the names of the nodes it reads.

    `block` groups the core-ops that together replace one core-op of the exact (reformed) graph, such as
    the partial-sum cores and the merge core of a split; they are tuned as one unit against that core-op's
    activation. Empty means the node is its own block.
    """

    name: str
    op: Op
    inputs: tuple[str, ...] = ()
    block: str = ""

    @property
    def block_name(self) -> str:
        return self.block or self.name


class GraphError(ValueError):
    """The graph is malformed (dangling input, cycle, duplicate name): a bug in a pass or an importer."""


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    _index: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, Node] = {}
        for node in self.nodes:
            if node.name in index:
                raise GraphError(f"duplicate node name {node.name!r}")
            for src in node.inputs:
                if src not in index:
                    raise GraphError(f"node {node.name!r} reads {src!r}, which is not defined before it")
            index[node.name] = node
        for out in self.outputs:
            if out not in index:
                raise GraphError(f"graph output {out!r} is not a node")
        inputs = [n for n in self.nodes if isinstance(n.op, Input)]
        if len(inputs) != 1:
            raise GraphError(f"a graph has exactly one Input node, found {len(inputs)}")
        object.__setattr__(self, "_index", index)

    # --- queries ----------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def input(self) -> Node:
        return next(n for n in self.nodes if isinstance(n.op, Input))

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def read_by_host(self, name: str) -> bool:
        """Whether only the host reads node `name`: it is a graph output, or only `Readout`s (the host's
        decoding of a signed pair) read it."""
        readers = self.consumers(name)
        return (bool(readers) or name in self.outputs) and all(isinstance(r.op, Readout) for r in readers)

    def host_input(self, name: str) -> bool:
        """Whether node `name` is the network input as the host sends it: the Input, or a Reshape of it (a (C, L)
        signal read as the (C, 1, L) image), so that a constant pad of it is the host's to send."""
        node = self[name]
        while isinstance(node.op, Reshape):
            node = self[node.inputs[0]]
        return isinstance(node.op, Input)

    def of_type(self, *types: type[Op]) -> list[Node]:
        return [n for n in self.nodes if isinstance(n.op, types)]

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for n in self.nodes:
            counts[type(n.op).__name__] = counts.get(type(n.op).__name__, 0) + 1
        return counts

    # --- building ---------------------------------------------------------------------------------------
    def replace_nodes(self, nodes: Iterable[Node], outputs: Iterable[str] | None = None) -> Graph:
        return Graph(tuple(nodes), tuple(self.outputs if outputs is None else outputs))

    def prune_dead(self) -> Graph:
        """Drop nodes no output depends on (the Input always stays)."""
        live = set(self.outputs)
        for node in reversed(self.nodes):
            if node.name in live:
                live.update(node.inputs)
        kept = [n for n in self.nodes if n.name in live or isinstance(n.op, Input)]
        return self.replace_nodes(kept)


class GraphBuilder:
    """Appends nodes in topological order, hands out fresh names, and knows each node's shape.

    `add` names a node after a base, made unique (``conv``, ``conv_1``, ...); `add_exact` keeps a name as it
    is (a pass that keeps a node's name, so the trace and the report still find it); `reserve` keeps names
    that a later `add_exact` will take from being handed out before. Shapes are inferred on demand."""

    def __init__(self) -> None:
        self._nodes: list[Node] = []
        self._index: dict[str, Node] = {}
        self._names: set[str] = set()  # taken or reserved
        self._shapes: dict[str, Shape] = {}  # of the first len(_shapes) nodes

    def __getitem__(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._nodes)

    def reserve(self, names: Iterable[str]) -> None:
        """Names that `fresh` never hands out (`add_exact` may still take them)."""
        self._names.update(names)

    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        return name

    def add(self, base: str, op: Op, *inputs: str, block: str = "") -> str:
        """Append a node named after `base` (made unique); returns its name."""
        return self.add_exact(self.fresh(base), op, *inputs, block=block)

    def add_exact(self, name: str, op: Op, *inputs: str, block: str = "") -> str:
        """Append a node named exactly `name` (free or reserved, not yet a node)."""
        if name in self._index:
            raise GraphError(f"duplicate node name {name!r}")
        node = Node(name, op, tuple(inputs), block)
        self._names.add(name)
        self._index[name] = node
        self._nodes.append(node)
        return name

    def append(self, node: Node) -> str:
        """Append `node` as it is (its name exactly)."""
        return self.add_exact(node.name, node.op, *node.inputs, block=node.block)

    def shape(self, name: str) -> Shape:
        """The per-sample shape of node `name` (batch left out)."""
        for node in self._nodes[len(self._shapes):]:
            self._shapes[node.name] = SHAPE_RULES[type(node.op)](node.op, [self._shapes[i] for i in node.inputs])
        return self._shapes[name]

    def build(self, outputs: Iterable[str]) -> Graph:
        return Graph(tuple(self._nodes), tuple(outputs))
