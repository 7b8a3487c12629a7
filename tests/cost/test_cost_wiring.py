"""The cost model wired into a compile: the preset's coefficients, overridden from the command line, reach the
report; the ADC's energy moves by the factor its coefficient or its bits say (A2, A4), and nothing else does."""

from __future__ import annotations

import pytest

from dse.compile import compile, load_model, prepare
from dse.config import compose_config, hardware_from
from dse.tune import TuneOptions

# A4: ADC energy at 6 bits over 8 bits (the table's shape; the 8-bit level is the coefficient)
A4_6_OVER_8 = 1.20 / 1.67


@pytest.fixture(scope="module")
def prepared():
    graph, data = load_model("mlp_digits", "digits", calib_samples=200, test_samples=50)
    return prepare(graph, data, name="mlp_digits")


def energy(prepared, *overrides: str) -> dict[str, float]:
    hw = hardware_from(compose_config("compile", ["hardware=chip_a", *overrides]).hardware)
    return compile(prepared, hw, tuning=TuneOptions(mode="none")).report.cost.energy_pj


def test_the_adc_coefficient_and_bits_scale_the_adc_energy_only(prepared) -> None:
    base = energy(prepared)
    tenfold = energy(prepared, "hardware.cost.adc_8b_pj_per_conversion=15.6")  # MNSIM's figure (A6)
    assert tenfold["adc"] == pytest.approx(10 * base["adc"])
    assert {k: v for k, v in tenfold.items() if k not in ("adc", "total")} == \
        {k: v for k, v in base.items() if k not in ("adc", "total")}
    six_bits = energy(prepared, "hardware.io.output_bits=6")  # the ADC's bits are the output code's
    assert six_bits["adc"] == pytest.approx(A4_6_OVER_8 * base["adc"])
    assert six_bits["crossbar"] == base["crossbar"] and six_bits["dac"] == base["dac"]
