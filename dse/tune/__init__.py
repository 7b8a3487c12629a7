"""Layer-wise multi-phase tuning of core-ops against the original network (torch).

The public surface: `tune_graph` (the driver, dse/tune/multiphase.py), its settings `TuneOptions`, the record of a
block's losses `BlockReport`, and `check_quantizable`. docs/architecture.md describes the modules.
"""

from dse.tune.losses import BlockReport
from dse.tune.multiphase import check_quantizable, tune_graph
from dse.tune.options import TuneOptions

__all__ = ["BlockReport", "TuneOptions", "check_quantizable", "tune_graph"]
