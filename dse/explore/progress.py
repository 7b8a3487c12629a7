"""The sweep's progress bar: trials done and failed, and the time left (tqdm's estimate)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dse.explore.study import DriveStats
from dse.explore.trial import TrialOutcome


def progress_bar(enabled: bool, desc: str = "trials") -> tuple[Callable[[DriveStats, TrialOutcome | None], None],
                                                              Callable[[], None]]:
    """An `on_result` callback for study.drive and a function that closes the bar."""
    if not enabled:
        return (lambda stats, outcome: None), (lambda: None)
    from tqdm import tqdm

    holder: dict[str, Any] = {}

    def update(stats: DriveStats, outcome: TrialOutcome | None) -> None:
        if "bar" not in holder:
            # the finished trials of a resumed study count as done from the start, and (as `initial`) not
            # in the rate that estimates the time left
            holder["bar"] = tqdm(total=stats.total, initial=stats.kept, desc=desc, unit="trial", dynamic_ncols=True)
        bar = holder["bar"]
        if outcome is not None:
            bar.update(1)
        failed = stats.failed + stats.kept_failed
        bar.set_postfix(done=stats.kept + stats.ran - failed, failed=failed, refresh=True)

    def close() -> None:
        if "bar" in holder:
            holder["bar"].close()

    return update, close
