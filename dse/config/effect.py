"""Settings that change nothing where they are given, refused rather than accepted and ignored.

Some settings act only on some chips or some tuning: the time steps, reset and encoding of spiking neurons, the
leak of LIF ones, the I/O bits of a chip whose values pass through DACs and ADCs (on a spiking chip a value is a
count of 0..T spikes), the spike-aware tuning steps (`ACTS_ON`, by neuron model); and under tuning.mode=none,
every tuning setting but the few the rounding baseline reads (`ROUNDING_READS`). Given for a compile that has
none of what they act on, they change nothing: `python -m dse.compile` refuses such an override of its command
line, and a sweep refuses such a path whether it searches it (every trial would be the same compile once per
value) or sets it to one value. A null value sets nothing and is never refused.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

from dse.errors import ConfigError
from dse.hardware.spec import NEURON_MODELS, SPIKING_MODELS
from dse.tune.options import TuneOptions

NON_SPIKING = tuple(m for m in NEURON_MODELS if m not in SPIKING_MODELS)  # values pass through DACs and ADCs
ACTS_ON: dict[str, tuple[str, ...]] = {
    "hardware.neuron.timesteps": SPIKING_MODELS, "hardware.neuron.reset": SPIKING_MODELS,
    "hardware.neuron.encoding": SPIKING_MODELS, "hardware.neuron.leak": ("lif",),
    "hardware.io.input_bits": NON_SPIKING, "hardware.io.output_bits": NON_SPIKING,
    **{f"tuning.{f.name}": SPIKING_MODELS for f in dataclasses.fields(TuneOptions)
       if f.name.startswith("spike_") or f.name == "output_spike_steps"},
}
# the tuning settings that tuning.mode=none (round to nearest, dse/tune/baseline.py) reads
ROUNDING_READS = {"bias_correction", "bias_correction_images", "spike_calib_samples", "spike_chunk_images", "seed"}


def idle_reason(path: str, models: Sequence[str], modes: Sequence[str], chips: str) -> str | None:
    """Why setting `path` changes nothing for chips of neuron `models` tuned in `modes` (`chips` names them in
    the message: "the chip has", "the sweep's chips have"), as the words after "changes nothing"; None when it
    acts on one of them."""
    users = ACTS_ON.get(path)
    if users is not None and not any(m in users for m in models):
        return (f": it acts on {', '.join(users)} neurons, and {chips} {', '.join(map(str, models))} "
                "(hardware.neuron.model)")
    if path.startswith("tuning.") and path.split(".", 1)[1] not in ROUNDING_READS and all(m == "none" for m in modes):
        reads = ", tuning.".join(sorted(ROUNDING_READS))
        return f" with tuning.mode=none (the rounding baseline reads only tuning.{reads})"
    return None


def check_given(given: Iterable[tuple[str, Any]], models: Sequence[str], modes: Sequence[str], chips: str,
                what: str = "") -> None:
    """Refuse the first (path, value) of `given` that changes nothing (`idle_reason`); a null value sets nothing.
    `what` prefixes the path in the message ("search parameter ")."""
    for path, value in given:
        reason = None if value is None else idle_reason(path, models, modes, chips)
        if reason is not None:
            raise ConfigError(f"{what}{path} changes nothing{reason}")
