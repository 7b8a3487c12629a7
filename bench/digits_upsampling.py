"""Small networks on scikit-learn's digits (8x8) that use the ops the importer gained for decoders and
channels-last models: nearest-neighbour and bilinear upsampling (`F.interpolate`, ONNX Resize; bilinear with
either `align_corners`), a transposed convolution (ONNX ConvTranspose: 2-D, grouped, and 1-D on the images read
as 8 signals of 8 samples), permutes (ONNX Transpose) of the input and before the classifier, PixelShuffle /
PixelUnshuffle (ONNX DepthToSpace; a Reshape, Transpose, Reshape chain), and reflection and replication
padding (ONNX Pad, modes reflect and edge).

    .venv/bin/python bench/digits_upsampling.py OUT_DIR [NET ...]

trains each (20 epochs, `train`), exports it by the TorchScript exporter at opset 17 to OUT_DIR/<net>.onnx and
writes its data as a user's file, OUT_DIR/<net>.npz (`x_calib`: the 1,400 training images, `x_test`, `y_test`:
the 397 others), then prints the compile commands docs/importer.md measured with (`python -m dse.compile
model.onnx=OUT_DIR/<net>.onnx model.dataset=OUT_DIR/<net>.npz hardware=chip_a`, and chip_b).
`tests/frontends/test_torch_digits_nets.py` exports and compiles the same networks (5 epochs).
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

nn, F = torch.nn, torch.nn.functional


class UpsampleUNet(nn.Module):
    """A two-level U-Net: a 3x3 convolution, a 2x2 max pooling, a 3x3 convolution, nearest-neighbour upsampling
    by 2 (``F.interpolate``; or bilinear, with `align_corners` as given), the skip concatenated, a 3x3
    convolution, 2x2 average pooling and a linear layer."""

    def __init__(self, mode: str = "nearest", align_corners: bool | None = None) -> None:
        super().__init__()
        self.mode, self.align_corners = mode, align_corners
        self.enc, self.mid = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)
        self.dec, self.fc = nn.Conv2d(16, 8, 3, padding=1), nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.enc(x))
        up = F.interpolate(F.relu(self.mid(F.max_pool2d(skip, 2))), scale_factor=2, mode=self.mode,
                           align_corners=self.align_corners)
        return self.fc(F.avg_pool2d(F.relu(self.dec(torch.cat([skip, up], 1))), 2).flatten(1))


class DeconvUNet(nn.Module):
    """The same U-Net with a learned upsampling: a 4x4 transposed convolution of stride 2, padding 1 (DCGAN,
    pix2pix), BatchNorm and ReLU."""

    def __init__(self, groups: int = 1) -> None:
        super().__init__()
        self.enc, self.mid = nn.Conv2d(1, 8, 3, padding=1), nn.Conv2d(8, 16, 3, padding=1)
        self.up, self.bn = nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1, groups=groups), nn.BatchNorm2d(8)
        self.dec, self.fc = nn.Conv2d(16, 8, 3, padding=1), nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.enc(x))
        up = F.relu(self.bn(self.up(F.relu(self.mid(F.max_pool2d(skip, 2))))))
        return self.fc(F.avg_pool2d(F.relu(self.dec(torch.cat([skip, up], 1))), 2).flatten(1))


class Deconv1dNet(nn.Module):
    """A 1-D encoder-decoder (a Conv1d decoder, as audio models upsample), each image read as 8 signals (its rows)
    of 8 samples: a 3-tap convolution 8 -> 16, a max pooling by 2, a 3-tap convolution, a 4-tap transposed
    convolution of stride 2 (padding 1) back to 8 samples with BatchNorm and ReLU, the skip concatenated, a 3-tap
    convolution and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.mid = nn.Conv1d(8, 16, 3, padding=1), nn.Conv1d(16, 16, 3, padding=1)
        self.up, self.bn = nn.ConvTranspose1d(16, 8, 4, stride=2, padding=1), nn.BatchNorm1d(8)
        self.dec, self.fc = nn.Conv1d(24, 8, 3, padding=1), nn.Linear(8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.enc(x))
        up = F.relu(self.bn(self.up(F.relu(self.mid(F.max_pool1d(skip, 2))))))
        return self.fc(F.relu(self.dec(torch.cat([skip, up], 1))).flatten(1))


class ChannelsLastNet(nn.Module):
    """A channels-last model, as one ported from TensorFlow: the data is (N, H, W, C), permuted to NCHW first;
    a 3x3 convolution, a 2x2 max pooling, and the features flattened in (H, W, C) order into the linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(1, 8, 3, padding=1), nn.Linear(4 * 4 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.max_pool2d(F.relu(self.conv(x.permute(0, 3, 1, 2))), 2)
        return self.fc(y.permute(0, 2, 3, 1).flatten(1))


class PixelShuffleNet(nn.Module):
    """Sub-pixel layers (ESPCN, space-to-depth stems): PixelUnshuffle by 2 (1x8x8 -> 4x4x4), a 3x3 convolution to
    16 channels, PixelShuffle by 2 back to 4x8x8, a 3x3 convolution, 2x2 average pooling and a linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.down, self.up = nn.PixelUnshuffle(2), nn.PixelShuffle(2)
        self.mid, self.dec = nn.Conv2d(4, 16, 3, padding=1), nn.Conv2d(4, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.up(F.relu(self.mid(self.down(x))))
        return self.fc(F.avg_pool2d(F.relu(self.dec(up)), 2).flatten(1))


class ReflectPadNet(nn.Module):
    """Padding that copies pixels, as ResNet generators (CycleGAN, pix2pix) pad: a reflection pad before a 3x3
    convolution, a replication pad before a second one whose ReLU takes a residual, 2x2 max pooling, a linear
    layer."""

    def __init__(self) -> None:
        super().__init__()
        self.c1, self.c2, self.fc = nn.Conv2d(1, 8, 3), nn.Conv2d(8, 8, 3), nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.c1(F.pad(x, (1, 1, 1, 1), mode="reflect")))
        y = F.relu(self.c2(F.pad(y, (1, 1, 1, 1), mode="replicate")) + y)
        return self.fc(F.max_pool2d(y, 2).flatten(1))


NETS = {"upsample": (UpsampleUNet, (1, 8, 8)), "deconv": (DeconvUNet, (1, 8, 8)),
        "channels_last": (ChannelsLastNet, (8, 8, 1)), "pixel_shuffle": (PixelShuffleNet, (1, 8, 8)),
        # the U-Net upsampling bilinearly (Resize linear: half_pixel, and align_corners), by a grouped transposed
        # convolution (4 groups), and a 1-D one; padding that copies pixels
        "bilinear": (functools.partial(UpsampleUNet, "bilinear", False), (1, 8, 8)),
        "bilinear_corners": (functools.partial(UpsampleUNet, "bilinear", True), (1, 8, 8)),
        "grouped_deconv": (functools.partial(DeconvUNet, 4), (1, 8, 8)), "deconv1d": (Deconv1dNet, (8, 8)),
        "reflect_pad": (ReflectPadNet, (1, 8, 8))}


def digits(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits / 16 in a seeded permutation: 1,400 training (calibration) and 397 test images, each
    of per-sample `shape` ((1, 8, 8), or (8, 8, 1) channels last)."""
    data = load_digits()
    order = np.random.default_rng(0).permutation(len(data.images))
    x = (data.images[order] / 16.0).astype(np.float32).reshape(-1, *shape)
    y = data.target[order].astype(np.int64)
    return x[:1400], y[:1400], x[1400:], y[1400:]


def train(name: str, epochs: int = 20) -> tuple[nn.Module, tuple[np.ndarray, ...]]:
    """Net `name` trained on the digits (Adam 1e-2, batch 64, `torch.manual_seed(0)`), in eval mode."""
    return fit(*NETS[name], epochs, lr=1e-2)


def fit(cls: type[nn.Module], shape: tuple[int, ...], epochs: int, lr: float
        ) -> tuple[nn.Module, tuple[np.ndarray, ...]]:
    """A `cls()` made after `torch.manual_seed(0)`, trained on the digits of per-sample `shape` (Adam at `lr`,
    batch 64, cross-entropy), in eval mode; and the data (`digits`)."""
    x_train, y_train, x_test, y_test = digits(shape)
    torch.manual_seed(0)
    model = cls()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt)).split(64):
            opt.zero_grad()
            F.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval(), (x_train, y_train, x_test, y_test)


def export(model: nn.Module, shape: tuple[int, ...], path: str, *, opset: int = 17, dynamo: bool = False) -> None:
    """TorchScript (``dynamo=False``) or dynamo export with a free batch (dynamo's example batch is 2: a batch of 1
    would fix the batch dimension at 1)."""
    kw = {"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo else {"dynamic_axes": {"x": {0: "N"}}}
    torch.onnx.export(model, (torch.zeros(2 if dynamo else 1, *shape),), path, input_names=["x"],
                      output_names=["logits"], opset_version=opset, dynamo=dynamo, **kw)


def main(out: Path, names: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in names or NETS:
        shape = NETS[name][1]
        model, (x_train, _, x_test, y_test) = train(name)
        export(model, shape, str(out / f"{name}.onnx"))
        np.savez(out / f"{name}.npz", x_calib=x_train, x_test=x_test, y_test=y_test)
        for chip in ("chip_a", "chip_b"):
            print(f"python -m dse.compile model.onnx={out / name}.onnx model.dataset={out / name}.npz "
                  f"hardware={chip} hydra.run.dir={out / name}_{chip}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
