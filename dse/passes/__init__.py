"""Graph -> Graph passes, one file each, registered by name and run in order by `run_pipeline`."""

from dse.passes.registry import PASSES, PassError, PassRecord, register, run_pipeline

__all__ = ["PASSES", "PassError", "PassRecord", "register", "run_pipeline"]
