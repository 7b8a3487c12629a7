"""`LazyForward`: the exact graph's activations on demand, equal to a full `run_float`."""

from __future__ import annotations

import numpy as np
import torch
from compiler_helpers import images, rand

from dse.ir import ops as o
from dse.ir.graph import GraphBuilder
from dse.sim.float_exec import LazyForward, run_float


def residual_net():
    b = GraphBuilder()
    x = b.add("x", o.Input((2, 6, 6)))
    c1 = b.add("c1", o.CoreOp(rand(3, 2, 3, 3, seed=1), rand(3, seed=2), padding=(1, 1, 1, 1)), x)
    c2 = b.add("c2", o.CoreOp(rand(3, 3, 3, 3, seed=3), rand(3, seed=4), padding=(1, 1, 1, 1)), c1)
    cat = b.add("cat", o.Concat(0), c1, c2)  # c1 is read again two nodes later
    route = b.add("route", o.Gather(np.array([0, 3, 1, 4, 2, 5])), cat)
    add = b.add("add", o.CoreOp(np.ones((3, 2, 1, 1), np.float32), np.zeros(3, np.float32), groups=3), route)
    return b.build([add])


def test_values_on_demand_equal_a_full_run_in_any_order() -> None:
    graph, x = residual_net(), images(5, 2, 6, 6)
    full = run_float(graph, x, keep="*")
    lazy = LazyForward(graph, x)
    for name in ["c1", "c2", "add", "c2", "c1", "route", "x"]:  # forward, repeats, then back (reruns)
        torch.testing.assert_close(lazy(name), full[name], rtol=0, atol=0)


def test_only_values_a_later_node_reads_are_held() -> None:
    graph, x = residual_net(), images(5, 2, 6, 6)
    lazy = LazyForward(graph, x)
    lazy("c2")
    assert set(lazy.values) == {"c1", "c2"}  # c1 is read by the concat, c2 too
    lazy("add")
    assert set(lazy.values) == set()  # the output is only held as the value served
    assert lazy.served is not None and lazy.served[0] == "add"
