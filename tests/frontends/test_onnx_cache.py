"""The imported-graph cache (`dse.frontends.onnx_cache`): a cached graph is the imported one, field for field and
output for output, for every op form the importer makes; a compile that reads it never imports onnx; a changed
file, model or importer is imported again; the cache never serves what it cannot vouch for."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as oh
from test_onnx_import import OP_CASES, make_model

from dse.compile import MODELS_DIR
from dse.errors import ModelError, UnsupportedOpError
from dse.frontends import onnx_cache
from dse.frontends.onnx import load_onnx
from dse.frontends.onnx_cache import entry_path, load_onnx_file
from dse.ir.graph import Graph
from dse.sim.float_exec import run_logits


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "dse" / "graphs"


class CountingImport:
    """`import_onnx`, counted: how often the cache sent a file to the importer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import dse.frontends.onnx as importer

        self.calls, self._real = 0, importer.import_onnx
        monkeypatch.setattr(importer, "import_onnx", self)

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self._real(*args, **kwargs)


def assert_same_graph(cached: Graph, imported: Graph) -> None:
    assert cached.outputs == imported.outputs and len(cached) == len(imported)
    for a, b in zip(cached, imported, strict=True):
        assert (a.name, a.inputs, a.block, type(a.op)) == (b.name, b.inputs, b.block, type(b.op))
        for f in dataclasses.fields(a.op):
            x, y = getattr(a.op, f.name), getattr(b.op, f.name)
            if isinstance(y, np.ndarray):
                assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), (a.name, f.name)
            else:
                assert x == y, (a.name, f.name, x, y)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("name", sorted(OP_CASES))
def test_a_cached_graph_is_the_imported_one_for_every_op_form(name: str, tmp_path: Path) -> None:
    nodes, in_shape, inits, *rest = OP_CASES[name]
    kw = rest[0] if rest else {}
    path = save(make_model(nodes, in_shape, inits=inits, **kw), tmp_path / "m.onnx")
    imported = load_onnx(path)
    first, cached = load_onnx_file(path), load_onnx_file(path)
    assert entry_path(path).is_file()
    assert_same_graph(first, imported)
    assert_same_graph(cached, imported)
    x = np.random.default_rng(5).standard_normal((3, *in_shape)).astype(np.float32)
    assert np.array_equal(run_logits(cached, x), run_logits(imported, x), equal_nan=True)


@pytest.mark.parametrize("model", sorted(p.stem for p in MODELS_DIR.glob("*.onnx")))
def test_the_embedded_models_are_imported_once_and_read_back_the_same(model: str, monkeypatch) -> None:
    path = MODELS_DIR / f"{model}.onnx"
    counted = CountingImport(monkeypatch)
    graphs = [load_onnx_file(path) for _ in range(3)]
    assert counted.calls == 1
    imported = load_onnx(path)
    for g in graphs:
        assert_same_graph(g, imported)


def test_a_compile_reading_a_cached_graph_never_imports_onnx(tmp_path: Path) -> None:
    script = ("import sys; from dse.compile import load_model; load_model('mlp_digits', 'digits'); "
              "print('onnx' in sys.modules)")
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert [r.stdout.split()[-1] for r in runs] == ["True", "False"]  # imported, then read from the cache


def test_a_changed_file_or_importer_is_imported_again(tmp_path: Path, monkeypatch) -> None:
    relu, sigmoid = (make_model([oh.make_node(op, ["x"], ["y"])], (2, 3, 3)) for op in ("Relu", "Sigmoid"))
    (tmp_path / "elsewhere").mkdir()
    copy = save(relu, tmp_path / "elsewhere" / "m.onnx")
    path = save(relu, tmp_path / "m.onnx")
    counted = CountingImport(monkeypatch)
    assert "Relu" in load_onnx_file(path).op_counts()
    assert "Relu" in load_onnx_file(copy).op_counts() and counted.calls == 1  # the same file moved: its entry
    save(sigmoid, path)
    assert "Sigmoid" in load_onnx_file(path).op_counts() and counted.calls == 2
    monkeypatch.setattr(onnx_cache, "importer_version", lambda: "another importer")
    load_onnx_file(path)
    assert counted.calls == 3


def test_what_cannot_be_vouched_for_is_not_kept(tmp_path: Path, cache: Path, monkeypatch) -> None:
    counted = CountingImport(monkeypatch)
    # a model whose weights lie in a file beside it
    w = np.arange(8, dtype=np.float32).reshape(4, 2)
    m = make_model([oh.make_node("Flatten", ["x"], ["f"]), oh.make_node("Gemm", ["f", "w"], ["y"])], (1, 4),
                   inits={"w": w})
    (tmp_path / "w.bin").write_bytes(w.tobytes())
    t = m.graph.initializer[0]
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value="w.bin")
    external = save(m, tmp_path / "external.onnx")
    load_onnx_file(external)
    load_onnx_file(external)
    assert counted.calls == 2 and not cache.exists()
    # a model past the size kept
    monkeypatch.setattr(onnx_cache, "MAX_BYTES", 10)
    small = save(make_model(*OP_CASES["relu"][:2]), tmp_path / "big.onnx")
    assert entry_path(small) is None
    load_onnx_file(small)
    assert counted.calls == 3 and not cache.exists()
    # a model the importer refuses: refused again, with the same line, and nothing kept
    monkeypatch.setattr(onnx_cache, "MAX_BYTES", 2**20)
    bad = save(make_model([oh.make_node("LRN", ["x"], ["y"], size=3)], (4, 5, 5)), tmp_path / "bad.onnx")
    errors = []
    for _ in range(2):
        with pytest.raises(UnsupportedOpError) as e:
            load_onnx_file(bad)
        errors.append(str(e.value))
    assert errors[0] == errors[1] and not cache.exists()


def test_what_is_not_a_regular_file_goes_to_the_importer_unread(tmp_path: Path, cache: Path) -> None:
    """A FIFO would block a read of its bytes and /dev/zero never end one: the importer refuses both without
    reading them, and the cache must not read them first."""
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        assert entry_path(path) is None
        with pytest.raises(ModelError, match="not a file"):
            load_onnx_file(path)
    assert not cache.exists()


def test_a_damaged_entry_is_imported_again_and_written_anew(tmp_path: Path, monkeypatch) -> None:
    path = save(make_model(*OP_CASES["relu"][:2]), tmp_path / "m.onnx")
    imported = load_onnx(path)
    load_onnx_file(path)
    entry = entry_path(path)
    entry.write_bytes(entry.read_bytes()[:100])  # truncated
    counted = CountingImport(monkeypatch)
    assert_same_graph(load_onnx_file(path), imported)
    assert counted.calls == 1
    assert_same_graph(load_onnx_file(path), imported)  # written anew, and read back
    assert counted.calls == 1


def test_a_cache_that_cannot_be_written_serves_the_imported_graph(tmp_path: Path, monkeypatch) -> None:
    path = save(make_model(*OP_CASES["relu"][:2]), tmp_path / "m.onnx")
    imported = load_onnx(path)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert_same_graph(load_onnx_file(path), imported)


def test_a_graph_the_cache_cannot_hold_is_served_and_not_kept(tmp_path: Path, monkeypatch) -> None:
    import dse.ir.serialize as serialize

    def cannot_hold(*args, **kwargs):
        raise TypeError("Object of type frozenset is not JSON serializable")

    monkeypatch.setattr(serialize, "save_graph", cannot_hold)
    path = save(make_model(*OP_CASES["relu"][:2]), tmp_path / "m.onnx")
    assert_same_graph(load_onnx_file(path), load_onnx(path))
    assert not entry_path(path).exists()
