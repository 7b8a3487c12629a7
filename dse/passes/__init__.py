"""The compiler's steps, registered by name and run in order by `run_steps`: graph -> graph passes, one file
each, and the steps that tune, verify and count what they produced. Importing the package registers them all."""

from dse.passes.registry import (
    PASSES,
    STEPS,
    PassError,
    PassRecord,
    Step,
    register,
    register_step,
    run_pipeline,
    run_steps,
)
from dse.passes.state import CompileData, CompileState

# the modules that register steps (registry first: they import it)
from dse.passes import canonicalize, reform, equalize, reencode, fit_crossbar  # noqa: E402,I001  isort: skip
from dse.passes import tuning, verify, faults, resources, cost  # noqa: E402,I001  isort: skip

__all__ = ["PASSES", "STEPS", "CompileData", "CompileState", "PassError", "PassRecord", "Step", "register",
           "register_step", "run_pipeline", "run_steps", "canonicalize", "cost", "equalize", "faults", "fit_crossbar",
           "reencode", "reform", "resources", "tuning", "verify"]
