"""Everything a sweep leaves in its run folder besides the study: tables, the Pareto set, figures.

Data step, then render step: the frames come from dse.explore.pareto, the figures only draw them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from dse.config.schemas import FigureOthers
from dse.explore.labels import sensitivity_subtitle
from dse.explore.latex import latex_table
from dse.explore.pareto import ERROR_LOW, SPREAD, distinct, near_front, pareto_front, sensitivity, usable
from dse.explore.records import write_table
from dse.explore.repeats import per_configuration
from dse.explore.space import REPEAT, SearchSpace
from dse.files import atomic_write

log = logging.getLogger(__name__)
# the series a curve is split by, in order of preference: the "one line per strategy or neuron model"
CATEGORICAL_FIRST = ("strategy.name", "hardware.neuron.model", "tuning.mode")


@dataclass(frozen=True)
class Figure:
    x: str
    y: tuple[str, ...]
    by: str | None
    others: FigureOthers
    name: str
    held: tuple[tuple[str, Any], ...] = ()  # (path, value): held there instead of at the preset's value


def default_figures(space: SearchSpace, error: str, grid: bool) -> list[Figure]:
    """One sensitivity figure per swept number: the error (and the logit error) against it, one line per swept
    category (strategy, neuron model, tuning) if there is one, else per value of the next swept number
    (error against weight bits, one line per I/O precision). (`runner.with_cost_panel` adds the energy.)"""
    numeric = [p for p, values in space.params.items()
               if all(_is_number(v) for v in values) and len(values) > 1 and p != REPEAT]
    categories = [p for p in CATEGORICAL_FIRST if p in space.params]
    categories += [p for p in space.params if p not in numeric and p not in categories and p != REPEAT]
    # the logit error moves smoothly where top-1 accuracy (one test image per step) is flat or noisy
    # (the agreement next to it where there are no labels to measure accuracy with)
    y = {"accuracy_delta_pp": (error, "logits_rel_error"),
         "logits_rel_error": (error, "agreement")}.get(error, (error,))
    figures = []
    for i, x in enumerate(numeric):
        others_numeric = numeric[i + 1:] + numeric[:i]
        by = categories[0] if categories else (others_numeric[0] if others_numeric else None)
        figures.append(Figure(x, y, by, "reference" if grid else "best", figure_name(x)))
    return figures


def figure_name(x: str) -> str:
    root, _, rest = x.partition(".")
    return "sensitivity_" + (rest if root == "hardware" and rest else x).replace(".", "_")


def write_outputs(run_dir: Path, trials: pd.DataFrame, space: SearchSpace, objectives: Sequence[str],
                  figures: Sequence[Figure], reference: Mapping[str, Any], *, title: str = "",
                  context: str = "") -> dict[str, Any]:
    """Write trials.{parquet,csv}, pareto.{csv,tex} and the figures; return the Pareto frame and the paths.
    `context`: the network, chip and fixed settings, each figure's first subtitle line. With study.repeats
    (`REPEAT` searched) the Pareto set and its figure are per configuration, its seeds' mean and spread, and
    configurations.csv holds every configuration's summary (`repeats.per_configuration`)."""
    files = write_table(trials, run_dir / "trials")
    points, params, repeats = trials, list(space.params), len(space.params.get(REPEAT, ()))
    if repeats:  # a reader compares configurations, not seeds
        params = [p for p in space.params if p != REPEAT]
        points = per_configuration(trials, [p for p in space.columns if p != REPEAT])
        atomic_write(run_dir / "configurations.csv", lambda p: points.to_csv(p, index=False))
        files.append(run_dir / "configurations.csv")
    else:  # a design NSGA-II evaluated twice is one row of the Pareto set
        points = distinct(trials, space.columns)
    front = pareto_front(points, objectives)
    atomic_write(run_dir / "pareto.csv", lambda p: front.to_csv(p, index=False))
    files.append(run_dir / "pareto.csv")
    table_cols = [*params, *objectives]
    if repeats:
        table_cols.insert(len(params) + 1, f"{objectives[0]}_std")
    # the compiled accuracy, or its agreement with the original where the test data has no labels
    extra = "accuracy_compiled" if trials["accuracy_compiled"].notna().any() else "agreement"
    if extra not in table_cols:
        table_cols.append(extra)
    what = (f"configurations, each the mean over {repeats} tuning seeds (s.d.: their standard deviation)"
            if repeats else "legal trials")
    caption = (f"Pareto set of {title or 'the sweep'}: non-dominated {what} ({', '.join(objectives)}, "
               "all minimized).")
    tex = latex_table(front, table_cols, caption=caption, ref="tab:pareto",
                      tied=space.tied)
    atomic_write(run_dir / "pareto.tex", lambda p: Path(p).write_text(tex))
    files.append(run_dir / "pareto.tex")
    for resource in objectives[1:]:
        pair = [objectives[0], resource]
        name = "pareto_front" if len(objectives) == 2 else f"pareto_front_{resource}"
        files += _pareto_figure(run_dir / name, points, pair, space, params, context, repeats)
    files += render_figures(run_dir, trials, space, figures, reference, context)
    return {"pareto": front, "files": files}


def _pareto_figure(path: Path, points: pd.DataFrame, pair: list[str], space: SearchSpace, params: list[str],
                   context: str, repeats: int) -> list[Path]:
    """The error-resource Pareto figure, each point with the bars of its error (``<error>_low``, ``_high``):
    +/-1 s.d. over the tuning seeds with study.repeats, else the loss's 95 % interval, the noise the marks of
    a win within noise refer to."""
    from dse.explore.plots import plot_pareto

    error, categories = pair[0], [p for p in CATEGORICAL_FIRST if p in space.params]
    interval = "the loss's 95% interval (paired bootstrap over the test images)"
    low = ERROR_LOW.get(error)
    if repeats:
        points = points.assign(**{f"{error}_low": points[error] - points[f"{error}_std"],
                                  f"{error}_high": points[error] + points[f"{error}_std"]})
        noise = " or ".join(n for n in (interval if low else "", f"1 s.d. over the {repeats} tuning seeds") if n)
        context += f"\npoints: configurations, mean over {repeats} tuning seeds; bars: ±1 s.d. over them"
    elif low in points and points[low].notna().any():
        points = points.assign(**{f"{error}_low": points[low], f"{error}_high": points[low.replace("_low", "_high")]})
        noise, context = "", context + f"\nbars, and the noise of the marks: {interval}"
    else:
        noise = ""
    return plot_pareto(usable(points, pair), pareto_front(points, pair), error=error, resource=pair[1],
                       by=categories[0] if categories else None, path=path, params=params, tied=space.tied,
                       title=context, near=near_front(points, pair), noise=noise)


def render_figures(run_dir: Path, trials: pd.DataFrame, space: SearchSpace, figures: Sequence[Figure],
                   reference: Mapping[str, Any], context: str = "") -> list[Path]:
    """The sensitivity figures and their data (<name>.csv)."""
    from dse.explore.plots import plot_sensitivity

    files: list[Path] = []
    repeat = REPEAT if REPEAT in space.params else None
    for fig in figures:
        point = {**reference, **dict(fig.held)}
        data = sensitivity(trials, x=fig.x, y=fig.y, by=fig.by, swept=list(space.params), reference=point,
                           others=fig.others, repeat=repeat)
        held = [p for p in space.params if p not in (fig.x, fig.by, repeat)]
        subtitle = sensitivity_subtitle(context, held, point, fig.others, _bars(data, fig.y, space),
                                        space.tied)
        if data.empty:
            log.warning("figure %s: no usable trial to draw", fig.name)
        atomic_write(run_dir / f"{fig.name}.csv", lambda p, d=data: d.to_csv(p, index=False))
        files.append(run_dir / f"{fig.name}.csv")
        files += plot_sensitivity(data, x=fig.x, y=fig.y, by=fig.by, path=run_dir / fig.name, tied=space.tied,
                                  title=subtitle)
    return files


def _bars(data: pd.DataFrame, y: Sequence[str], space: SearchSpace) -> str:
    """What a sensitivity figure's bars are, as its caption says it."""
    if REPEAT in space.params:
        return f"points: mean over {len(space.params[REPEAT])} tuning seeds; bars: ±1 s.d. over them"
    drawn = [c for c in y if f"{c}_low" in data.columns]
    parts = ["bars: 95% interval of the loss (paired bootstrap over the test images)"
             ] if any(c not in SPREAD for c in drawn) else []
    if any(c in SPREAD for c in drawn):
        parts.append("mean over the drawn chips with ±1 s.d. bars")
    return "; ".join(parts)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
