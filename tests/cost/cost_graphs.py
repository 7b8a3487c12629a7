"""Test helper: tiny compiled (integer) graphs built by hand, and the chips they run on."""

from __future__ import annotations

import dataclasses

import numpy as np
import yaml

from dse.config import conf_dir
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Mapping, Neuron, Weights
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder

PRESETS = conf_dir() / "hardware"

# 128 x 128 cells of 2 bits, 4-bit signed weights as differential pairs: 2 cells x 2 columns -> 32 neurons a crossbar
PIM_CHIP = HardwareSpec(name="pim", crossbar=Crossbar(128, 128, 2, True), weights=Weights(4), io=IO(4, 8))
# 128 x 128 synapses of 4 bits, one column per neuron
SPIKING_CHIP = HardwareSpec(name="snn", crossbar=Crossbar(128, 128, 4, False), weights=Weights(4), io=IO(None, None),
                            neuron=Neuron(model="if", offered=("if",), timesteps=4), mapping=Mapping(reuse="expanded"))


def core(weight_int: np.ndarray, *, dense: bool, out_max: int, padding: tuple[int, int, int, int] = (0, 0, 0, 0),
         stride: tuple[int, int] = (1, 1), threshold: float = 2.0) -> o.CoreOp:
    """A quantized core-op with integer weights `weight_int` (O, I, kh, kw), zero bias, unit input scale, and
    threshold `threshold` (out_scale / weight_scale)."""
    out_c, in_c = weight_int.shape[:2]
    quant = o.CoreQuant(weight_int=weight_int.astype(np.int8), weight_scale=np.ones(out_c), bias_int=np.zeros(out_c,
                        np.int64), in_scale=np.ones(in_c), out_scale=threshold, out_max=out_max)
    return o.CoreOp(weight_int.astype(np.float32), np.zeros(out_c, np.float32), stride=stride, padding=padding,
                    dense=dense, quant=quant)


def ints(*shape: int, seed: int = 0) -> np.ndarray:
    """Non-zero integer weights in -3..3."""
    w = np.random.default_rng(seed).integers(1, 4, shape) * np.random.default_rng(seed + 1).choice([-1, 1], shape)
    return w.astype(np.int64)


def two_dense(fan_in: int = 64, hidden: int = 32, out: int = 10, *, out_max: int = 255, sliced: int | None = None
              ) -> Graph:
    """input (fan_in) -> fc1 (hidden) -> [slice of its first `sliced` outputs] -> fc2 (out)."""
    b = GraphBuilder()
    x = b.add("input", o.Input((fan_in,), code_max=out_max))
    h = b.add("fc1", core(ints(hidden, fan_in, 1, 1), dense=True, out_max=out_max), x)
    width = hidden
    if sliced is not None:
        h, width = b.add("part", o.Slice(0, sliced), h), sliced
    return b.build([b.add("fc2", core(ints(out, width, 1, 1, seed=1), dense=True, out_max=out_max), h)])


def one_conv(in_c: int = 2, size: int = 6, out_c: int = 4, k: int = 3, *, out_max: int = 255) -> Graph:
    b = GraphBuilder()
    x = b.add("input", o.Input((in_c, size, size), code_max=out_max))
    return b.build([b.add("conv", core(ints(out_c, in_c, k, k), dense=False, out_max=out_max), x)])


def preset(name: str, cores_per_chip: int | None = None) -> HardwareSpec:
    """A hardware preset from conf/hardware (its `cost:` block left out), with `cores_per_chip` cores a chip."""
    data = yaml.safe_load((PRESETS / f"{name}.yaml").read_text())
    for key in ("defaults", "cost"):
        data.pop(key, None)
    hw = HardwareSpec.from_dict(data)
    return dataclasses.replace(hw, mapping=dataclasses.replace(hw.mapping, cores_per_chip=cores_per_chip))
