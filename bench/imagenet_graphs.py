"""ImageNet-size test networks with random weights, for the scale benchmarks.

No trained ImageNet weights are available offline (and torchvision is not a dependency), so the networks are
rebuilt here: a VGG-16-like (13 conv3x3 + 3 FC, ~138 M weights) and a ResNet-50-like (bottleneck blocks
[3, 4, 6, 3], ~25.6 M weights), both for 224x224x3 inputs with pixels in [0, 1] and the usual ImageNet
normalization inside the graph, exactly as the committed MNIST models carry theirs.

Random does not mean degenerate. Convolutions and FC layers are He-initialized (so activations keep their
scale through depth, as in a trained network), and every BatchNorm gets a random affine (gamma, beta) and
running statistics measured on random images (so it really normalizes, and folding it changes the weights
non-trivially). Everything is seeded.

    python -m bench.imagenet_graphs --model resnet50 --out /tmp/r50   # export + reference data, see `export`
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dse.data.train_models import export_module

__all__ = ["INPUT_SHAPE", "MODELS", "vgg16_like", "resnet50_like", "random_images", "export"]

INPUT_SHAPE = (3, 224, 224)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Per-channel ``(x - mean) / std``: exported as a Sub and a Div by (1, 3, 1, 1) constants."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).reshape(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


# --- VGG-16 ------------------------------------------------------------------------------------------------

VGG16_CONVS: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                      512, 512, 512, "M")


class VGG(nn.Module):
    """VGG-16 (configuration D of Simonyan & Zisserman): conv3x3 pad 1 + ReLU stacks, 2x2 max pooling, then
    FC 25088 -> 4096 -> 4096 -> classes with ReLU (Dropout left out: it is the identity at inference)."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0, fc: int = 4096) -> None:
        super().__init__()
        layers: list[nn.Module] = [Normalize()]
        c_in = 3
        for v in VGG16_CONVS:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                c_out = max(1, int(int(v) * width))
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(c_in * 7 * 7, fc), nn.ReLU(), nn.Linear(fc, fc), nn.ReLU(),
                                        nn.Linear(fc, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# --- ResNet-50 ---------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1x1 reduce, 3x3 (stride here), 1x1 expand x4, each with BN; projection
    shortcut (1x1 conv + BN) when the shape changes; Add, ReLU."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.conv1 = nn.Conv2d(c_in, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + self.downsample(x))


class ResNet(nn.Module):
    """ResNet-50: conv7x7/2 64 + BN + ReLU, maxpool3x3/2, bottleneck stages [3, 4, 6, 3] of widths 64, 128,
    256, 512 (x4 out), global average pooling, FC 2048 -> classes."""

    def __init__(self, blocks: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.norm = Normalize()
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        stages: list[nn.Module] = []
        c_in = width
        for i, n in enumerate(blocks):
            w = width * 2**i
            for j in range(n):
                stages.append(Bottleneck(c_in, w, 2 if (j == 0 and i > 0) else 1))
                c_in = w * Bottleneck.expansion
        self.layers = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(self.norm(x)))))
        x = self.layers(x)
        return self.fc(torch.flatten(self.pool(x), 1))


# --- random weights ----------------------------------------------------------------------------------------


def random_images(n: int, seed: int) -> np.ndarray:
    """`n` random images in [0, 1], (n, 3, 224, 224) float32: the benchmarks' synthetic data.

    Not white noise: a random network maps every white-noise image to nearly the same features (the noise
    averages out in the pooling), so all predictions would be one class and top-1 agreement would say
    nothing. Each image is a random field with a natural-image-like spectrum (random grids of 2..32 cells
    per side, bilinearly upsampled, amplitude falling with frequency) at a random brightness and contrast.
    """
    rng = np.random.default_rng(seed)
    img = torch.zeros((n, *INPUT_SHAPE))
    for cells in (2, 4, 8, 16, 32):
        grid = torch.from_numpy(rng.standard_normal((n, 3, cells, cells), dtype=np.float32))
        img += nn.functional.interpolate(grid, size=INPUT_SHAPE[1:], mode="bilinear", align_corners=False) \
            / cells**0.5
    brightness = torch.from_numpy(rng.uniform(0.2, 0.8, (n, 1, 1, 1)).astype(np.float32))
    contrast = torch.from_numpy(rng.uniform(0.1, 0.3, (n, 1, 1, 1)).astype(np.float32))
    img = brightness + contrast * img / img.std(dim=(1, 2, 3), keepdim=True)
    return img.clamp(0.0, 1.0).numpy()


@torch.no_grad()
def _randomize(model: nn.Module, seed: int, calib_images: int = 8) -> nn.Module:
    """He-initialize every weight, give each BatchNorm a random affine, then measure its running
    statistics on random images (one cumulative pass in train mode), so that it normalizes for real."""
    gen = torch.Generator().manual_seed(seed)
    bns: list[nn.modules.batchnorm._BatchNorm] = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            fan_in = m.weight[0].numel()
            m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
            if m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.01)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
            m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration pass
            bns.append(m)
    if isinstance(model, ResNet):
        # Like the zero-init of the last BN of each block in trained ResNets: the residual branches add up
        # over 16 blocks, so a full-scale branch would let activations grow with depth.
        for block in model.layers:
            block.bn3.weight.mul_(0.2)
    x = torch.from_numpy(random_images(calib_images, seed + 1))
    if bns:
        model.train()
        model(x)
        for m in bns:
            m.momentum = 0.1
    model.eval()
    # Center the classifier: with random weights every image's (non-negative) features share a large mean,
    # whose product with the last layer's rows would make one class win for every input. A bias of
    # -W @ mean(features) leaves the input-dependent part, as in a trained network.
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[torch.Tensor] = []
    hook = last.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    model(x)
    hook.remove()
    last.bias.copy_(-last.weight @ seen[0].mean(0))
    return model


def vgg16_like(*, seed: int = 0, num_classes: int = 1000, width: float = 1.0, fc: int = 4096) -> nn.Module:
    """A VGG-16 with random He-initialized weights (`width` scales the conv channels, `fc` the FC width)."""
    torch.manual_seed(seed)
    return _randomize(VGG(num_classes, width, fc), seed)


def resnet50_like(*, seed: int = 0, num_classes: int = 1000) -> nn.Module:
    """A ResNet-50 with random He-initialized weights and BatchNorm statistics measured on random images."""
    torch.manual_seed(seed)
    return _randomize(ResNet((3, 4, 6, 3), num_classes), seed)


MODELS: dict[str, Callable[..., nn.Module]] = {"vgg16": vgg16_like, "resnet50": resnet50_like}


def export(name: str, out_dir: Path, *, seed: int = 0, calib: int = 32, test: int = 16) -> dict:
    """Build model `name`, export it to ``out_dir/<name>.onnx`` and write ``out_dir/data.npz``: `calib`
    calibration and `test` held-out random images and torch's logits on the held-out ones (the reference the
    import is checked against). Returns timings and sizes. Meant to run in its own process, so that the
    benchmark's peak memory counts only the compiler."""
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    model = MODELS[name](seed=seed)
    build_s = time.perf_counter() - start
    x_calib = random_images(calib, seed + 100)
    x_test = random_images(test, seed + 200)
    with torch.no_grad():
        torch_logits = torch.cat([model(torch.from_numpy(x_test[i : i + 8])) for i in range(0, test, 8)]).numpy()
    t0 = time.perf_counter()
    path = export_module(model, INPUT_SHAPE, out_dir / f"{name}.onnx",
                         metadata={"model": f"{name}_like", "weights": f"random, seed {seed}"})
    export_s = time.perf_counter() - t0
    np.savez(out_dir / "data.npz", x_calib=x_calib, x_test=x_test, torch_logits=torch_logits)
    return {
        "model": name,
        "onnx": str(path),
        "onnx_mib": round(path.stat().st_size / 2**20, 1),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "build_s": round(build_s, 2),
        "export_s": round(export_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.imagenet_graphs", description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calib", type=int, default=32)
    parser.add_argument("--test", type=int, default=16)
    args = parser.parse_args(argv)
    import logging

    # Without torchvision the exporter warns once per torchvision op it cannot register; none is used here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    print(json.dumps(export(args.model, args.out, seed=args.seed, calib=args.calib, test=args.test)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
