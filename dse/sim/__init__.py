"""Executors: float (network and quantized core-ops), integer-exact; evaluation."""
