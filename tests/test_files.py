"""`dse.files.npz_shapes`: what an .npz holds, from its arrays' headers alone."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from dse.files import npz_shapes


@pytest.mark.parametrize("seed", range(5))
def test_the_shapes_from_the_headers_are_numpys(tmp_path, seed) -> None:
    rng = np.random.default_rng(seed)
    arrays = {f"a{i}/b" if i % 2 else f"a{i}": np.zeros(tuple(rng.integers(0, 4, rng.integers(0, 5))),
                                                        dtype=rng.choice(["int8", "float32", "bool", "<U3"]))
              for i in range(rng.integers(0, 6))}
    save = np.savez_compressed if seed % 2 else np.savez
    save(tmp_path / "a.npz", **arrays)
    with np.load(tmp_path / "a.npz") as data:
        assert npz_shapes(tmp_path / "a.npz") == {k: data[k].shape for k in data.files}


def test_a_header_of_format_2_is_read(tmp_path) -> None:
    """numpy writes format 2.0 (a 4-byte header length) where a header outgrows 1.0's 65,535 bytes."""
    with zipfile.ZipFile(tmp_path / "v2.npz", "w") as z, z.open("x.npy", "w") as f:
        np.lib.format.write_array(f, np.zeros((3, 2), np.int8), version=(2, 0))
    assert npz_shapes(tmp_path / "v2.npz") == {"x": (3, 2)}
    with np.load(tmp_path / "v2.npz") as data:
        assert data["x"].shape == (3, 2)


def test_what_is_not_an_npz_raises(tmp_path) -> None:
    (tmp_path / "t.npz").write_text("not a zip")
    with pytest.raises(zipfile.BadZipFile):
        npz_shapes(tmp_path / "t.npz")
