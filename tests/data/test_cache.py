"""The parsed-array cache (`dse.data.cache`): parsed once per version of a file, the same values as a parse,
and a parse whenever the cache cannot serve."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dse.data.cache import cached_parse, entry_path


@pytest.fixture
def source(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = tmp_path / "data.csv"
    path.write_text("0,255,7\n3,0.5,9\n")
    return path


class CountingParser:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> np.ndarray:
        self.calls += 1
        return np.loadtxt(path, delimiter=",")


def test_a_file_is_parsed_once_and_read_back_with_the_same_values(source: Path) -> None:
    parse = CountingParser()
    first = cached_parse(source, parse)
    again = cached_parse(source, parse)
    assert parse.calls == 1 and entry_path(source).is_file()
    assert again.dtype == first.dtype == np.float64 and np.array_equal(again, np.loadtxt(source, delimiter=","))


def test_byte_values_are_stored_compactly_and_read_back_exactly(source: Path) -> None:
    source.write_text("0,255,7\n3,1,9\n")
    parse = CountingParser()
    first = cached_parse(source, parse)
    assert np.load(entry_path(source)).dtype == np.uint8
    again = cached_parse(source, parse)
    assert first.dtype == again.dtype == np.uint8 and parse.calls == 1  # the same array parsed or read back
    assert np.array_equal(again, np.loadtxt(source, delimiter=","))


def test_a_changed_file_is_parsed_again(source: Path) -> None:
    parse = CountingParser()
    cached_parse(source, parse)
    source.write_text("1,2,3\n4,5,6\n")
    os.utime(source, ns=(0, 10**9))  # a new modification time, whatever the clock's resolution
    assert np.array_equal(cached_parse(source, parse), [[1, 2, 3], [4, 5, 6]]) and parse.calls == 2


def test_a_damaged_entry_or_an_unwritable_cache_falls_back_to_parsing(source: Path, tmp_path: Path,
                                                                        monkeypatch) -> None:
    parse = CountingParser()
    expected = np.loadtxt(source, delimiter=",")
    cached_parse(source, parse)
    entry_path(source).write_bytes(b"not an array")
    assert np.array_equal(cached_parse(source, parse), expected) and parse.calls == 2
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # the cache folder cannot be created
    assert np.array_equal(cached_parse(source, parse), expected) and parse.calls == 3
