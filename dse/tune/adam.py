"""`Adam`: the optimizer of every tuning phase, in plain torch ops.

The same arithmetic as `torch.optim.Adam` with its defaults on CPU (the single-tensor path: no weight decay,
no amsgrad), so the numbers are those of torch's, step for step. It exists because constructing the first
`torch.optim.Adam` of a process imports `torch._dynamo`, about 1 CPU second of imports, once per compile
process and once per sweep worker, for a few hundred steps on small tensors.
"""

from __future__ import annotations

import torch

Tensor = torch.Tensor


class Adam:
    """Adam (Kingma & Ba, 2015) over parameter groups ``{"params": [...], "lr": float}``; a parameter without
    a gradient at a step is left alone and does not count that step (as in torch)."""

    def __init__(self, groups: list[dict], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups = [(list(g["params"]), float(g["lr"])) for g in groups]
        self.beta1, self.beta2, self.eps = betas[0], betas[1], eps
        self.state: dict[int, tuple[Tensor, Tensor, list[int]]] = {}

    def zero_grad(self) -> None:
        for params, _ in self.groups:
            for p in params:
                p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One step of every parameter with a gradient, each group's tensors at once (torch's `_foreach` ops:
        the same arithmetic per tensor, without a Python call per tensor and operation; a split block has
        dozens of small tensors, and per tensor the step cost more than the tensors' own arithmetic)."""
        beta1, beta2 = self.beta1, self.beta2
        for params, lr in self.groups:
            live = [p for p in params if p.grad is not None]
            if not live:
                continue
            for p in live:
                if id(p) not in self.state:
                    self.state[id(p)] = (torch.zeros_like(p), torch.zeros_like(p), [0])
                self.state[id(p)][2][0] += 1
            states = [self.state[id(p)] for p in live]
            avgs, squares, counts = [s[0] for s in states], [s[1] for s in states], [s[2][0] for s in states]
            grads = [p.grad for p in live]
            torch._foreach_lerp_(avgs, grads, 1 - beta1)
            torch._foreach_mul_(squares, beta2)
            torch._foreach_addcmul_(squares, grads, grads, value=1 - beta2)
            denoms = torch._foreach_sqrt(squares)
            torch._foreach_div_(denoms, [(1 - beta2**c) ** 0.5 for c in counts])
            torch._foreach_add_(denoms, self.eps)
            torch._foreach_addcdiv_(live, avgs, denoms, [-lr / (1 - beta1**c) for c in counts])
