"""Noise-aware tuning (`tuning.noise_aware`, dse/tune/noise.py): off, the device plays no part in tuning; on, the
compiled network is another one, the same for the same seed, and it loses less on drawn chips than plain
tuning on the same chips; bad values are refused with one line."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from dse.cli import run_app
from dse.compile import compile, load_model, prepare
from dse.compile.__main__ import main
from dse.config import compose_config, hardware_from
from dse.errors import EXIT_USAGE, ConfigError
from dse.hardware.device import Device
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir import ops as o
from dse.sim.device_noise import CellLayout, drawn_weights
from dse.sim.montecarlo import MonteCarlo
from dse.tune import TuneOptions
from dse.tune.noise import StepNoise, injected

CHIP = HardwareSpec(name="chip_a", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8))
NOISY = dataclasses.replace(CHIP, device=Device(programming_sigma=0.05))
FAST = TuneOptions(free_steps=20, range_steps=20, round_fractions=(0.5, 1.0), round_steps=10)


@pytest.fixture(scope="module")
def prepared():
    graph, data = load_model("mlp_digits", "digits", calib_samples=200, test_samples=300)
    return prepare(graph, data, name="mlp_digits")


def _weights(graph) -> list[np.ndarray]:
    return [np.asarray(n.op.quant.weight_int) for n in graph.of_type(o.CoreOp)]


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(_weights(a), _weights(b), strict=True))


@pytest.fixture(scope="module")
def compiled(prepared):
    """Plain and noise-aware tuning for NOISY, both measured on the same 10 drawn chips."""
    return {aware: compile(prepared, NOISY, tuning=dataclasses.replace(FAST, noise_aware=aware),
                           evaluate=MonteCarlo(10, 0)) for aware in (False, True)}


def test_off_the_device_plays_no_part_in_tuning(prepared, compiled) -> None:
    ideal = compile(prepared, CHIP, tuning=FAST)
    assert _same(ideal.graph, compiled[False].graph)
    assert ideal.report.metrics == compiled[False].report.metrics
    # and on an ideal device there is no noise to be aware of
    assert _same(ideal.graph, compile(prepared, CHIP, tuning=dataclasses.replace(FAST, noise_aware=True)).graph)


def test_on_it_compiles_another_network_the_same_for_the_same_seed(prepared, compiled) -> None:
    aware = dataclasses.replace(FAST, noise_aware=True)
    assert not _same(compiled[True].graph, compiled[False].graph)
    again = compile(prepared, NOISY, tuning=aware, evaluate=MonteCarlo(10, 0))
    assert _same(compiled[True].graph, again.graph)
    assert again.report.device.accuracy_delta_pp == compiled[True].report.device.accuracy_delta_pp
    other_seed = compile(prepared, NOISY, tuning=dataclasses.replace(aware, seed=1))
    assert not _same(compiled[True].graph, other_seed.graph)


def test_it_loses_less_on_the_same_drawn_chips(compiled) -> None:
    plain, aware = (compiled[a].report.device.accuracy_delta_pp_mean for a in (False, True))
    # measured: 8.2 pp plain, 3.2 noise-aware (10 chips, 300 test images)
    assert aware < 0.6 * plain, (plain, aware)


def test_noise_aware_blocks_run_every_phase(compiled) -> None:
    """A block whose rounded start is within `floor_factor` of its float weights' loss skips its range and
    rounding phases; not under noise-aware tuning, where they also train the integer weights against the drawn
    chips' errors (studies/device_stuck_adc: 1 % stuck cells lost 8.1 pp instead of 6.0 with the skip)."""
    for b in compiled[True].blocks:
        losses = b.losses
        assert "range" in b.steps or losses["rounded_start"] <= FAST.floor_factor * losses["floor"], b


def test_a_step_sees_one_drawn_chip_and_the_checks_none() -> None:
    """Within `injected`, a core's weights are those a drawn chip holds for their integer form (the error of
    `drawn_weights` added to them), a fresh chip every step; outside, the weights themselves."""
    hw = dataclasses.replace(CHIP, device=Device(programming_sigma=0.1, stuck_high=0.01))

    class Core:  # what StepNoise reads of a QCore in the code domain
        domain, wmax, noise = "code", hw.weight_max, None

        @staticmethod
        def masked(w):
            return w

    core = Core()
    noise = core.noise = StepNoise(hw, seed=0, block="b", checks=2)
    w = torch.tensor([[0.3, -5.2, 17.0, 126.6]])
    assert torch.equal(noise.weights(core, w), w)
    with injected([core]):
        first, second = noise.weights(core, w), noise.weights(core, w)
    assert not torch.equal(first, second)
    # the error is the one `drawn_weights` makes on the rounded weights, drawn from the block's own stream
    rng = np.random.default_rng([0, *noise.key[1:], 0])
    rng.integers(2**62)  # the torch generator's seed
    w_int = np.array([[0, -5, 17, 127]])
    held = drawn_weights(w_int, CellLayout.of(hw), hw.device, [rng])[0]
    assert torch.allclose(first, w + torch.from_numpy(held - w_int).float())


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"noise_aware": "yes"}, "tuning.noise_aware must be true or false"),
    ({"noise_aware": True, "mode": "none"}, "tuning.noise_aware=true needs tuning.mode=multiphase"),
    ({"noise_checks": 0}, "tuning.noise_checks must be an integer >= 1"),
])
def test_bad_values_are_refused_with_one_line(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TuneOptions(**kwargs)


@pytest.mark.parametrize("override", ["tuning.noise_aware=maybe", "tuning.noise_checks=0"])
def test_the_command_line_refuses_them_with_status_2(tmp_path: Path, override: str) -> None:
    run_dir = tmp_path / "run"
    assert run_app("compile", main, ["model=mlp_digits", "progress=false", override,
                                     f"hydra.run.dir={run_dir}"]) == EXIT_USAGE
    assert not (run_dir / "report.json").exists()


def test_the_command_line_refuses_noise_aware_tuning_that_changes_nothing(tmp_path: Path, capsys) -> None:
    """On an ideal device it is plain tuning: refused with one line, as every setting the chip has no use for
    (a sweep may pair it with a noisy device: tests/explore/test_sweep_space.py); it was a warning."""
    args = ["model=mlp_digits", "progress=false", "tuning.noise_aware=true", "tuning.free_steps=5",
            "tuning.range_steps=5", "tuning.round_steps=5"]
    assert run_app("compile", main, [*args, f"hydra.run.dir={tmp_path / 'ideal'}"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == ("error: tuning.noise_aware=true changes nothing: hardware.device is ideal (set hardware.device.*, "
                   "docs/device.md)")
    assert not (tmp_path / "ideal").exists()
    assert run_app("compile", main, [*args, "hardware.device.read_sigma=0.02", f"hydra.run.dir={tmp_path / 'noisy'}"]
                   ) == 0


def test_on_a_spiking_chip_the_threshold_mismatch_is_trained_with_deterministically(prepared) -> None:
    """chip_b (spiking) with threshold mismatch: the spike-aware phase's steps see drawn thresholds, so the
    compiled network differs from plain tuning's, and is the same again for the same seed."""
    chip_b = hardware_from(compose_config("compile", ["hardware=chip_b"]).hardware)
    hw = dataclasses.replace(chip_b, device=Device(threshold_mismatch=0.1))
    fast = dataclasses.replace(FAST, spike_steps=20, output_spike_steps=20, spike_check_steps=10,
                               spike_calib_samples=100, network_steps=20, network_check_steps=10)
    plain = compile(prepared, hw, tuning=fast).graph
    aware = [compile(prepared, hw, tuning=dataclasses.replace(fast, noise_aware=True)).graph for _ in range(2)]
    assert _same(aware[0], aware[1])
    assert not _same(aware[0], plain)
