"""Hardware model: the chip description and the legality check."""

from dse.hardware.spec import IO, Crossbar, HardwareSpec, Mapping, Neuron, Weights

__all__ = ["IO", "Crossbar", "HardwareSpec", "Mapping", "Neuron", "Weights"]
