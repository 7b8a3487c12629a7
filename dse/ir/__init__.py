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
    Elu,
    Gather,
    Gelu,
    GlobalAvgPool,
    HardSwish,
    Identity,
    Input,
    Linear,
    MaxPool,
    Mish,
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
    Softplus,
    Tanh,
)

__all__ = [
    "Add", "AvgPool", "Clip", "Concat", "Conv", "CoreOp", "CoreQuant", "Elu", "Gather", "Gelu", "GlobalAvgPool",
    "Graph", "HardSwish", "Identity", "Input", "Linear", "MaxPool", "Mish", "Node", "Op", "Pad", "PRelu", "Readout",
    "Relu", "Reshape", "ScaleShift", "Sigmoid", "Silu", "Slice", "Softmax", "Softplus", "Tanh",
]
