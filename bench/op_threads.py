"""One product on one and on two torch threads: CPU and wall milliseconds, and whether the results are equal
(the measurement behind `dse.sim.threads.BIG_OP_MACS`).

    .venv/bin/python -m bench.op_threads

Convolutions from LeNet's on a test batch to an ImageNet layer on a few images, each timed on one thread and
on two; prints one JSON object per product: its multiply-accumulates, CPU and wall milliseconds per call on
each thread count, and whether the two outputs are bit-identical. Record `uptime` beside it: on a shared
machine the second thread's wall time depends on the others' load.
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

# (batch, in channels, height = width, out channels, kernel)
PRODUCTS = [(500, 1, 28, 6, 5), (500, 6, 12, 16, 5), (1000, 1, 28, 6, 5), (64, 3, 32, 32, 3), (8, 64, 56, 64, 3),
            (2, 128, 56, 128, 3), (1, 256, 28, 256, 3), (4, 256, 56, 256, 3)]
WORK = 2e9  # multiply-accumulates timed per product and thread count (repetitions of the product)


def measure(n: int, c: int, h: int, o: int, k: int) -> dict:
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(n, c, h, h, generator=gen), torch.randn(o, c, k, k, generator=gen)
    macs = n * o * (h - k + 1) ** 2 * c * k * k
    row: dict = {"shape": [n, c, h, o, k], "macs": macs}
    outs = {}
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            outs[threads] = F.conv2d(x, w)  # warm up
            reps = max(1, int(WORK / macs))
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(reps):
                F.conv2d(x, w)
            row[f"cpu_ms_{threads}"] = round((time.process_time() - cpu) / reps * 1e3, 2)
            row[f"wall_ms_{threads}"] = round((time.perf_counter() - wall) / reps * 1e3, 2)
    finally:
        torch.set_num_threads(before)
    row["equal"] = bool(torch.equal(outs[1], outs[2]))
    return row


def main() -> None:
    for product in PRODUCTS:
        print(json.dumps(measure(*product)), flush=True)


if __name__ == "__main__":
    main()
