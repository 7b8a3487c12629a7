"""The design-space-exploration suite (DESIGN.md section 5): sweep chip parameters and strategies around a
hardware preset, compile the network for every point, write the error-versus-resource trade-off.

Its configuration (schemas, presets, the command line's sweeps) is `dse.config`, below it. Modules, one job
each: `space` (search space), `trial` (one compile on a worker), `executors` / `pool_executor` /
`ray_executor` (where trials run), `study` (Optuna ask/tell driver, resume), `rundir` (run folder, resume
rule, lock), `records` (trials table), `pareto` (Pareto set, sensitivity data), `plots` (figures), `latex`
(Pareto table), `outputs` (writes them), `runner` (`run_study`, the front door). Only `ray_executor` imports
Ray.
"""

from typing import Any

__all__ = ["SweepResult", "run_study"]


def __getattr__(name: str) -> Any:
    # lazy: a Ray worker imports dse.explore.trial and must not pay for Optuna, pandas and matplotlib
    if name in __all__:
        from dse.explore import runner

        return getattr(runner, name)
    raise AttributeError(name)
