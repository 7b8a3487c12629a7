"""How many threads torch computes with during a compile.

One thread for everything, and the caller's threads for the few products large enough to gain from them.
A compile runs thousands of small products (tuning steps, one image's core, a batch of LeNet): each is done
before a second OpenMP worker has anything to do, and two workers spinning against each other (and against a
sweep's other trials) cost several times the CPU seconds of one. Measured on the shared 2-core development
machine (`bench/op_threads.py`, load average 17 to 24): on two threads the evaluation of LeNet's 1,000 test
images took 3.4 CPU s against 0.7 on one, the integer simulator alone 1.95 against 0.24, with the same
results; a convolution of 0.04 to 0.86 GMACs cost 1.6 to 6 times the CPU seconds on two threads and took
longer in wall time too; one of 6.9 GMACs (an ImageNet layer on four images) took a fifth less wall time for
15 % more CPU. `BIG_OP_MACS` sits between the two, where a second thread starts to pay.

Results do not depend on the thread count: every product `bench/op_threads.py` measures gives bit-identical
outputs on one and on two threads, and `tests/sim/test_threads.py` compares a whole compile (every product
counted big) on one and on two threads bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch

BIG_OP_MACS = 2**31  # multiply-accumulates of one product from which it runs on every thread the caller had
_big_threads = 1  # threads for a big product: the caller's, inside `compute_threads`; 1 outside it


@contextmanager
def compute_threads(threads: int | None = None) -> Iterator[None]:
    """Compute on one torch thread inside; a product of `BIG_OP_MACS` or more (`op_threads`) on `threads`
    (default: the threads torch had on entry, so a sweep trial given one thread keeps to one)."""
    global _big_threads
    before, big_before = torch.get_num_threads(), _big_threads
    _big_threads = max(1, threads or before)
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
        _big_threads = big_before


@contextmanager
def op_threads(macs: int) -> Iterator[None]:
    """Run one product of `macs` multiply-accumulates on the threads `compute_threads` grants it."""
    n = _big_threads if macs >= BIG_OP_MACS else 1
    before = torch.get_num_threads()
    if _big_threads == 1 or n == before:  # outside `compute_threads`, or nothing to change
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def conv_macs(x_shape: torch.Size, w_shape: torch.Size, stride: tuple[int, int] = (1, 1)) -> int:
    """Multiply-accumulates of a convolution (or, for 2-D `x_shape`, a matrix product) of an input of
    `x_shape` with a weight of `w_shape` (out, in / groups, kh, kw); the output's size from the input's and
    the stride (padding and kernel edges ignored: an estimate for choosing threads)."""
    per_output = math.prod(w_shape[1:])
    if len(x_shape) == 2:
        return x_shape[0] * w_shape[0] * per_output
    return x_shape[0] * w_shape[0] * per_output * math.prod(x_shape[2:]) // math.prod(stride)
