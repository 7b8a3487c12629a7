"""dse: a neural-network compiler for neuromorphic and PIM chips, and a design-space-exploration sweep.

The public surface, imported on first use (``import dse`` stays cheap: no torch, no Optuna until needed)::

    from pathlib import Path

    import dse

    graph, data = dse.load_model("lenet_mnist", "mnist")           # an embedded model or an ONNX path
    prepared = dse.prepare(graph, data, name="lenet_mnist")
    result = dse.compile(prepared, dse.HardwareSpec(), tuning=dse.TuneOptions(mode="none"))
    print(result.report.metrics.accuracy_compiled, result.legal)   # result.report: a CompileReport

    cfg = dse.compose_config("sweep", ["runner=local", "search=custom", "hardware.weights.bits=2,4"])
    sweep = dse.run_study(cfg, Path("results/my_sweep"))               # a SweepResult
"""

import sys
from importlib import import_module
from typing import Any

# name -> the module that defines it. `compile` is the package dse.compile itself, which calls its `compile`
# function when called (the import system gives the package that name in `dse` whenever it loads it).
_HOMES = {
    "load_onnx": "dse.frontends.onnx",
    "load_model": "dse.compile",
    "prepare": "dse.compile",
    "compile": "dse.compile",
    "Prepared": "dse.compile",
    "CompileResult": "dse.compile",
    "CompileReport": "dse.compile.report",
    "HardwareSpec": "dse.hardware.spec",
    "TuneOptions": "dse.tune.options",
    "compose_config": "dse.config",
    "hardware_from": "dse.config",
    "run_study": "dse.explore.runner",
    "SweepResult": "dse.explore.runner",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    # PEP 562: each name is imported the first time it is read
    if name not in _HOMES:
        raise AttributeError(f"module 'dse' has no attribute {name!r}")
    module = import_module(_HOMES[name])
    value = module if name == "compile" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


if sys.argv[:1] == ["-m"]:  # so while ``python -m`` locates the module it runs: its packages import now
    from dse.interrupt import install

    install()
