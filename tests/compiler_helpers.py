"""Helpers shared by the compiler tests: chips without precision limits, float64 execution, graph comparison.

Importable from every test folder because `tests/conftest.py` puts `tests/` on `sys.path` (pytest's default
import mode inserts a conftest's folder).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np
import torch

from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.ir.graph import Graph
from dse.passes import PASSES
from dse.sim.float_exec import run_float

F32 = np.float32


def run_pass(name: str, graph: Graph, hw: HardwareSpec | None = None, **options: object) -> Graph:
    """One registered pass, as `run_pipeline` calls it."""
    return PASSES[name](graph, hw if hw is not None else float_chip(), **options)


def float_chip(rows: int | None = None, cols: int | None = None) -> HardwareSpec:
    """A chip with float weights and I/O and, optionally, a crossbar size: what the float passes see."""
    return HardwareSpec(
        name="float", crossbar=Crossbar(rows=rows, cols=cols, cell_bits=1), weights=Weights(bits=None),
        io=IO(input_bits=None, output_bits=None),
    )


def rand(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(F32)


def images(n: int, *shape: int, seed: int = 0) -> np.ndarray:
    """Non-negative inputs, as a chip's host sends (pixels in [0, 1))."""
    return np.random.default_rng(seed).random((n, *shape))


def run64(graph: Graph, x: np.ndarray, keep: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Every output (and the nodes in `keep`) of `graph` on `x`, computed in float64."""
    values = run_float(graph, x, keep=keep, dtype=torch.float64)
    return {k: v.numpy() for k, v in values.items()}


def out64(graph: Graph, x: np.ndarray) -> np.ndarray:
    """The first output of `graph` on `x`, in float64."""
    return run64(graph, x)[graph.outputs[0]]


def assert_close(actual: np.ndarray, reference: np.ndarray, rtol: float = 1e-6) -> None:
    """Equal within `rtol` of the reference's largest magnitude (element-wise relative error is meaningless
    for values that cancel to about zero)."""
    assert actual.shape == reference.shape, (actual.shape, reference.shape)
    scale = float(np.abs(reference).max(initial=0.0)) or 1.0
    np.testing.assert_allclose(actual, reference, rtol=rtol, atol=rtol * scale)


def assert_same_function(before: Graph, after: Graph, x: np.ndarray, rtol: float = 1e-6) -> None:
    """Both graphs compute the same first output on `x` (float64)."""
    assert_close(out64(after, x), out64(before, x), rtol)


def _same_value(a: object, b: object, rtol: float, where: str) -> None:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a_arr, b_arr = np.asarray(a), np.asarray(b)
        assert a_arr.shape == b_arr.shape, f"{where}: shape {a_arr.shape} != {b_arr.shape}"
        if a_arr.dtype == bool or b_arr.dtype == bool:
            assert np.array_equal(a_arr, b_arr), f"{where}: masks differ"
        else:
            np.testing.assert_allclose(a_arr, b_arr, rtol=rtol, atol=rtol, err_msg=where)
    elif dataclasses.is_dataclass(a) and not isinstance(a, type):
        assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
        for f in dataclasses.fields(a):
            _same_value(getattr(a, f.name), getattr(b, f.name), rtol, f"{where}.{f.name}")
    elif isinstance(a, tuple) and isinstance(b, tuple) and any(isinstance(v, float) for v in a + b):
        np.testing.assert_allclose(np.asarray(a, float), np.asarray(b, float), rtol=rtol, atol=rtol, err_msg=where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def assert_graphs_equal(actual: Graph, expected: Graph, *, names: bool = True, rtol: float = 1e-6) -> None:
    """Structural equality, as TVM's pass tests check: same ops in the same order, same wiring, same fields.

    With `names=False` the wiring is compared by position (node i reads nodes j, k), so a test does not pin
    the names a pass makes up.
    """
    def describe(g: Graph) -> str:
        text = [f"{n.name}={type(n.op).__name__}({', '.join(n.inputs)})" for n in g]
        return str(text if len(text) <= 20 else [*text[:20], f"... {len(text) - 20} more"])

    assert len(actual) == len(expected), f"{describe(actual)} != {describe(expected)}"
    pos_a = {n.name: i for i, n in enumerate(actual)}
    pos_e = {n.name: i for i, n in enumerate(expected)}
    for na, ne in zip(actual, expected, strict=True):
        where = f"node {na.name} (expected {ne.name})"
        assert type(na.op) is type(ne.op), f"{where}: {describe(actual)} != {describe(expected)}"
        if names:
            assert na.name == ne.name, f"{describe(actual)} != {describe(expected)}"
            assert na.inputs == ne.inputs, f"{where}: reads {na.inputs}, expected {ne.inputs}"
        else:
            assert [pos_a[i] for i in na.inputs] == [pos_e[i] for i in ne.inputs], f"{where}: wiring differs"
        _same_value(na.op, ne.op, rtol, where)
    if names:
        assert actual.outputs == expected.outputs
    else:
        assert [pos_a[x] for x in actual.outputs] == [pos_e[x] for x in expected.outputs]


def core_ops(graph: Graph) -> list[o.CoreOp]:
    return [n.op for n in graph if isinstance(n.op, o.CoreOp)]


def integer_form(graph: Graph) -> list[tuple]:
    """Every core's integer form, comparable bit for bit: its name, integer weights and biases, output step."""
    return [(n.name, n.op.quant.weight_int.tobytes(), n.op.quant.bias_int.tobytes(), n.op.quant.out_scale)
            for n in graph if isinstance(n.op, o.CoreOp)]


def only_chip_ops(graph: Graph) -> bool:
    return all(isinstance(n.op, o.CHIP_OPS) for n in graph)


def max_fan_in(graph: Graph) -> int:
    return max(int(op.fan_in().max()) for op in core_ops(graph))
