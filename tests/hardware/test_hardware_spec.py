"""HardwareSpec: validation names the bad field; derived quantities follow their closed forms."""

from __future__ import annotations

import math
from typing import Any

import pytest

from dse.errors import ConfigError
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights


def spec(**parts: dict[str, Any]) -> HardwareSpec:
    return HardwareSpec.from_dict({"name": "t", **parts})


BAD_VALUES = [
    ("crossbar", "rows", 1),
    ("crossbar", "rows", 0),
    ("crossbar", "rows", -256),
    ("crossbar", "rows", 2.5),
    ("crossbar", "rows", "many"),
    ("crossbar", "rows", True),
    ("crossbar", "cols", 1),
    ("crossbar", "cell_bits", 0),
    ("weights", "bits", 0),
    ("weights", "bits", -4),
    ("weights", "scale", "per_row"),
    ("io", "input_bits", 0),
    ("io", "output_bits", -1),
    ("neuron", "model", "sigmoid"),
    ("neuron", "reset", "never"),
    ("neuron", "encoding", "phase"),
    ("neuron", "timesteps", 0),
    ("neuron", "leak", 0.0),
    ("neuron", "leak", 1.5),
    ("mapping", "reuse", "sometimes"),
    ("mapping", "cores_per_chip", 0),
]


@pytest.mark.parametrize(("part", "key", "value"), BAD_VALUES, ids=lambda v: str(v))
def test_a_bad_value_is_a_config_error_naming_the_field(part: str, key: str, value: object) -> None:
    with pytest.raises(ConfigError, match=rf"hardware\.{part}\.{key}\b"):
        spec(**{part: {key: value}})


def test_an_unknown_key_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown key hardware\.crossbar\.size"):
        spec(crossbar={"size": 256})
    with pytest.raises(ConfigError, match=r"hardware\.io must be a mapping"):
        spec(io=8)
    # no cost model yet (its issue adds one): a cost figure is refused, never silently accepted
    with pytest.raises(ConfigError, match=r"unknown key hardware\.cost\b"):
        spec(cost={"crossbar_activation_pj": 1.0})


def test_one_bit_weights_need_differential_columns() -> None:
    assert spec(weights={"bits": 1}, crossbar={"differential": True}).weight_max == 1
    with pytest.raises(ConfigError, match=r"hardware\.weights\.bits"):
        spec(weights={"bits": 1}, crossbar={"differential": False})


def test_a_crossbar_too_narrow_for_one_weight_is_refused() -> None:
    """8-bit differential weights on 1-bit cells take 2 x 7 = 14 columns."""
    with pytest.raises(ConfigError, match=r"hardware\.crossbar\.cols=8 cannot hold one 8-bit weight"):
        spec(crossbar={"cols": 8, "cell_bits": 1}, weights={"bits": 8})
    assert spec(crossbar={"cols": 14, "cell_bits": 1}, weights={"bits": 8}).logical_cols == 1


def test_unconstrained_fields_are_allowed() -> None:
    ideal = spec(crossbar={"rows": None, "cols": None}, weights={"bits": None}, io={"input_bits": None,
                                                                                   "output_bits": None})
    assert ideal.is_ideal and not ideal.quantized
    assert ideal.weight_max is None and ideal.logical_cols is None and ideal.input_code_max is None


# 1-bit weights exist only as differential pairs (validation refuses the rest, tested above)
WEIGHT_LAYOUTS = [(b, c, d) for b in (1, 2, 3, 4, 5, 7, 8, 12, 16) for c in (1, 2, 3, 4, 8) for d in (True, False)
                  if d or b > 1]


@pytest.mark.parametrize(("bits", "cell_bits", "differential"), WEIGHT_LAYOUTS)
def test_columns_per_weight_closed_form(bits: int, cell_bits: int, differential: bool) -> None:
    """Differential: two unsigned magnitudes of b - 1 bits, each ceil((b - 1) / c) cells; else ceil(b / c)."""
    hw = HardwareSpec(crossbar=Crossbar(256, 256, cell_bits, differential), weights=Weights(bits))
    expected = 2 * math.ceil(max(bits - 1, 1) / cell_bits) if differential else math.ceil(bits / cell_bits)
    assert hw.columns_per_weight == expected
    assert hw.logical_cols == 256 // expected
    assert hw.weight_max == max(2 ** (bits - 1) - 1, 1)


def test_chip_a_numbers() -> None:
    """chip_a: 8-bit differential weights on 4-bit cells: 2 slices x 2 columns, 64 neurons per crossbar."""
    hw = HardwareSpec(crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8))
    assert hw.columns_per_weight == 4 and hw.logical_cols == 64 and hw.weight_max == 127
    assert hw.edge_bits(to_core=True) == 6 and hw.edge_bits(to_core=False) == 8
    assert hw.code_max(to_core=True) == 63 and hw.code_max(to_core=False) == 255 and hw.input_code_max == 63


def test_float_weights_take_one_column_pair() -> None:
    assert HardwareSpec(weights=Weights(None)).columns_per_weight == 2
    assert HardwareSpec(crossbar=Crossbar(differential=False), weights=Weights(None)).columns_per_weight == 1


def test_to_dict_round_trips() -> None:
    hw = spec(crossbar={"rows": 64, "cols": 128}, weights={"bits": 4, "scale": "per_column"},
              io={"input_bits": 4, "output_bits": 5})
    assert HardwareSpec.from_dict(hw.to_dict()) == hw


@pytest.mark.parametrize(("neuron", "message"), [
    ({"model": "if_floor", "offered": ["if", "lif"]},
     r"^hardware\.neuron\.model='if_floor' is not offered by chip t \(offered: if, lif\)$"),
    ({"model": "if_floor", "reset": "to_floor"}, r"^hardware\.neuron\.reset must be one of subtract, zero "),
    ({"model": "if_floor", "timesteps": 0}, r"^hardware\.neuron\.timesteps\b"),
    ({"model": "if_floor", "offered": ["if", "iffloor"]}, r"^hardware\.neuron\.offered must be one of "),
])
def test_if_floor_bad_parameters_are_refused_in_one_line(neuron: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        spec(neuron=neuron)
    assert "\n" not in str(e.value)


NO_IO = {"input_bits": None, "output_bits": None}


def test_if_floor_spikes_and_has_a_floor_at_zero() -> None:
    chip = spec(neuron={"model": "if_floor", "timesteps": 8}, io=NO_IO)
    assert chip.spiking and chip.neuron.floor == 0.0 and chip.neuron.decay == 1.0
    assert chip.code_max(to_core=True) == 8
    assert spec(neuron={"model": "if"}, io=NO_IO).neuron.floor is None


@pytest.mark.parametrize("model", ["if", "lif", "if_floor"])
@pytest.mark.parametrize("io", [{}, {"input_bits": 4, "output_bits": None}, {"input_bits": None, "output_bits": 4}])
def test_io_bits_on_a_spiking_chip_are_refused(model: str, io: dict[str, Any]) -> None:
    """Values travel as spike counts: I/O bits would change nothing. Left out, `io` gets the relu chip's 6 and 8
    bits (the schema's defaults, as a preset without `io` composes), which are refused too, naming the fix."""
    with pytest.raises(ConfigError, match=r"^hardware\.io\.(input|output)_bits=\d+ on a spiking chip "
                       rf"\(hardware\.neuron\.model={model}, values travel as 0\.\.16 spikes\) changes nothing: "
                       r"set hardware\.io\.input_bits and output_bits to null") as e:
        spec(neuron={"model": model, "timesteps": 16}, **({"io": io} if io else {}))
    assert "\n" not in str(e.value)
    assert spec(neuron={"model": "relu"}, io={"input_bits": 4, "output_bits": 4}).io.input_bits == 4


@pytest.mark.parametrize(("part", "key", "value", "limit"), [
    ("io", "input_bits", 25, 24), ("io", "input_bits", 64, 24), ("io", "input_bits", 200, 24),
    ("io", "output_bits", 25, 24), ("weights", "bits", 26, 25), ("weights", "bits", 64, 25),
])
def test_a_bit_width_past_what_the_simulator_holds_exactly_is_refused(part: str, key: str, value: int,
                                                                     limit: int) -> None:
    """Codes travel as float32 (exact up to 2**24), weight codes train in float32: 64-bit I/O once ran into an
    accumulator past float64's integers (exit 1), 200 bits into an OverflowError."""
    with pytest.raises(ConfigError, match=rf"^hardware\.{part}\.{key}={value} is more than the {limit} bits the "
                                          r"simulator holds exactly") as e:
        spec(crossbar={"rows": 2}, **{part: {key: value}})
    assert "\n" not in str(e.value)


def test_the_widest_bit_widths_pass_where_no_accumulator_passes_2_53() -> None:
    """rows x (2**24 - 1) x (2**24 - 1) < 2**53 up to 32 rows; the 256 rows of chip_a's crossbar are too many,
    and a spiking core's current of one step, rows x weight code, must stay below 2**24 (float32)."""
    wide = {"weights": {"bits": 25}, "io": {"input_bits": 24, "output_bits": 24}}
    assert spec(crossbar={"rows": 32}, **wide).weight_max == 2**24 - 1
    with pytest.raises(ConfigError, match=r"^hardware\.crossbar\.rows=256 with hardware\.weights\.bits=25 and "
                                          r"hardware\.io\.input_bits=24: a core's accumulator can reach 256 x "
                                          r"16777215 x 16777215 = 7\.21e\+16, past 2\*\*53"):
        spec(crossbar={"rows": 256}, **wide)
    spiking = {"neuron": {"model": "if", "timesteps": 16}, "io": NO_IO}
    assert spec(crossbar={"rows": 256}, weights={"bits": 17}, **spiking).weight_max == 2**16 - 1
    with pytest.raises(ConfigError, match=r"^hardware\.crossbar\.rows=256 with hardware\.weights\.bits=18: a "
                                          r"core's current in one time step can reach 256 x 131071"):
        spec(crossbar={"rows": 256}, weights={"bits": 18}, **spiking)


def test_more_spare_columns_than_columns_are_refused() -> None:
    """A spare stands in for one of the crossbar's columns: 1e9 of them drew a fault map for hours."""
    assert spec(crossbar={"cols": 16, "spare_columns": 16}).crossbar.spare_columns == 16
    with pytest.raises(ConfigError, match=r"^hardware\.crossbar\.spare_columns=1000000000 is more than the "
                                          r"crossbar's 256 columns"):
        spec(crossbar={"spare_columns": 10**9})
