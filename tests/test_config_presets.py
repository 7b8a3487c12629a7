"""The presets ship inside the package (dse/conf/, Hydra's pkg://dse.conf), and a user's own preset folder
joins them with hydra.searchpath, as `--help` says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dse.config import compose_config, hardware_from, presets
from dse.errors import ConfigError

MY_CHIP = """\
defaults:
  - schema
  - _self_
name: my_chip
crossbar: {rows: 128, cols: 128, cell_bits: 2, differential: true}
weights: {bits: 4}
io: {input_bits: 4, output_bits: 6}
neuron: {model: relu, offered: [relu]}
"""


def test_the_presets_are_read_from_the_package() -> None:
    import dse.conf

    conf = Path(dse.conf.__file__).parent
    assert presets("hardware") == sorted(p.stem for p in (conf / "hardware").glob("*.yaml"))
    assert {"chip_a", "chip_b", "ideal"} <= set(presets("hardware"))


def test_a_users_preset_folder_joins_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "my_chip.yaml").write_text(MY_CHIP)
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    hw = hardware_from(compose_config("compile", [searchpath, "hardware=my_chip"]).hardware)
    assert (hw.name, hw.crossbar.rows, hw.weights.bits, hw.io.output_bits) == ("my_chip", 128, 4, 6)
    # the shipped presets stay reachable next to it
    assert compose_config("compile", [searchpath, "hardware=chip_b"]).hardware.name == "chip_b"


def test_a_users_preset_that_is_not_yaml_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    """It was yaml's ParserError, a traceback of 100 lines."""
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "broken.yaml").write_text(MY_CHIP.replace("cols: 128,", "cols: [128,"))
    with pytest.raises(ConfigError) as err:
        compose_config("compile", [f"hydra.searchpath=[file://{tmp_path}]", "hardware=broken"])
    assert re.fullmatch(r".*/hardware/broken\.yaml, line \d+, column \d+: not valid YAML \(.+\)", str(err.value))


LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdef", "bcdefg", strict=True))


@pytest.mark.parametrize(("text", "message"), [
    (MY_CHIP + LAUGHS, r"hardware/bomb\.yaml: its YAML aliases expand to 6,053,\d+ values, more than the 100,000"),
    ("[" * 100_000 + "]" * 100_000, r"hardware/bomb\.yaml: nested too deeply to read as a preset"),
])
def test_a_users_preset_that_would_not_end_composing_is_refused(text: str, message: str, tmp_path: Path) -> None:
    """Nine nested aliases of nine values each (the "billion laughs") ran on for minutes as the preset was copied
    alias by alias; 100,000 nested lists were a RecursionError traceback."""
    (tmp_path / "hardware").mkdir()
    (tmp_path / "hardware" / "bomb.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        compose_config("compile", [f"hydra.searchpath=[file://{tmp_path}]", "hardware=bomb"])


def test_aliases_in_a_users_preset_are_read(tmp_path: Path) -> None:
    (tmp_path / "hardware").mkdir()
    shared = MY_CHIP.replace("weights: {bits: 4}", "weights: {bits: &b 4}").replace("input_bits: 4", "input_bits: *b")
    (tmp_path / "hardware" / "aliased.yaml").write_text(shared)
    cfg = compose_config("compile", [f"hydra.searchpath=[file://{tmp_path}]", "hardware=aliased"])
    assert (cfg.hardware.weights.bits, cfg.hardware.io.input_bits) == (4, 4)


def test_a_preset_folder_that_is_not_there_is_refused(tmp_path: Path) -> None:
    """Hydra only warned, and composed without the user's presets."""
    with pytest.raises(ConfigError, match=rf"^hydra\.searchpath: {tmp_path}/nope is not a folder of presets"):
        compose_config("compile", [f"hydra.searchpath=[file://{tmp_path}/nope]"])


@pytest.mark.parametrize("override", ["hydra.sweep.dir=out", "hydra.job.chdir=true", "+hydra.verbose=true",
                                      "hydra.output_subdir=null"])
@pytest.mark.parametrize("command", ["compile", "sweep"])
def test_a_hydra_key_dse_does_not_read_is_refused(command: str, override: str) -> None:
    """Hydra accepts every key of its own section, and dse composes without Hydra's runtime: `hydra.sweep.dir`
    was taken and the sweep wrote into results/ all the same."""
    key = override.split("=")[0].lstrip("+")
    with pytest.raises(ConfigError, match=rf"^{re.escape(override)}: dse does not read {re.escape(key)}; .*"
                                          r"hydra\.run\.dir \(the run folder"):
        compose_config(command, [override])
    assert compose_config(command, ["hydra.run.dir=out"]).hydra.run.dir == "out"


def test_a_preset_folder_name_too_long_is_refused(tmp_path: Path) -> None:
    """The folder is looked into for oversized presets first: a name past 255 bytes must not raise there."""
    with pytest.raises(ConfigError, match=r"^hydra\.searchpath: .*/f{300} is not a folder of presets"):
        compose_config("compile", [f"hydra.searchpath=[file://{tmp_path}/{'f' * 300}]"])
