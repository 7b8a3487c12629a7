"""The graph IR: op dataclasses, the Graph, shape inference."""

from dse.ir.graph import Graph, Node
from dse.ir.ops import (
    Add,
    AvgPool,
    Clip,
    Concat,
    Conv,
    CoreOp,
    CoreQuant,
    Gather,
    Gelu,
    GlobalAvgPool,
    HardSwish,
    Identity,
    Input,
    Linear,
    MaxPool,
    Op,
    Pad,
    PRelu,
    Readout,
    Relu,
    Reshape,
    ScaleShift,
    Sigmoid,
    Silu,
    Slice,
    Softmax,
    Tanh,
)

__all__ = [
    "Add", "AvgPool", "Clip", "Concat", "Conv", "CoreOp", "CoreQuant", "Gather", "Gelu", "GlobalAvgPool", "Graph",
    "HardSwish", "Identity", "Input", "Linear", "MaxPool", "Node", "Op", "Pad", "PRelu", "Readout", "Relu", "Reshape",
    "ScaleShift", "Sigmoid", "Silu", "Slice",
    "Softmax", "Tanh",
]
