"""The user's own data (dse.data.user_data, images, samples): the documented split and sample order, lazy
reading, preprocessing against closed forms, and every kind of bad data refused in one line."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dse.data import load_dataset
from dse.data.datasets import split_indices
from dse.data.images import Preprocess, normalize_in_graph
from dse.data.samples import Samples
from dse.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def _npz(path: Path, compressed: bool = False, **arrays: np.ndarray) -> str:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return str(path)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_x_is_split_by_the_documented_permutation(tmp_path: Path, compressed: bool) -> None:
    x = RNG.random((23, 2, 5), dtype=np.float32)
    y = RNG.integers(0, 4, 23)
    ds = load_dataset(_npz(tmp_path / "d.npz", compressed, x=x, y=y))
    train, test = split_indices(23)
    assert len(test) == 5  # ceil(23 / 5)
    assert isinstance(ds.x_train, Samples) and ds.x_train.shape == (18, 2, 5) and ds.input_shape == (2, 5)
    np.testing.assert_array_equal(ds.x_train[:], x[train])
    np.testing.assert_array_equal(ds.x_test[1:4], x[test[1:4]])
    np.testing.assert_array_equal(ds.y_test, y[test])
    assert ds.x_test[:].dtype == np.float32 and ds.num_classes == int(y.max()) + 1
    assert list(ds.train_ids) == train.tolist() and list(ds.test_ids) == test.tolist()
    # memory-mapped from the zip file where it is stored uncompressed
    assert isinstance(ds.x_train.source.array, np.memmap) != compressed


def test_builtin_split_is_the_same_rule() -> None:
    mnist = load_dataset("mnist")
    train, test = split_indices(5000)
    assert list(mnist.test_ids) == test.tolist() and len(mnist.x_test) == 1000


def test_explicit_splits_are_not_split_and_labels_are_optional(tmp_path: Path) -> None:
    calib, test = RNG.random((7, 3), dtype=np.float32), RNG.random((4, 3), dtype=np.float32)
    ds = load_dataset(_npz(tmp_path / "d.npz", x_calib=calib, x_test=test))
    np.testing.assert_array_equal(ds.x_train[:], calib)
    np.testing.assert_array_equal(ds.x_test[:], test)
    assert ds.y_test is None and ds.num_classes is None and list(ds.test_ids) == [0, 1, 2, 3]


def test_select_takes_the_first_samples_and_the_range_of_the_calibration_data(tmp_path: Path) -> None:
    x = RNG.random((50, 4), dtype=np.float32) * 3
    ds = load_dataset(_npz(tmp_path / "d.npz", x=x)).select(calib_samples=6, test_samples=2)
    train, test = split_indices(50)
    assert list(ds.train_ids) == train[:6].tolist() and list(ds.test_ids) == test[:2].tolist()
    assert ds.value_range == (0.0, float(x[train[:6]].max()))
    given = load_dataset(_npz(tmp_path / "r.npz", x=x, value_range=np.array([0.0, 4.0]))).select(6, 2)
    assert given.value_range == (0.0, 4.0)


def make_arrays() -> dict[str, np.ndarray]:
    return {"x": np.arange(40, dtype=np.float32).reshape(10, 4), "y": np.arange(10) % 3}


class Arrays:
    x = np.ones((6, 2), np.float32)


def test_module_function_returning_a_dict_or_an_object() -> None:
    ds = load_dataset(f"{__name__}:make_arrays")
    train, _ = split_indices(10)
    np.testing.assert_array_equal(ds.x_train[:], make_arrays()["x"][train])
    assert ds.num_classes == 3
    sys.modules[__name__].make_object = lambda: Arrays()
    assert load_dataset(f"{__name__}:make_object").y_test is None


def make_lists() -> dict:
    return {"x": make_arrays()["x"].tolist(), "y": make_arrays()["y"].tolist()}


def test_module_function_returning_nested_lists() -> None:
    """Lists were an AttributeError traceback ('list' object has no attribute 'shape')."""
    ds = load_dataset(f"{__name__}:make_lists")
    train, _ = split_indices(10)
    np.testing.assert_array_equal(ds.x_train[:], make_arrays()["x"][train])
    sys.modules[__name__].make_ragged = lambda: {"x": [[0.0, 1.0], [0.0]]}
    with pytest.raises(DataError, match=r"^x of .*:make_ragged is not an array of samples \(.*inhomogeneous"):
        load_dataset(f"{__name__}:make_ragged")
    # ragged labels were a ValueError traceback
    sys.modules[__name__].make_ragged_labels = lambda: {**make_lists(), "y": [[0], [1, 2], *[[0]] * 8]}
    with pytest.raises(DataError, match=r"^y of .*:make_ragged_labels must be one integer class label per sample "
                                        r"\(.*inhomogeneous"):
        load_dataset(f"{__name__}:make_ragged_labels")


def make_tensors() -> dict:
    import torch

    return {k: torch.from_numpy(v) for k, v in make_arrays().items()}


def test_module_function_returning_torch_tensors() -> None:
    """A tensor's dtype (torch.float32) was a TypeError traceback ('Cannot interpret as a data type'); it is read
    as numpy reads it, and one that numpy cannot read (it requires grad) is one line."""
    ds = load_dataset(f"{__name__}:make_tensors").select()
    train, test = split_indices(10)
    np.testing.assert_array_equal(ds.x_train[:], make_arrays()["x"][train])
    np.testing.assert_array_equal(ds.x_test[np.array([0, 1])], make_arrays()["x"][test[:2]])
    assert ds.x_test[:].dtype == np.float32 and ds.num_classes == 3
    sys.modules[__name__].make_grad = lambda: {"x": make_tensors()["x"].requires_grad_()}
    with pytest.raises(DataError, match=r"^x of .*:make_grad holds torch\.float32 values, which numpy cannot read "
                                        r"\(RuntimeError: Can't call numpy\(\) on Tensor that requires grad"):
        load_dataset(f"{__name__}:make_grad")


class BrokenArray:
    """An array-like (h5py's dataset, say) whose shape promises 10 samples of 4 values; `read` is its indexing."""

    shape, dtype = (10, 4), np.dtype(np.float32)

    def __init__(self, read) -> None:
        self.read = read

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key):
        return self.read(key)


def _disk_gone(key):
    raise OSError("Can't read data (file closed)")


@pytest.mark.parametrize("read, pattern", [
    (_disk_gone, r"reading 10 samples failed \(OSError: Can't read data \(file closed\)\)$"),
    (lambda key: "junk", r"reading 10 samples failed \(ValueError: could not convert string to float: 'junk'\)$"),
    (lambda key: np.zeros((2, 4)), r"10 samples read as shape \(2, 4\), not \(10, 4\) as its shape \(10, 4\) "
                                   r"promised$"),
])
def test_an_array_like_that_fails_to_read_is_one_line(read, pattern: str) -> None:
    """Its exception (or junk in place of samples) was a traceback (here in the input range's scan of the
    calibration samples, else in prepare's first batch)."""
    sys.modules[__name__].make_broken = lambda: {"x_calib": BrokenArray(read), "x_test": np.zeros((2, 4))}
    with pytest.raises(DataError, match=r"^x_calib of .*:make_broken: " + pattern):
        load_dataset(f"{__name__}:make_broken").select()


def test_npz_samples_pickle_as_their_path(tmp_path: Path) -> None:
    x = RNG.random((1000, 64), dtype=np.float32)
    ds = load_dataset(_npz(tmp_path / "d.npz", x=x))
    blob = pickle.dumps(ds.x_test)
    assert len(blob) < 10_000  # the indices and the path, not the 256 KB of samples
    np.testing.assert_array_equal(pickle.loads(blob)[:5], ds.x_test[:5])


# --- image folders ---------------------------------------------------------------------------------------


def _png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_an_image_that_does_not_decode_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A truncated image (its header whole: only decoding fails) was an OSError traceback in the first batch, one
    of more pixels than Pillow decodes a DecompressionBombError traceback at its header."""
    for i in range(4):
        _png(tmp_path / "a" / f"{i}.png", RNG.integers(0, 255, (8, 8), dtype=np.uint8))
    _png(tmp_path / "b" / "0.png", RNG.integers(0, 255, (8, 8), dtype=np.uint8))
    whole = (tmp_path / "a" / "2.png").read_bytes()
    (tmp_path / "a" / "2.png").write_bytes(whole[: len(whole) // 2])
    ds = load_dataset(str(tmp_path), Preprocess(channels=1)).select()
    with pytest.raises(DataError, match=r"^cannot read image .*a/2\.png: image file is truncated"):
        ds.x_train[:], ds.x_test[:]
    (tmp_path / "a" / "2.png").write_bytes(whole)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 16)  # 8x8 is more than twice as many
    with pytest.raises(DataError, match=r"^cannot read image .*a/0\.png: Image size \(64 pixels\) exceeds limit"):
        load_dataset(str(tmp_path), Preprocess(channels=1))


def test_a_sample_beyond_float32_is_refused_naming_it_without_a_warning(tmp_path: Path) -> None:
    """Its cast to float32 printed numpy's 'RuntimeWarning: overflow encountered in cast' (two more lines on
    stderr) before the one line that names the sample."""
    import warnings

    x = np.ones((10, 3))
    x[4, 1] = 1e300
    ds = load_dataset(_npz(tmp_path / "big.npz", x_calib=x, x_test=x[:2]), None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batch = ds.select().x_train[:]
    with pytest.raises(DataError, match=r"big\.npz: calibration sample 4 holds NaN or Inf"):
        ds.require_finite(batch, "calibration")


def test_image_folder_order_labels_and_scaling(tmp_path: Path) -> None:
    pixels = {}
    for cls in ("dog", "cat", "bird"):
        for i in range(4):
            a = RNG.integers(0, 256, (6, 5), dtype=np.uint8)
            pixels[f"{cls}/{i}.png"] = a
            _png(tmp_path / cls / f"{i}.png", a)
    ds = load_dataset(str(tmp_path), Preprocess(channels=1))
    order = sorted(pixels)  # bird/0.png ... cat/ ... dog/
    train, test = split_indices(12)
    assert list(ds.test_ids) == [order[i] for i in test]
    assert ds.input_shape == (1, 6, 5) and ds.num_classes == 3 and ds.value_range == (0.0, 1.0)
    np.testing.assert_array_equal(ds.y_test, [["bird", "cat", "dog"].index(order[i].split("/")[0]) for i in test])
    expected = np.stack([(pixels[order[i]] / 255.0).astype(np.float32)[None] for i in train])
    np.testing.assert_array_equal(ds.x_train[:], expected)


def test_classes_txt_maps_folders_to_outputs(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            _png(tmp_path / cls / f"{i}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "classes.txt").write_text("z\nb\na\n")
    ds = load_dataset(str(tmp_path), Preprocess(channels=1))
    labels = dict(zip([*ds.train_ids, *ds.test_ids], [*ds.y_train, *ds.y_test], strict=True))
    assert {k.split("/")[0]: int(v) for k, v in labels.items()} == {"a": 2, "b": 1} and ds.num_classes == 3


def test_resize_crop_and_rgb(tmp_path: Path) -> None:
    # one colour per image: resizing keeps it, so every output value has a closed form
    colours = [(255, 0, 51), (102, 204, 0), (0, 0, 255), (10, 20, 30), (40, 50, 60)]
    for i, c in enumerate(colours):
        _png(tmp_path / f"{i}.png", np.broadcast_to(np.array(c, np.uint8), (20 + i, 40, 3)).copy())
    ds = load_dataset(str(tmp_path), Preprocess(resize=10, crop=8, channels=3, mean=(0.5, 0.2, 0), std=(1, 2, 3)))
    assert ds.y_test is None and ds.input_shape == (3, 8, 8)
    x = ds.x_train[:]
    for k, i in enumerate(ds.train_ids):  # mean/std are not applied to the data (normalize_in_graph)
        want = np.array(colours[int(i[0])]) / 255.0
        np.testing.assert_allclose(x[k], np.broadcast_to(want[:, None, None], (3, 8, 8)), atol=1e-6)
    assert ds.value_range == (0.0, 1.0)
    assert Preprocess(resize=10).out_size(40, 20) == (20, 10) and Preprocess(resize=10).out_size(15, 20) == (10, 13)


def test_the_normalization_heads_the_network() -> None:
    """The network on unnormalized pixels, with the ScaleShift in front, is the network on normalized pixels."""
    from dse.compile import load_model
    from dse.sim.float_exec import run_float

    graph, _ = load_model("lenet_mnist", "mnist", test_samples=8)
    p = Preprocess(channels=1, mean=(0.1307,), std=(0.3081,))
    normalized = normalize_in_graph(graph, p)
    x = RNG.random((8, 1, 28, 28), dtype=np.float32)
    want = run_float(graph, (x - 0.1307) / 0.3081)[graph.outputs[0]].numpy()
    got = run_float(normalized, x)[normalized.outputs[0]].numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert len(normalized) == len(graph) + 1 and normalize_in_graph(graph, Preprocess(channels=1)) is graph


# --- bad data --------------------------------------------------------------------------------------------


def raises_value_error() -> None:
    raise ValueError("the archive is corrupt\nsecond line")


def int_keys() -> dict:
    return {0: np.zeros((10, 3)), 1: np.zeros(10, int)}


def exits() -> None:
    sys.exit(0)


def _empty(path: Path) -> str:
    path.write_bytes(b"")
    return str(path)


def _bad_member(path: Path) -> str:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", b"not an array")
    return str(path)


def _bad(tmp_path: Path) -> dict[str, tuple[str, Preprocess | None, str]]:
    x = np.zeros((10, 3), np.float32)
    mixed = tmp_path / "mixed"
    _png(mixed / "a" / "0.png", np.zeros((4, 4), np.uint8))
    _png(mixed / "a" / "1.png", np.zeros((5, 4), np.uint8))
    _png(mixed / "b" / "0.png", np.zeros((4, 4), np.uint8))
    unlisted = tmp_path / "unlisted"
    _png(unlisted / "a" / "0.png", np.zeros((4, 4), np.uint8))
    _png(unlisted / "b" / "0.png", np.zeros((4, 4), np.uint8))
    (unlisted / "classes.txt").write_text("a\n")
    binary = tmp_path / "binary"
    _png(binary / "a" / "0.png", np.zeros((4, 4), np.uint8))
    (binary / "classes.txt").write_bytes(b"\xff\xfe\x00a\n")
    one_class = tmp_path / "one_class"
    for i in range(3):
        _png(one_class / "cat" / f"{i}.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    (tmp_path / "empty" / "cls" / "notes.txt").write_text("no image")
    (tmp_path / "dse_test_import_raises.py").write_text("raise RuntimeError('no data server')\n")  # on sys.path
    (tmp_path / "dse_test_syntax_error.py").write_text("def load(:\n    pass\n")
    (tmp_path / "dse_test_script.py").write_text("import sys\ndef main():\n    return 0\nsys.exit(main())\n")
    return {
        "no x": (_npz(tmp_path / "a.npz", y=np.zeros(3, int)), None, r"holds no array 'x'.*it has: y$"),
        "train and test": (_npz(tmp_path / "h.npz", x_train=x, y_train=np.zeros(10, int), x_test=x), None,
                           r"it has: x_train, y_train, x_test; rename x_train to x_calib"),
        "label count": (_npz(tmp_path / "b.npz", x=x, y=np.zeros(9, int)), None, r"y of .* has 9 labels for 10"),
        "float labels": (_npz(tmp_path / "c.npz", x=x, y=np.zeros(10)), None, r"integer class label"),
        # uint64 labels of 2**63 and up were cast to negative int64 classes: compiled, exit 0, accuracy 0
        "uint64 labels past int64": (_npz(tmp_path / "u.npz", x=x, y=np.full(10, 2**63, np.uint64)), None,
                                     r"y of .*u\.npz holds a label of 9223372036854775808, past any network's outputs"),
        "unknown array": (_npz(tmp_path / "d.npz", x=x, z=x), None, r"unknown array 'z'"),
        "x and x_test": (_npz(tmp_path / "e.npz", x=x, x_test=x), None, r"not both"),
        "1-d x": (_npz(tmp_path / "f.npz", x=np.zeros(10)), None, r"must be \(samples, \*per-sample shape\)"),
        "empty name": ("", None, r"^model\.dataset is empty: name a built-in"),  # it read the working folder
        "missing npz": (str(tmp_path / "nope.npz"), None, r"dataset file not found"),
        "empty npz": (_empty(tmp_path / "empty.npz"), None, r"empty\.npz is not a readable \.npz file"),  # EOFError
        "npz member not an array": (_bad_member(tmp_path / "member.npz"), None,
                                    r"x of .*member\.npz is not a readable array \(the magic string"),
        "no images": (str(tmp_path / "empty"), Preprocess(channels=1), r"holds no images"),
        # accepted: every label 0, an accuracy that measures nothing and a calibration of one class
        "one class": (str(one_class), Preprocess(channels=1),
                      r"^image folder .*one_class holds images of one class only \(cat/\): an accuracy on one"),
        "mixed sizes": (str(mixed), Preprocess(channels=1), r"mixed sizes.*0\.png is 4x4.*1\.png is 4x5.*resize"),
        "folder not in classes.txt": (str(unlisted), Preprocess(channels=1), r"class folder 'b' .*not listed"),
        # a UnicodeDecodeError traceback
        "classes.txt not text": (str(binary), Preprocess(channels=1),
                                 r"binary/classes\.txt is not text \('utf-8' codec can't decode byte 0xff"),
        "smaller than the crop": (str(mixed), Preprocess(channels=1, crop=5),
                                  r"a/0\.png is 4x4, smaller than .*crop=5"),
        "no module": ("no_such_module_here:load", None, r"cannot import dataset function no_such_module_here:load"),
        "no function": (f"{__name__}:nope", None, r"cannot import dataset function .*:nope"),
        "raises": (f"{__name__}:raises_value_error", None, r"raised ValueError: the archive is corrupt$"),
        # an empty x, x_calib or x_test was a traceback (the labels' maximum, or the first calibration batch)
        "empty x": (_npz(tmp_path / "k.npz", x=x[:0], y=np.zeros(0, int)), None,
                    r"x of .*k\.npz holds no samples \(shape \(0, 3\)\)$"),
        "empty x_calib": (_npz(tmp_path / "l.npz", x_calib=x[:0], x_test=x), None, r"x_calib of .* holds no samples"),
        "empty x_test": (_npz(tmp_path / "m.npz", x_calib=x, x_test=x[:0], y_test=np.zeros(0, int)), None,
                         r"x_test of .* holds no samples"),
        # value_range in text was a traceback, an infinite or float32-overflowing one a traceback in the tuner or
        # NaN outputs
        "value_range text": (_npz(tmp_path / "n.npz", x=x, value_range=np.array(["a", "b"])), None,
                             r"value_range of .*n\.npz must be \[lo, hi\], finite numbers with lo < hi "
                             r"\(got \['a', 'b'\]\)$"),
        "value_range Inf": (_npz(tmp_path / "o.npz", x=x, value_range=np.array([0, np.inf])), None,
                            r"value_range of .* \(got \[0\.0, inf\]\)$"),
        "value_range 1e300": (_npz(tmp_path / "p.npz", x=x, value_range=np.array([0, 1e300])), None,
                              r"value_range of .* \(got \[0\.0, 1e\+300\]\)$"),
        # a module whose import raised anything but ImportError was a traceback
        "import raises": ("dse_test_import_raises:load", None,
                          r"cannot import dataset function .*: importing dse_test_import_raises raised "
                          r"RuntimeError: no data server$"),
        # sys.exit in the user's code ended the command with its status (0: success), nothing written
        "import exits": ("dse_test_script:load", None, r"importing dse_test_script raised SystemExit: 0$"),
        "function exits": (f"{__name__}:exits", None, r"dataset function .*:exits raised SystemExit: 0$"),
        # keys not text were a TypeError traceback in the message's join
        "keys not names": (f"{__name__}:int_keys", None, r"returned no array 'x' .*; it has: 0, 1$"),
        "import syntax error": ("dse_test_syntax_error:load", None,
                                r"importing dse_test_syntax_error raised SyntaxError: "),
        "preprocess on npz": (_npz(tmp_path / "g.npz", x=x), Preprocess(resize=4), r"model\.preprocess applies"),
        # complex samples lost their imaginary part with a warning, text ones were a traceback
        "complex x": (_npz(tmp_path / "i.npz", x=x.astype(np.complex64)), None,
                      r"x of .*i\.npz holds complex64 values; the samples must be real numbers"),
        "text x": (_npz(tmp_path / "j.npz", x_calib=x.astype(str), x_test=x), None,
                   r"x_calib of .*j\.npz holds <U32 values; the samples must be real numbers"),
        # a NaN std was "unsupported op Mul/Add at node 'div'" from the importer
        "std zero": (str(mixed), Preprocess(channels=1, resize=4, mean=(0.5,), std=(0.0,)),
                     r"model\.preprocess\.std must be > 0 and finite \(got \[0\.0\]\)"),
        "std NaN": (str(mixed), Preprocess(channels=1, resize=4, mean=(0.5,), std=(float("nan"),)),
                    r"model\.preprocess\.std must be > 0 and finite \(got \[nan\]\)"),
        "mean infinite": (str(mixed), Preprocess(channels=1, resize=4, mean=(float("inf"),), std=(0.5,)),
                          r"model\.preprocess\.mean must be finite \(got \[inf\]\)"),
        # 1 / std folded into the network past float32: numpy's overflow warnings, and the outputs Inf (exit 4)
        "std below float32": (str(mixed), Preprocess(channels=1, resize=4, mean=(0.5,), std=(1e-39,)),
                              r"model\.preprocess\.mean / std \(\[0\.5\] / \[1e-39\]\): 1 / std or mean / std is "
                              r"past float32's range"),
    }


BAD = ["no x", "train and test", "label count", "float labels", "uint64 labels past int64", "unknown array",
       "x and x_test", "1-d x",
       "empty name", "missing npz", "empty npz", "npz member not an array", "no images", "one class", "mixed sizes",
       "folder not in classes.txt", "classes.txt not text", "smaller than the crop", "no module", "no function",
       "raises", "import raises", "import syntax error", "import exits", "function exits", "keys not names",
       "empty x", "empty x_calib", "empty x_test", "value_range text", "value_range Inf", "value_range 1e300",
       "preprocess on npz", "complex x", "text x", "std zero", "std NaN", "mean infinite", "std below float32"]


def test_the_bad_list_is_complete(tmp_path: Path) -> None:
    assert set(_bad(tmp_path)) == set(BAD)


@pytest.mark.parametrize("case", BAD)
def test_bad_data_is_one_line(tmp_path: Path, case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))  # the modules `_bad` writes
    spec, preprocess, pattern = _bad(tmp_path)[case]
    with pytest.raises((DataError, ConfigError), match=pattern) as info:
        load_dataset(spec, preprocess).select()
    assert "\n" not in str(info.value)
