"""Shared by the sweep tests (tests/explore is on sys.path): a configuration that compiles fast."""

# mlp_digits (8x8 digits) with tuning cut short: a trial compiles in well under a second
FAST = ["model=mlp_digits", "tuning.free_steps=10", "tuning.range_steps=5", "tuning.round_steps=3", "progress=false"]
# ... and on a spiking chip its spike-aware steps too (a sweep of ReLU chips refuses them: they change nothing)
FAST_SPIKING = [*FAST, "tuning.spike_steps=5", "tuning.output_spike_steps=5"]
