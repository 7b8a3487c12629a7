"""Architectures people use, written by hand in torch and trained briefly on scikit-learn's digits (8x8): a
ResNet-18-style net (BasicBlocks, stride-2 downsampling with 1x1 projection shortcuts, BatchNorm), SqueezeNet fire
modules, an Inception block (1x1 / 3x3 / 5x5 / pool branches), a DenseNet block, a VGG stack with dropout, an
MLP-Mixer in the (channels, tokens) layout (token mixing a Linear, channel mixing a constant on the left of a
MatMul, GELU), the same with a transpose for token mixing (refused, naming the form that compiles) and with
LayerNorm (refused), a 1-D dilated temporal convolution net with residuals (the images read as 8 signals of 8
samples), an autoencoder-classifier with ConvTranspose, and unusual but legal ONNX forms (Gemm with transB=0,
Mul/Add by constants, Unsqueeze/Squeeze around a Linear, Reshape with -1; a MatMul with the constant on the
left).

    .venv/bin/python bench/digits_architectures.py OUT_DIR EPOCHS [b1] [dynamo] NET ...

trains each (Adam 3e-3, batch 64, `torch.manual_seed(0)`), exports it to OUT_DIR/<net>.onnx (TorchScript at
opset 17 with a dynamic batch; `b1`: a batch of 1; `dynamo`: the dynamo exporter at opset 18) and writes
OUT_DIR/<net>.npz (`x_calib`: the 1,400 training images, `x_test`, `y_test`: the 397 others), then prints the
torch accuracy. Compile with `python -m dse.compile model.onnx=OUT_DIR/<net>.onnx model.dataset=OUT_DIR/<net>.npz
hardware=ideal|chip_a|chip_b`.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from digits_upsampling import fit  # noqa: E402

nn, F = torch.nn, torch.nn.functional


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.sc = None
        if stride != 1 or cin != cout:
            self.sc = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.sc is None else self.sc(x)))


class ResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.l1 = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 16, 1))
        self.l2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32, 1))
        self.l3 = nn.Sequential(BasicBlock(32, 64, 2), BasicBlock(64, 64, 1))
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.l3(self.l2(self.l1(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class Fire(nn.Module):
    def __init__(self, cin: int, sq: int, ex: int) -> None:
        super().__init__()
        self.sq, self.e1, self.e3 = nn.Conv2d(cin, sq, 1), nn.Conv2d(sq, ex, 1), nn.Conv2d(sq, ex, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.sq(x))
        return torch.cat([F.relu(self.e1(x)), F.relu(self.e3(x))], 1)


class Squeeze(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.c, self.f1, self.f2 = nn.Conv2d(1, 16, 3, padding=1), Fire(16, 8, 16), Fire(32, 8, 16)
        self.cls = nn.Conv2d(32, 10, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.f2(self.f1(F.max_pool2d(F.relu(self.c(x)), 2, ceil_mode=True)))
        return F.adaptive_avg_pool2d(F.relu(self.cls(x)), 1).flatten(1)


class Inception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem, self.b1 = nn.Conv2d(1, 16, 3, padding=1), nn.Conv2d(16, 8, 1)
        self.b3 = nn.Sequential(nn.Conv2d(16, 8, 1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(16, 4, 1), nn.ReLU(), nn.Conv2d(4, 6, 5, padding=2))
        self.bp, self.fc = nn.Conv2d(16, 6, 1), nn.Linear(32 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem(x))
        pool = F.relu(self.bp(F.max_pool2d(x, 3, 1, 1)))
        y = torch.cat([F.relu(self.b1(x)), F.relu(self.b3(x)), F.relu(self.b5(x)), pool], 1)
        return self.fc(F.max_pool2d(y, 2).flatten(1))


class Dense(nn.Module):
    def __init__(self, growth: int = 8, n: int = 3) -> None:
        super().__init__()
        self.stem, self.layers, c = nn.Conv2d(1, 16, 3, padding=1), nn.ModuleList(), 16
        for _ in range(n):
            self.layers.append(nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, growth, 3, padding=1)))
            c += growth
        self.trans = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 16, 1), nn.AvgPool2d(2))
        self.fc = nn.Linear(16 * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.stem(x)]
        for layer in self.layers:
            feats.append(layer(torch.cat(feats, 1)))
        return self.fc(self.trans(torch.cat(feats, 1)).flatten(1))


class VGG(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.f = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                               nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                               nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.c = nn.Sequential(nn.Flatten(), nn.Linear(32 * 4, 64), nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 64),
                               nn.ReLU(), nn.Dropout(0.5), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c(self.f(x))


class MixerBlock(nn.Module):
    """(N, T, C) layout, token mixing through transposes (refused: a Transpose [0, 2, 1])."""

    def __init__(self, t: int, c: int) -> None:
        super().__init__()
        self.t1, self.t2, self.c1, self.c2 = nn.Linear(t, 16), nn.Linear(16, t), nn.Linear(c, 32), nn.Linear(32, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.t2(F.gelu(self.t1(x.transpose(1, 2)))).transpose(1, 2)
        return x + self.c2(F.gelu(self.c1(x)))


class Mixer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch, self.b1, self.b2 = nn.Conv2d(1, 16, 2, 2), MixerBlock(16, 16), MixerBlock(16, 16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b2(self.b1(self.patch(x).flatten(2).transpose(1, 2))).mean(1))


class Mixer2Block(nn.Module):
    """(N, C, T) layout: token mixing a Linear over the last axis, channel mixing a constant on the left."""

    def __init__(self, t: int, c: int, ln: bool = False) -> None:
        super().__init__()
        self.t1, self.t2 = nn.Linear(t, 16), nn.Linear(16, t)
        self.w1, self.b1 = nn.Parameter(torch.randn(32, c) * c**-0.5), nn.Parameter(torch.zeros(32, 1))
        self.w2, self.b2 = nn.Parameter(torch.randn(c, 32) * 32**-0.5), nn.Parameter(torch.zeros(c, 1))
        self.ln = nn.LayerNorm(t) if ln else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.t2(F.gelu(self.t1(self.ln(x))))
        return x + torch.matmul(self.w2, F.gelu(torch.matmul(self.w1, x) + self.b1)) + self.b2


class Mixer2(nn.Module):
    def __init__(self, ln: bool = False) -> None:
        super().__init__()
        self.patch, self.b1, self.b2 = nn.Conv2d(1, 16, 2, 2), Mixer2Block(16, 16, ln), Mixer2Block(16, 16, ln)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.b2(self.b1(self.patch(x).flatten(2))).mean(2))


class TCN(nn.Module):
    """8 channels (the rows) x 8 time steps: a 1x1 input convolution, three dilated 3-tap ones with BatchNorm and
    residuals, the mean over time, a Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Conv1d(8, 16, 1)
        self.blocks = nn.ModuleList([nn.Conv1d(16, 16, 3, padding=d, dilation=d) for d in (1, 2, 4)])
        self.bns, self.fc = nn.ModuleList([nn.BatchNorm1d(16) for _ in range(3)]), nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.inp(x))
        for conv, bn in zip(self.blocks, self.bns, strict=True):
            x = F.relu(x + bn(conv(x)))
        return self.fc(x.mean(2))


class AE(nn.Module):
    """Encoder (two stride-2 convolutions), decoder (two ConvTranspose, a sigmoid), the classifier reading both."""

    def __init__(self) -> None:
        super().__init__()
        self.e1, self.e2 = nn.Conv2d(1, 8, 3, 2, 1), nn.Conv2d(8, 16, 3, 2, 1)
        self.d1, self.d2 = nn.ConvTranspose2d(16, 8, 2, 2), nn.ConvTranspose2d(8, 4, 3, 2, 1, output_padding=1)
        self.fc = nn.Linear(4 * 64 + 16 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.e2(F.relu(self.e1(x))))
        r = torch.sigmoid(self.d2(F.relu(self.d1(z))))
        return self.fc(torch.cat([r.flatten(1), z.flatten(1)], 1))


class Odd(nn.Module):
    """Gemm with transB=0 (addmm), Mul/Add by constants, Unsqueeze/Squeeze around a Linear, Reshape with -1."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(64, 32) * 0.1), nn.Parameter(torch.zeros(32))
        self.l3, self.fc = nn.Linear(32, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(torch.addmm(self.b1, torch.flatten(x, 1), self.w1)) * 2.0 + 0.5
        x = F.relu(self.l3(x.unsqueeze(1))).squeeze(1)
        return self.fc(x.reshape(x.shape[0], -1).reshape(-1, 32))


class LeftMM(nn.Module):
    """A MatMul with the constant on the left: (32, 8) @ each image's (8, 8) rows."""

    def __init__(self) -> None:
        super().__init__()
        self.w, self.fc = nn.Parameter(torch.randn(32, 8) * 0.3), nn.Linear(32 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(torch.matmul(self.w, x.reshape(-1, 8, 8)))
        return self.fc(y.reshape(y.shape[0], -1) * 0.5)


NETS = {"resnet18": (ResNet, (1, 8, 8)), "squeeze": (Squeeze, (1, 8, 8)), "inception": (Inception, (1, 8, 8)),
        "dense": (Dense, (1, 8, 8)), "vgg": (VGG, (1, 8, 8)), "mixer": (Mixer, (1, 8, 8)),
        "mixer2": (Mixer2, (1, 8, 8)), "mixer_ln": (functools.partial(Mixer2, True), (1, 8, 8)),
        "tcn": (TCN, (8, 8)), "ae": (AE, (1, 8, 8)), "odd": (Odd, (1, 8, 8)), "leftmm": (LeftMM, (1, 8, 8))}


def train(name: str, epochs: int) -> tuple[nn.Module, tuple[np.ndarray, ...], float]:
    model, (x_train, y_train, x_test, y_test) = fit(*NETS[name], epochs, lr=3e-3)
    with torch.no_grad():
        acc = float((model(torch.from_numpy(x_test)).argmax(1).numpy() == y_test).mean())
    return model, (x_train, y_train, x_test, y_test), acc


def main(out: Path, epochs: int, args: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    batch1, dynamo = "b1" in args, "dynamo" in args
    for name in (a for a in args if a not in ("b1", "dynamo")):
        model, (x_train, _, x_test, y_test), acc = train(name, epochs)
        shape = NETS[name][1]
        if dynamo:
            kw = {} if batch1 else {"dynamic_shapes": ({0: torch.export.Dim("batch")},)}
            example, opset = torch.zeros(1 if batch1 else 2, *shape), 18
        else:
            kw, example, opset = ({} if batch1 else {"dynamic_axes": {"x": {0: "N"}}}), torch.zeros(1, *shape), 17
        torch.onnx.export(model, (example,), str(out / f"{name}.onnx"), input_names=["x"], output_names=["logits"],
                          opset_version=opset, dynamo=dynamo, **kw)
        np.savez(out / f"{name}.npz", x_calib=x_train, x_test=x_test, y_test=y_test)
        print(name, "torch accuracy", round(acc, 4), flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
