"""`dse.tune.adam.Adam` against `torch.optim.Adam` (single-tensor path): the same numbers, bit for bit."""

import pytest
import torch

from dse.tune.adam import Adam


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_adam_matches_torch_bit_for_bit(seed):
    torch.manual_seed(seed)
    shapes = [(7, 5), (3,), (), (64, 150)]
    ours = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    a = Adam([{"params": ours[:2], "lr": 1e-3}, {"params": ours[2:], "lr": 0.02}])
    b = torch.optim.Adam([{"params": theirs[:2], "lr": 1e-3}, {"params": theirs[2:], "lr": 0.02}], foreach=False)
    for step in range(40):
        for i, (p, q) in enumerate(zip(ours, theirs, strict=True)):
            if i == 1 and step % 7 == 3:  # no gradient this step: left alone, the step not counted
                p.grad = q.grad = None
                continue
            g = torch.randn_like(p)
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
        assert all(torch.equal(p, q) for p, q in zip(ours, theirs, strict=True)), step
