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
        beta1, beta2 = self.beta1, self.beta2
        for params, lr in self.groups:
            for p in params:
                if p.grad is None:
                    continue
                if id(p) not in self.state:
                    self.state[id(p)] = (torch.zeros_like(p), torch.zeros_like(p), [0])
                exp_avg, exp_avg_sq, count = self.state[id(p)]
                count[0] += 1
                grad = p.grad
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step_size = lr / (1 - beta1 ** count[0])
                denom = (exp_avg_sq.sqrt() / (1 - beta2 ** count[0]) ** 0.5).add_(self.eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)
