"""Hardware model: the chip description and the legality check."""

from dse.hardware.spec import IO, Cost, Crossbar, HardwareSpec, Mapping, Neuron, Weights

__all__ = ["IO", "Cost", "Crossbar", "HardwareSpec", "Mapping", "Neuron", "Weights"]
