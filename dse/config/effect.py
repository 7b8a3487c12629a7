"""Settings that change nothing where they are given, refused rather than accepted and ignored.

Some settings act only on some chips or some tuning:

- `ACTS_ON`, by neuron model: the time steps, reset and encoding of spiking neurons, the leak of LIF ones, the
  I/O bits of a chip whose values pass through DACs and ADCs (on a spiking chip a value is a count of 0..T
  spikes), the spike-aware tuning steps;
- `ROUNDING_READS`: under tuning.mode=none, every tuning setting but the few the rounding baseline reads;
- `REQUIRES`, by another setting: the chips drawn for each noise-aware check need noise-aware tuning, the
  images of a bias correction need bias correction, the end-to-end phase (`tuning.network_*`) needs noise-aware
  tuning of a spiking chip, a sweep's population size needs the NSGA-II sampler.

Given for a compile that has none of what they act on, they change nothing: `python -m dse.compile` refuses
such an override of its command line, and a sweep refuses such a path whether it searches it (every trial would
be the same compile once per value) or sets it to one value; in a sweep a setting acts when it acts in any
trial. A null value sets nothing and is never refused.

Two settings act through the chip's device, a condition no table entry can name (`device_reason`): noise-aware
tuning trains against drawn chips' errors, so it needs a device that is not ideal, and `evaluate.seed` seeds the
drawn chips, so it needs chips that differ (or Poisson spike trains to draw).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from dse.errors import ConfigError
from dse.hardware.spec import NEURON_MODELS, SPIKING_MODELS, HardwareSpec
from dse.tune.options import TuneOptions

NON_SPIKING = tuple(m for m in NEURON_MODELS if m not in SPIKING_MODELS)  # values pass through DACs and ADCs
_TUNE_FIELDS = [f.name for f in dataclasses.fields(TuneOptions)]
_END_TO_END = [f"tuning.{name}" for name in _TUNE_FIELDS if name.startswith("network_")]
ACTS_ON: dict[str, tuple[str, ...]] = {
    "hardware.neuron.timesteps": SPIKING_MODELS, "hardware.neuron.reset": SPIKING_MODELS,
    "hardware.neuron.encoding": SPIKING_MODELS, "hardware.neuron.leak": ("lif",),
    "hardware.io.input_bits": NON_SPIKING, "hardware.io.output_bits": NON_SPIKING,
    **{f"tuning.{name}": SPIKING_MODELS for name in _TUNE_FIELDS
       if name.startswith("spike_") or name == "output_spike_steps"},
    **dict.fromkeys(_END_TO_END, SPIKING_MODELS),
}
# the tuning settings that tuning.mode=none (round to nearest, dse/tune/baseline.py) reads; the equalization pass
# runs before tuning of either mode (dse/compile/__init__.py)
ROUNDING_READS = {"bias_correction", "bias_correction_images", "equalize", "spike_calib_samples", "spike_chunk_images",
                  "seed"}
# setting -> (the setting it needs, the value that turns it on)
REQUIRES: dict[str, tuple[str, Any]] = {
    "tuning.noise_checks": ("tuning.noise_aware", True),
    "tuning.bias_correction_images": ("tuning.bias_correction", True),
    **dict.fromkeys(_END_TO_END, ("tuning.noise_aware", True)),
    "study.population_size": ("study.sampler", "nsga2"),  # a sweep's: the grid asks for one trial at a time
}
NEURON_MODEL, TUNING_MODE = "hardware.neuron.model", "tuning.mode"

Values = Callable[[str], Sequence[Any]]  # a path -> every value it takes (one for a compile, each trial's in a sweep)


def idle_reason(path: str, values: Values, chips: str) -> str | None:
    """Why setting `path` changes nothing where the other settings take `values` (`chips` names the chips in the
    message: "the chip has", "the sweep's chips have"), as the words after "changes nothing"; None when it acts."""
    models = values(NEURON_MODEL)
    users = ACTS_ON.get(path)
    if users is not None and not any(m in users for m in models):
        return f": it acts on {', '.join(users)} neurons, and {chips} {', '.join(map(str, models))} ({NEURON_MODEL})"
    if (path.startswith("tuning.") and path.split(".", 1)[1] not in ROUNDING_READS
            and all(m == "none" for m in values(TUNING_MODE))):
        reads = ", tuning.".join(sorted(ROUNDING_READS))
        return f" with {TUNING_MODE}=none (the rounding baseline reads only tuning.{reads})"
    if path in REQUIRES:
        needed, on = REQUIRES[path]
        if on not in values(needed):
            return f" without {needed}={str(on).lower()}"
    return None


def check_given(given: Iterable[tuple[str, Any]], values: Values, chips: str, what: str = "") -> None:
    """Refuse the first (path, value) of `given` that changes nothing (`idle_reason`); a null value sets nothing.
    `what` prefixes the path in the message ("search parameter ")."""
    for path, value in given:
        reason = None if value is None else idle_reason(path, values, chips)
        if reason is not None:
            raise ConfigError(f"{what}{path} changes nothing{reason}")


def device_reason(path: str, value: Any, hw: HardwareSpec) -> str | None:
    """Why setting `path` given as `value` changes nothing on chip `hw` through its device (the words after
    "changes nothing"); None when it acts or is not such a setting. The condition is the device's own state, not
    one setting's value, so it stands beside the tables: noise-aware tuning (on) trains against drawn chips'
    errors, and `evaluate.seed` seeds the drawn chips and, on a spiking chip with Poisson inputs, their spike
    trains."""
    device = hw.device
    if not (path == "evaluate.seed" and value is not None or path == "tuning.noise_aware" and value is True):
        return None
    if device.is_ideal:
        return ": hardware.device is ideal (set hardware.device.*, docs/device.md)"
    poisson = hw.spiking and hw.neuron.encoding == "poisson"
    if path == "evaluate.seed" and not device.random and not poisson:
        return (": every chip drawn from hardware.device is the same (no variation, noise or random drift) and "
                "the inputs are not Poisson spike trains")
    return None
