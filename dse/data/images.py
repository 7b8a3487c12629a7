"""A folder of images as a dataset, decoded lazily, batch by batch, with Pillow.

Layout (torchvision's ImageFolder): ``root/<class>/**/<image>`` with one folder per class, or the images
straight in ``root`` (no labels). The class of a folder is its rank among the sorted folder names, or, when
``root/classes.txt`` exists, the number of the line that names it (line 0 = network output 0); every class
folder must then be listed.

Sample order: class folders in sorted order, and in each, the image paths (relative, so subfolders count)
in sorted order. That order numbers the samples 0..N-1, and the fixed split of
:func:`dse.data.datasets.split_indices` is taken over those numbers, exactly as over the rows of a ``.npz``.

Preprocessing, in this order (:class:`Preprocess`, ``model.preprocess`` on the command line):

1. ``channels``: 1 (Pillow mode ``L``) or 3 (``RGB``); None = the network input's channel count;
2. ``resize``: the shorter side to this many pixels, the longer one scaled to keep the aspect ratio
   (truncated to an integer), bilinear with Pillow's antialiasing; None = as is;
3. ``crop``: the centre ``crop x crop`` square (offsets rounded as torchvision's CenterCrop); None = none;
4. ``scale``: True = pixels / 255 into [0, 1] (computed in float64, then float32); False = 0..255;
5. ``mean`` / ``std`` (one value per channel, both or neither): the normalization ``(x - mean) / std`` the
   network expects; None = none, as for a network that normalizes inside its graph. It is not applied to the
   data: :func:`normalize_in_graph` puts it at the head of the network, where the compiler folds it into the
   first layer, so that the chip receives the pixels as they are scaled, unsigned (a chip's input codes start
   at 0; normalized pixels do not). The original network's results are those of the normalized data.

Every image must come out the same size: without ``resize`` and ``crop`` they must all be the same size, and
one image that does not fit is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dse.bounds import check_int
from dse.errors import ConfigError, DataError
from dse.ir import ops as o
from dse.ir.graph import Graph, Node

__all__ = ["IMAGE_SUFFIXES", "ImageSource", "Preprocess", "image_folder", "normalize_in_graph"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
CLASSES_FILE = "classes.txt"
MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True)
class Preprocess:
    resize: int | None = None
    crop: int | None = None
    channels: int | None = None
    scale: bool = True
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def validate(self) -> None:
        for key in ("resize", "crop"):
            check_int(f"model.preprocess.{key}", getattr(self, key), 1, optional=True)
        if self.channels not in (None, *MODES):
            raise ConfigError(f"model.preprocess.channels must be 1 (grayscale) or 3 (RGB) (got {self.channels})")
        if (self.mean is None) != (self.std is None):
            raise ConfigError("model.preprocess.mean and model.preprocess.std go together: give both or neither")
        if self.mean is not None:
            for key in ("mean", "std"):
                v = getattr(self, key)
                if self.channels is not None and len(v) != self.channels:
                    raise ConfigError(f"model.preprocess.{key} needs one value per channel ({self.channels}), "
                                      f"got {len(v)}")
            if not all(np.isfinite(self.mean)):
                raise ConfigError(f"model.preprocess.mean must be finite (got {list(self.mean)})")
            if not all(s > 0 and np.isfinite(s) for s in self.std):
                raise ConfigError(f"model.preprocess.std must be > 0 and finite (got {list(self.std)})")
            self._check_folded()

    def _check_folded(self) -> None:
        """The normalization enters the network as a float32 scale 1 / std and shift -mean / std
        (`normalize_in_graph`): past float32's range (a std of 1e-308) they were numpy's overflow warnings and
        Inf in the network."""
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        with np.errstate(over="ignore"):
            folded = np.concatenate([1.0 / std, mean / std]).astype(np.float32)
        if not np.isfinite(folded).all():
            raise ConfigError(f"model.preprocess.mean / std ({list(self.mean)} / {list(self.std)}): 1 / std or mean "
                              "/ std is past float32's range (3.4e38), as the network takes them")

    def value_range(self) -> tuple[float, float]:
        """(lo, hi) of every value this preprocessing gives the network's input (mean/std act inside it)."""
        return (0.0, 1.0 if self.scale else 255.0)

    def out_size(self, w: int, h: int) -> tuple[int, int]:
        """(width, height) an image of `w` x `h` has after resizing and cropping."""
        if self.resize is not None:
            w, h = (self.resize, int(self.resize * h / w)) if w <= h else (int(self.resize * w / h), self.resize)
        if self.crop is not None:
            return (self.crop, self.crop)
        return (w, h)

    def apply(self, img: Any) -> np.ndarray:
        """A Pillow image -> float32 (C, H, W)."""
        from PIL import Image

        img = img.convert(MODES[self.channels])
        if self.resize is not None:
            img = img.resize(self.out_size(*img.size), Image.Resampling.BILINEAR)
        if self.crop is not None:
            w, h = img.size
            left, top = int(round((w - self.crop) / 2.0)), int(round((h - self.crop) / 2.0))
            img = img.crop((left, top, left + self.crop, top + self.crop))
        a = np.asarray(img)
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return (a / 255.0 if self.scale else a).astype(np.float32)


def normalize_in_graph(graph: Graph, preprocess: Preprocess) -> Graph:
    """`graph` reading unnormalized pixels: a ScaleShift ``(x - mean) / std`` between its Input and the rest."""
    if preprocess.mean is None:
        return graph
    inp = graph.input.name
    name = next(f"{inp}_normalize{i or ''}" for i in range(len(graph) + 1) if f"{inp}_normalize{i or ''}" not in graph)
    std = np.asarray(preprocess.std, np.float64).reshape(-1, 1, 1)
    scale_shift = o.ScaleShift((1.0 / std).astype(np.float32),
                               (-np.asarray(preprocess.mean).reshape(-1, 1, 1) / std).astype(np.float32))
    nodes = []
    for n in graph:
        nodes.append(Node(n.name, n.op, tuple(name if s == inp else s for s in n.inputs), n.block))
        if n.name == inp:
            nodes.append(Node(name, scale_shift, (inp,)))
    return graph.replace_nodes(nodes, [name if s == inp else s for s in graph.outputs])


def _unreadable() -> tuple[type[Exception], ...]:
    from PIL import Image

    # OSError: not an image, or truncated (UnidentifiedImageError is one); a header of more pixels than Pillow
    # will decode (twice Image.MAX_IMAGE_PIXELS)
    return (OSError, Image.DecompressionBombError)


class ImageSource:
    """The images of a folder, decoded when a batch of them is read."""

    def __init__(self, root: Path, paths: list[str], preprocess: Preprocess) -> None:
        self.root, self.paths, self.preprocess = root, paths, preprocess
        w, h = self._size(0)
        if preprocess.crop is not None and min(w, h) < preprocess.crop:
            raise DataError(f"image {root / paths[0]} is {w}x{h}, smaller than model.preprocess.crop="
                            f"{preprocess.crop}")
        ow, oh = preprocess.out_size(w, h)
        self.sample_shape = (int(preprocess.channels), oh, ow)

    def _size(self, i: int) -> tuple[int, int]:
        from PIL import Image

        path = self.root / self.paths[i]
        try:
            with Image.open(path) as img:  # reads the header only
                return img.size
        except _unreadable() as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None

    def check(self, index: np.ndarray) -> None:
        """Every image of `index` comes out of the preprocessing at the sample shape (headers only)."""
        p = self.preprocess
        for i in index:
            w, h = self._size(int(i))
            if p.crop is not None and min(w, h) < p.crop:
                raise DataError(f"image {self.root / self.paths[i]} is {w}x{h}, smaller than "
                                f"model.preprocess.crop={p.crop}")
            if p.out_size(w, h) != self.sample_shape[:0:-1]:
                self._mixed(int(i), w, h)

    def _mixed(self, i: int, w: int, h: int) -> None:
        w0, h0 = self._size(0)
        fix = "model.preprocess.crop" if self.preprocess.resize is not None else \
            "model.preprocess.resize and model.preprocess.crop"
        raise DataError(f"images of mixed sizes in {self.root}: {self.paths[0]} is {w0}x{h0}, {self.paths[i]} is "
                        f"{w}x{h}; set {fix}")

    def read(self, index: np.ndarray) -> np.ndarray:
        from PIL import Image

        out = np.empty((len(index), *self.sample_shape), dtype=np.float32)
        for k, i in enumerate(index):
            try:
                with Image.open(self.root / self.paths[i]) as img:
                    x = self.preprocess.apply(img)  # decodes it: a truncated file fails only here
            except _unreadable() as exc:
                raise DataError(f"cannot read image {self.root / self.paths[i]}: {exc}") from None
            if x.shape != self.sample_shape:
                self._mixed(int(i), *img.size)
            out[k] = x
        return out

    def ids(self, index: np.ndarray) -> list[str]:
        return [self.paths[i] for i in index]


def image_folder(root: Path, preprocess: Preprocess) -> tuple[ImageSource, np.ndarray | None, int | None]:
    """The folder's images in sample order, their labels (None when the images lie straight in `root`), and
    the number of classes."""
    preprocess.validate()
    loose = _images(root, recursive=False)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = {c: [f"{c}/{p}" for p in _images(root / c, recursive=True)] for c in folders}
    per_class = {c: v for c, v in per_class.items() if v}
    if loose and per_class:
        raise DataError(f"image folder {root} has images both at its top ({loose[0]}) and in class folders "
                        f"({next(iter(per_class))}/); put every image in its class folder, or none")
    if not loose and not per_class:
        raise DataError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)}), at its top or in "
                        "class folders")
    if loose:
        return ImageSource(root, loose, preprocess), None, None
    classes = _classes(root, list(per_class))
    if len(per_class) == 1:  # every label the same: an accuracy measured on it says nothing of the classifier
        only = next(iter(per_class))
        raise DataError(f"image folder {root} holds images of one class only ({only}/): an accuracy on one class "
                        "cannot measure a classifier, and calibration would see one class; add the other classes' "
                        f"folders, or move the images to the top of {root} to compare the networks without labels")
    paths = [p for c in per_class for p in per_class[c]]  # sorted folder order, whatever the class numbers
    labels = np.concatenate([np.full(len(v), classes.index(c), np.int64) for c, v in per_class.items()])
    return ImageSource(root, paths, preprocess), labels, len(classes)


def _images(folder: Path, recursive: bool) -> list[str]:
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p.relative_to(folder).as_posix() for p in found
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.name.startswith("."))


def _classes(root: Path, folders: list[str]) -> list[str]:
    """Class names by class index: classes.txt's lines, or the sorted folder names."""
    listing = root / CLASSES_FILE
    if not listing.is_file():
        return sorted(folders)
    try:
        lines = [ln.strip() for ln in listing.read_text().splitlines()]
    except UnicodeDecodeError as exc:
        raise DataError(f"{listing} is not text ({exc}); one class folder name per line") from None
    while lines and not lines[-1]:
        lines.pop()
    if "" in lines:
        raise DataError(f"{listing} line {lines.index('') + 1} is empty; one class folder name per line")
    dup = next((c for c in lines if lines.count(c) > 1), None)
    if dup is not None:
        raise DataError(f"{listing} names class {dup!r} twice")
    missing = [f for f in folders if f not in lines]
    if missing:
        raise DataError(f"class folder {missing[0]!r} of {root} is not listed in {CLASSES_FILE}")
    return lines
