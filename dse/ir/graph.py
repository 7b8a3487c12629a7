"""The Graph: named nodes in topological order, one input, one or more outputs.

A Graph is treated as immutable: passes build a new one (with `GraphBuilder` or `Graph.replace_nodes`) and
never mutate the old, so a pass that fails leaves its input intact and every intermediate graph of a
pipeline can be kept for the trace.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from dse.ir.ops import Gather, Input, Op, Readout, Reshape
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
        signal read as the (C, 1, L) image) or a Gather (channels-last data put in channel order), so that a
        constant pad of it is the host's to send."""
        node = self[name]
        while isinstance(node.op, (Reshape, Gather)):
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
        live = live_names(self.nodes, self.outputs)
        return self.replace_nodes(n for n in self.nodes if n.name in live or isinstance(n.op, Input))


def live_names(nodes: Sequence[Node], outputs: Iterable[str]) -> set[str]:
    """The names of the `nodes` (in topological order) that some output depends on."""
    live = set(outputs)
    for node in reversed(nodes):
        if node.name in live:
            live.update(node.inputs)
    return live


class GraphBuilder:
    """A graph under construction or rewrite: nodes in topological order, fresh names, each node's shape and
    readers.

    `add` names a node after a base, made unique (``conv``, ``conv_1``, ...); `add_exact` keeps a name as it
    is (a pass that keeps a node's name, so the trace and the report still find it); `reserve` keeps names
    that a later `add_exact` will take from being handed out before. A rewrite (`from_graph`) edits nodes in
    place: `replace`, `bypass`, `remove`, `insert_before`, `move_after`, `redirect`. Shapes are inferred on
    demand, again after an edit."""

    def __init__(self, outputs: Iterable[str] = ()) -> None:
        self._order: list[str] = []
        self._index: dict[str, Node] = {}
        self._readers: dict[str, dict[str, None]] = {}  # node -> the nodes reading it (an ordered set)
        self._names: set[str] = set()  # taken or reserved
        self._shapes: dict[str, Shape] = {}  # valid for the first `_shaped` nodes of `_order`
        self._shaped = 0
        self._pos: dict[str, int] | None = None  # position in `_order`; None: to recompute
        self.outputs: list[str] = list(outputs)  # what `build` makes the graph's outputs by default

    @classmethod
    def from_graph(cls, graph: Graph) -> GraphBuilder:
        """A builder holding `graph`'s nodes and outputs, to rewrite it."""
        b = cls(graph.outputs)
        for node in graph:
            b.append(node)
        return b

    # --- queries ----------------------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Node:
        return self._index[name]

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._order)

    def names(self) -> list[str]:
        """The nodes' names in topological order (a copy: safe to edit while walking it)."""
        return list(self._order)

    def readers(self, name: str) -> list[Node]:
        """The nodes that read node `name`, in order."""
        if self._pos is None:
            self._pos = {n: i for i, n in enumerate(self._order)}
        return [self._index[r] for r in sorted(self._readers[name], key=self._pos.__getitem__)]

    def shape(self, name: str) -> Shape:
        """The per-sample shape of node `name` (batch left out)."""
        for n in self._order[self._shaped:]:
            node = self._index[n]
            self._shapes[n] = SHAPE_RULES[type(node.op)](node.op, [self._shapes[i] for i in node.inputs])
        self._shaped = len(self._order)
        return self._shapes[name]

    host_input = Graph.host_input

    # --- adding -----------------------------------------------------------------------------------------
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
        return self._insert(len(self._order), Node(name, op, tuple(inputs), block))

    def append(self, node: Node) -> str:
        """Append `node` as it is (its name exactly)."""
        return self._insert(len(self._order), node)

    def insert_before(self, before: str, base: str, op: Op, *inputs: str) -> str:
        """Insert a node named after `base` (made unique) just before node `before`; returns its name."""
        return self._insert(self._order.index(before), Node(self.fresh(base), op, tuple(inputs)))

    def _insert(self, at: int, node: Node) -> str:
        if node.name in self._index:
            raise GraphError(f"duplicate node name {node.name!r}")
        self._names.add(node.name)
        self._index[node.name] = node
        self._readers[node.name] = {}
        for src in node.inputs:
            self._readers[src][node.name] = None
        self._order.insert(at, node.name)
        appended = at == len(self._order) - 1
        if appended and self._pos is not None:
            self._pos[node.name] = at
        self._edited(at, moved=not appended)
        return node.name

    # --- editing ----------------------------------------------------------------------------------------
    def replace(self, name: str, op: Op, inputs: tuple[str, ...] | None = None) -> None:
        """Give node `name` a new op and, if given, new inputs (its name and block stay)."""
        old = self._index[name]
        inputs = old.inputs if inputs is None else tuple(inputs)
        for src in old.inputs:
            self._readers[src].pop(name, None)
        for src in inputs:
            self._readers[src][name] = None
        self._index[name] = Node(name, op, inputs, old.block)
        self._edited(self._order.index(name))

    def redirect(self, old: str, new: str, *, keep: str = "") -> None:
        """Every reader of node `old` but `keep`, and the outputs, read node `new` instead."""
        for reader in self.readers(old):
            if reader.name != keep:
                self.replace(reader.name, reader.op, tuple(new if i == old else i for i in reader.inputs))
        self.outputs = [new if x == old else x for x in self.outputs]

    def bypass(self, name: str) -> None:
        """Remove a single-input node; its readers (and the outputs) read its input."""
        self.redirect(name, self._index[name].inputs[0])
        self.remove(name)

    def remove(self, name: str) -> None:
        """Remove node `name`, which no node reads any more; its name is free again."""
        if self._readers[name]:
            raise GraphError(f"node {name!r} is still read by {', '.join(self._readers[name])}")
        for src in self._index.pop(name).inputs:
            self._readers[src].pop(name, None)
        del self._readers[name]
        self._names.discard(name)
        at = self._order.index(name)
        del self._order[at]
        self._edited(at, moved=True)

    def move_after(self, name: str, after: str) -> None:
        """Move node `name` to just after node `after` (which must not read it)."""
        at = self._order.index(name)
        del self._order[at]
        self._order.insert(self._order.index(after) + 1, name)
        self._edited(at, moved=True)

    def prune_dead(self) -> None:
        """Remove the nodes no output depends on (the Input always stays)."""
        live = live_names([self._index[n] for n in self._order], self.outputs)
        for name in reversed(self.names()):  # readers first: a dead node's readers are dead
            if name not in live and not isinstance(self._index[name].op, Input):
                self.remove(name)

    def _edited(self, at: int, moved: bool = False) -> None:
        """Shapes from position `at` on are to infer again; positions too, when nodes moved."""
        self._shaped = min(self._shaped, at)
        if moved:
            self._pos = None

    def build(self, outputs: Iterable[str] | None = None) -> Graph:
        nodes = tuple(self._index[n] for n in self._order)
        return Graph(nodes, tuple(self.outputs if outputs is None else outputs))
