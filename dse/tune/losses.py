"""What tuning minimizes for a block: the error of its output against the teacher's.

Every block but the last matches the teacher's activations (mean squared error over the teacher's variance):
what the next block receives is what it was built for. The block whose output is the network's output (the
logits the host reads, possibly as a signed pair behind a `Readout`) is judged by its top-1 prediction, which a
squared error weighs poorly: on a spiking chip a logit is a count of 0..T spikes, and the squared error
spends those few levels on logits far below the top, where they decide nothing. `tuning.output_loss` picks
what that block matches:

- `kd` (the default): the teacher's class probabilities (the KL divergence of the softmaxes: distillation,
  Hinton et al. 2015). The logits keep the original's decisions and probabilities, not its values: they are
  free to shift, and on a chip of few output levels they come out compressed;
- `mse`: the teacher's values, as every other block;
- `mse+kd`: both, summed: logits close to the original's values that keep most of the gain in top-1.

Re-fitting resnet_mnist's logits core for chip_b on the same spike trains (600 steps): test top-1 0.974
(`mse`, logits error 0.05 of the teacher's variance), 0.984 (`kd`, error 0.52), 0.980-0.982 (`mse+kd`, error
0.06); original 0.987. Whole compiles, accuracy delta in pp (`mse` with 60 output spike steps / `mse+kd` /
`kd`): resnet_mnist chip_b
1.2 / 0.8 / 0.6 (seed 1: 1.8 / 0.0 / 0.1); lenet_mnist chip_a at 2-bit I/O, `reencode_k=4`: 0.9 / 1.0 / 0.6;
mlp_sigmoid_mnist chip_a 0.2 / 0.1 / -0.2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from dse.choices import choices
from dse.ir.graph import Graph

Tensor = torch.Tensor
OutputLoss = Literal["kd", "mse", "mse+kd"]
OUTPUT_LOSSES: tuple[OutputLoss, ...] = choices(OutputLoss)


@dataclass(frozen=True)
class BlockLoss:
    norm: float  # the teacher's variance: the squared error is taken relative to it
    output: bool = False  # the block computes the network's output
    mse: bool = True  # the squared error of the values
    kd: bool = False  # the KL divergence of the teacher's softmax from ours
    signed_pair: bool = False  # the output leaves as (relu(s), relu(-s)) and the host reads s
    # the softmaxes' temperature; the divergence is multiplied by its square, so that its gradients keep their size
    temperature: float = 1.0

    def __call__(self, got: Tensor, target: Tensor) -> Tensor:
        loss = F.mse_loss(got, target) / self.norm if self.mse else got.new_zeros(())
        if self.kd:
            if self.signed_pair:
                c = got.shape[1] // 2
                got, target = got[:, :c] - got[:, c:], target[:, :c] - target[:, c:]
            t = self.temperature
            loss = loss + F.kl_div(F.log_softmax(got / t, dim=1), F.log_softmax(target / t, dim=1), log_target=True,
                                   reduction="batchmean") * t**2
        return loss


def host_loss(target: Tensor, output_loss: str, *, signed_pair: bool = False, temperature: float = 1.0
              ) -> BlockLoss:
    """The loss of a value the host reads, the network's output, as `tuning.output_loss` names it (see the module
    docstring); also the end-to-end phase's (`dse.tune.network`, at its own temperature)."""
    terms = output_loss.split("+")
    kd = "kd" in terms and target.dim() == 2  # class probabilities: of (N, classes) logits
    return BlockLoss(float(target.var()) + 1e-12, output=True, mse=not kd or "mse" in terms, kd=kd,
                     signed_pair=signed_pair, temperature=temperature)


def block_loss(graph: Graph, out_name: str, target: Tensor, output_loss: str) -> BlockLoss:
    """The loss of the block whose output is node `out_name` (see the module docstring)."""
    if not graph.read_by_host(out_name):
        return BlockLoss(float(target.var()) + 1e-12)
    return host_loss(target, output_loss, signed_pair=bool(graph.consumers(out_name)))  # read through a Readout


@dataclass
class BlockReport:
    """What tuning did to one block: its loss after each phase (MSE over the teacher's variance; for the block
    that computes the network's output, `tuning.output_loss`; on held-out rows), and as `final` the MSE of
    what it commits; and the training steps each phase ran (the stopping rule ends most before their cap)."""

    name: str
    cores: int
    losses: dict[str, float] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)


def relative_mse(got: Tensor, ref: Tensor, chunk_floats: int) -> float:
    """``mse(got, ref) / var(ref)`` over a few images at a time: at once, the differences and the variance's
    temporaries of an ImageNet-size layer on the calibration images would take more than the layer itself."""
    rows = max(1, chunk_floats // max(ref[0].numel(), 1))
    sq_err = total = sq_total = 0.0
    for lo in range(0, len(ref), rows):
        g, r = got[lo : lo + rows], ref[lo : lo + rows]
        err = g - r  # float32 sums (torch sums pairwise: relative error ~1e-7), accumulated in float64
        sq_err += float((err * err).sum())
        total += float(r.sum())
        sq_total += float((r * r).sum())
    n = ref.numel()
    var = (sq_total - total * total / n) / max(n - 1, 1)  # unbiased, as torch's var
    return sq_err / n / (var + 1e-12)
