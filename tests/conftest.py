"""Shared test configuration. Its folder (tests/) is on sys.path, so test modules import `compiler_helpers`.

Hypothesis draws the same examples on every run (`derandomize`): a property test that fails, fails again on the
same input, on any runner, and CI does not pass or fail by chance."""

from hypothesis import settings

settings.register_profile("dse", derandomize=True)
settings.load_profile("dse")
