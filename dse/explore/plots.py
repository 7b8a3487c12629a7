"""Paper-ready figures, drawn from data that dse.explore.pareto computed (this module computes nothing).

One column wide (3.5 in), 8 pt text, labelled axes with units, colour-blind-safe colours (Okabe-Ito) that
mean the same in every figure (split is always blue, prune always vermillion), a marker per series so the
figures survive black-and-white printing, and vector PDF with embedded TrueType fonts next to a 300 dpi PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a window: sweeps run on servers and Ray workers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402

from dse.explore.labels import configuration, label, merge_names, naming_key, scaled  # noqa: E402
from dse.files import atomic_write  # noqa: E402

COLUMN_WIDTH_IN = 3.5
PANEL_HEIGHT_IN = 2.3
STYLE = {
    "font.size": 8, "axes.labelsize": 8, "axes.titlesize": 8, "legend.fontsize": 7, "legend.title_fontsize": 7,
    "xtick.labelsize": 7, "ytick.labelsize": 7, "lines.linewidth": 1.3, "lines.markersize": 4.5,
    "axes.grid": True, "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.spines.top": False,
    "axes.spines.right": False, "pdf.fonttype": 42, "ps.fonttype": 42, "savefig.dpi": 300,
    "figure.constrained_layout.use": True, "legend.frameon": False,
}
# Okabe & Ito (2008), colour-blind safe
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]
# counts that span orders of magnitude across a sweep: drawn on a log axis when they do
RESOURCE_COUNTS = ("crossbars", "cells_used", "neurons", "synapses", "core_ops", "chips")
# accuracy losses, drawn with the no-loss line
LOSSES = ("accuracy_delta_pp", "device.accuracy_delta_pp_mean", "device.accuracy_delta_pp_p95")
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
# categories that mean the same thing in every figure keep one colour everywhere
FIXED = {"split": 0, "prune": 1, "multiphase": 0, "none": 1, "relu": 0, "if": 2, "lif": 3, "if_floor": 4}
def series_styles(values: Sequence[Any]) -> dict[Any, tuple[str, str]]:
    """(colour, marker) per series value: fixed for known categories, by sorted rank for the others."""
    ordered = sorted(set(values), key=lambda v: (v is None, isinstance(v, str), v if v is not None else 0))
    index = {v: FIXED[v] for v in ordered if isinstance(v, str) and v in FIXED}
    free = [i for i in range(len(PALETTE)) if i not in index.values()] or list(range(len(PALETTE)))
    for k, v in enumerate(v for v in ordered if v not in index):
        index[v] = free[k % len(free)]
    order = sorted(index, key=lambda v: (index[v] if isinstance(v, str) and v in FIXED else len(PALETTE),
                                         ordered.index(v)))
    return {v: (PALETTE[index[v]], MARKERS[index[v] % len(MARKERS)]) for v in order}  # in legend order


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "float"  # an unconstrained value (None) is a float one
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _x_axis(ax: plt.Axes, values: Sequence[Any], column: str) -> None:
    """Ticks at the swept values; a log2 axis when sizes span a wide range (crossbars of 32 to 256), a linear
    one for precisions (bits read as a linear scale)."""
    nums = sorted({float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
    if not nums:
        return
    if nums[0] > 0 and nums[-1] / nums[0] >= 4 and not column.endswith("bits"):
        ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(nums))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt(v)))


def _log_axis(axis: Any, lo: float, hi: float) -> None:
    """A log2 axis labelled with plain numbers at powers of two (counts read better than 2^k or 10^k)."""
    axis.axes.set_xscale("log", base=2) if axis is axis.axes.xaxis else axis.axes.set_yscale("log", base=2)
    ticks = [2.0**k for k in range(int(np.floor(np.log2(lo))), int(np.ceil(np.log2(hi))) + 1)]
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


def _physical_log_axis(axis: Any, lo: float, hi: float) -> None:
    """A log10 axis for a physical quantity that spans a wide range, ticks at 1, 2 and 5 times a power of ten."""
    axis.axes.set_xscale("log") if axis is axis.axes.xaxis else axis.axes.set_yscale("log")
    ticks = [m * 10.0**k for k in range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
             for m in (1, 2, 5)]
    axis.set_major_locator(FixedLocator([t for t in ticks if lo / 2 <= t <= hi * 2]))
    axis.set_minor_locator(NullLocator())
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))


# no creation date in the PDF: the same figure is the same file, so a redrawn study changes only what moved
METADATA = {".png": None, ".pdf": {"CreationDate": None}}


def _save(fig: plt.Figure, path_without_suffix: Path) -> list[Path]:
    out = []
    for suffix, metadata in METADATA.items():
        path = path_without_suffix.with_suffix(suffix)
        out.append(atomic_write(path, lambda p, f=suffix[1:], m=metadata: fig.savefig(p, format=f, metadata=m)))
    plt.close(fig)
    return out


def plot_sensitivity(data: pd.DataFrame, *, x: str, y: Sequence[str], by: str | None, path: Path,
                     title: str = "", tied: dict[str, str] | None = None) -> list[Path]:
    """`data` from pareto.sensitivity: one panel per y side by side (the error's, then the cost's), one line per
    value of `by`, each series nudged sideways so that equal values do not hide each other, with its bars
    (``<y>_low``, ``<y>_high``) where `data` has them; a physical quantity in the unit its values read best in.
    `title`: the subtitle saying what is held fixed (`labels.sensitivity_subtitle`)."""
    with plt.rc_context(STYLE):
        width = COLUMN_WIDTH_IN if len(y) == 1 else min(2 * COLUMN_WIDTH_IN + 0.2, 2.4 * len(y))
        fig, axes = plt.subplots(1, len(y), figsize=(width, PANEL_HEIGHT_IN + 0.12 * title.count("\n")),
                                 sharex=True, squeeze=False)
        styles = series_styles(list(data[by].unique()) if by and not data.empty else [None])
        groups = list(styles)
        nudge = _nudges(data[x].tolist(), x, len(groups))
        for ax, col in zip(axes[0], y, strict=True):
            ys = pd.to_numeric(data[col], errors="coerce").dropna()
            factor, ylabel = scaled(col, ys.tolist())
            for k, g in enumerate(groups):
                part = _series(data, by, g)
                colour, marker = styles[g]
                xs = nudge(part[x].astype(float), k)
                mid = part[col].astype(float) / factor
                bars = None
                if f"{col}_low" in part:
                    bars = [mid - part[f"{col}_low"].astype(float) / factor,
                            part[f"{col}_high"].astype(float) / factor - mid]
                ax.errorbar(xs, mid, yerr=bars, marker=marker, color=colour, capsize=2, elinewidth=0.7,
                            label=_fmt(g) if by else None)
            if col in LOSSES and not ys.empty:
                ax.axhline(0.0, color="0.5", lw=0.6, ls="--", zorder=0)
            if col in RESOURCE_COUNTS and len(ys) and ys.min() > 0 and ys.max() / ys.min() > 8:
                _log_axis(ax.yaxis, ys.min(), ys.max())
            elif factor != 1.0 and len(ys) and ys.min() > 0 and ys.max() / ys.min() > 8:
                _physical_log_axis(ax.yaxis, ys.min() / factor, ys.max() / factor)
            if ys.empty:
                _say_empty(ax, "no legal trial to plot" if data.empty else f"no trial has a value of {col}")
            # a label longer than the panel is tall would reach into the legend above: in two lines
            ax.set_ylabel(_two_lines(ylabel) if len(ylabel) > 26 else ylabel)
            _x_axis(ax, data[x].tolist(), x)
            ax.set_xlabel(label(x, tied))
        if by and len(groups) > 1:  # above the panels, clear of every curve
            handles, names = axes[0, 0].get_legend_handles_labels()
            fig.legend(handles, names, title=label(by, tied), loc="outside upper center", ncols=len(groups),
                       title_fontsize=7)
        _caption(fig, title, width)
        return _save(fig, path)


def _nudges(values: Sequence[Any], column: str, series: int):
    """f(xs, k): series k's x positions, moved sideways by a small step (a factor on a log axis) so that the
    markers and bars of series with equal values sit side by side; the middle series stays in place."""
    nums = sorted({float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)})
    log = len(nums) > 1 and nums[0] > 0 and nums[-1] / nums[0] >= 4 and not column.endswith("bits")
    gap = min((b - a for a, b in zip(nums, nums[1:], strict=False)), default=1.0)
    step = 0.15 if log else 0.1 * gap

    def nudge(xs: pd.Series, k: int) -> pd.Series:
        offset = (k - (series - 1) / 2) * step
        return xs * 2.0**offset if log else xs + offset

    return nudge


def _two_lines(text: str) -> str:
    """`text` broken at the space nearest its middle."""
    spaces = [i for i, c in enumerate(text) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - len(text) / 2), default=None)
    return text if cut is None else text[:cut] + "\n" + text[cut + 1:]


def _caption(fig: plt.Figure, text: str, width_in: float) -> None:
    """What the figure holds fixed and what its marks mean, in small grey type under the panels (the legend
    keeps the top)."""
    if text:
        fig.supxlabel(_wrap(text, width_in), fontsize=6, x=0.01, ha="left", color="0.25", linespacing=1.3)


def _wrap(text: str, width_in: float) -> str:
    """`text` in lines that fit a figure `width_in` wide at 6 pt (about 19 characters per inch)."""
    import textwrap

    return "\n".join(w for line in text.splitlines() for w in textwrap.wrap(line, int(width_in * 19)))


def plot_pareto(points: pd.DataFrame, front: pd.DataFrame, *, error: str, resource: str, by: str | None,
                path: Path, title: str = "", params: Sequence[str] = (), tied: dict[str, str] | None = None,
                near: pd.DataFrame | None = None, noise: str = "") -> list[Path]:
    """Every usable point (by series) and the Pareto front (the staircase of non-dominated points), each point of
    the front named by its configuration (its values of `params`); the resource in its physical unit. A point
    of the front is filled black (its series' marker shape); one that wins only within the noise
    (`pareto.noise`; `noise` says what it is) keeps its colour inside an open black ring, and the points
    `near` the front within that noise (`pareto.near_front`) get a grey diamond: three marks that differ in
    fill and shape, not only in line style, so they stay apart in print. A point carries bars where `points`
    has ``<error>_low`` and ``<error>_high``."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, PANEL_HEIGHT_IN + 0.6))
        values = points[resource].astype(float) if not points.empty else pd.Series(dtype=float)
        factor, xlabel = scaled(resource, values.tolist())
        styles = series_styles(list(points[by].unique()) if by and not points.empty else [None])
        _draw_points(ax, points, error, resource, factor, by, styles)
        if not front.empty:
            _mark_front(ax, front, error, resource, factor, by, styles)
        if near is not None and len(near):
            ax.scatter(near[resource].astype(float) / factor, near[error].astype(float), s=30, marker="D",
                       facecolors="none", edgecolors="0.45", linewidths=0.7, zorder=4,
                       label="as good within noise")
        if len(values) and values.min() > 0 and values.max() / values.min() > 8:
            if factor == 1.0 and resource in RESOURCE_COUNTS:
                _log_axis(ax.xaxis, values.min(), values.max())
            else:
                _physical_log_axis(ax.xaxis, values.min() / factor, values.max() / factor)
        if error == "accuracy_delta_pp" and not points.empty:
            ax.axhline(0.0, color="0.5", lw=0.6, ls="--", zorder=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(label(error))
        # above the axes, clear of every point, bar and name (inside, "best" still crossed bars); labels short
        # enough for two columns in one column's width (the markers say filled, ring or diamond)
        handles, names = ax.get_legend_handles_labels()
        if points.empty:
            _say_empty(ax, "no legal trial to plot")
        else:  # a legend of no point would name marks the figure does not hold
            fig.legend(handles, names, loc="outside upper center", ncols=2, fontsize=6)
        key = naming_key(params, tied, width=60) if params and not front.empty else ""
        noisy = (near is not None and len(near)) or ("wins_within_noise" in front and front["wins_within_noise"].any())
        notes = [title, f"point names: {key}" if key else "", f"noise: {noise}" if noisy and noise else ""]
        _caption(fig, "\n".join(t for t in notes if t), COLUMN_WIDTH_IN)
        if params and not front.empty:
            _name_front(ax, points, front, error, resource, factor, params, tied)
        return _save(fig, path)


def _say_empty(ax: plt.Axes, why: str) -> None:
    """A panel with no point to draw says so (its axes were matplotlib's default -0.05..0.05, as if measured)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, f"{why}\n(trials.csv: state, error_message)", transform=ax.transAxes, ha="center",
            va="center", fontsize=7, color="0.3")


def _series(frame: pd.DataFrame, by: str | None, g: Any) -> pd.DataFrame:
    """The rows of `frame` in series `g` of column `by` (all of them without series)."""
    return frame if g is None or by is None else frame[frame[by].map(lambda v: v == g)]


def _draw_points(ax: Any, points: pd.DataFrame, error: str, resource: str, factor: float, by: str | None,
                 styles: dict[Any, tuple[str, str]]) -> None:
    """Every point in its series' colour and marker, with its error bars where `points` has them."""
    for g, (colour, marker) in styles.items():
        part = _series(points, by, g)
        if f"{error}_low" in part:
            mid = part[error].astype(float)
            ax.errorbar(part[resource].astype(float) / factor, mid, fmt="none", ecolor=colour, elinewidth=0.6,
                        yerr=[mid - part[f"{error}_low"].astype(float), part[f"{error}_high"].astype(float) - mid],
                        capsize=1.5, alpha=0.6, zorder=2)
        ax.scatter(part[resource].astype(float) / factor, part[error].astype(float), s=14, color=colour,
                   marker=marker, alpha=0.55, linewidths=0,
                   label=(f"{label(by)}: {_fmt(g)}" if by else
                          "configurations" if f"{error}_std" in points else "legal trials"))


def _mark_front(ax: Any, front: pd.DataFrame, error: str, resource: str, factor: float, by: str | None,
                styles: dict[Any, tuple[str, str]]) -> None:
    """The front's staircase, its clear wins filled black in their series' marker, its wins within noise ringed."""
    f = front.sort_values(resource)
    ax.step(f[resource].astype(float) / factor, f[error].astype(float), where="post", color="black", lw=1.0,
            zorder=3)
    clear = ~f["wins_within_noise"].astype(bool) if "wins_within_noise" in f else np.ones(len(f), bool)
    named = False  # one legend entry, and none when every point of the front is a win within noise
    for g, (_, marker) in styles.items():
        part = _series(f[clear], by, g)
        if part.empty:
            continue
        ax.scatter(part[resource].astype(float) / factor, part[error].astype(float), s=20, color="black",
                   marker=marker, linewidths=0, zorder=4, label=None if named else "Pareto front, clear win")
        named = True
    lucky = f[~clear]
    if len(lucky):
        ax.scatter(lucky[resource].astype(float) / factor, lucky[error].astype(float), s=44,
                   facecolors="none", edgecolors="black", linewidths=0.9, zorder=4,
                   label="front, wins within noise")


def _name_front(ax: Any, points: pd.DataFrame, front: pd.DataFrame, error: str, resource: str, factor: float,
                params: Sequence[str], tied: dict[str, str] | None) -> None:
    """Each point of the front named by its configuration, clear of every point and of the staircase."""
    f = front.sort_values([resource, *params])
    names = pd.Series([configuration(r, params, tied) for _, r in f.iterrows()], index=f.index)
    # designs that tie in both objectives share one point and one name
    named = names.groupby([f[resource], f[error]], sort=False).agg(merge_names)
    drawn = np.column_stack([points[resource].astype(float) / factor, points[error].astype(float)])
    _name_points(ax, [x / factor for x, _ in named.index], [y for _, y in named.index], list(named),
                 avoid=np.concatenate([drawn, _staircase(f[resource].astype(float) / factor,
                                                         f[error].astype(float))]))


# where a point's name goes, in points from the point (dx, dy, horizontal, vertical alignment), tried in order:
# beside it, then farther off with a leader line
_NAME_SPOTS = [(6, 0, "left", "center"), (5, 4, "left", "bottom"), (5, -4, "left", "top"),
               (-6, 0, "right", "center"), (-5, 4, "right", "bottom"), (-5, -4, "right", "top"),
               *((dx, dy, "left" if dx > 0 else "right", "bottom" if dy > 0 else "top")
                 for r in (16, 28, 40) for dx, dy in ((r, r // 2), (r, -r // 2), (-r, r // 2), (-r, -r // 2))),
               *((4, dy, "left", "bottom" if dy > 0 else "top") for dy in (16, 28, 40, 52, -16, -28))]


def _staircase(xs: pd.Series, ys: pd.Series, samples: int = 24) -> np.ndarray:
    """Points along the Pareto staircase (ax.step, where="post"), so that names keep off it."""
    x, y = list(xs), list(ys)
    corners = [c for i in range(len(x)) for c in ((x[i], y[i]), (x[min(i + 1, len(x) - 1)], y[i]))]
    out = [np.linspace(a, b, samples) for a, b in zip(corners, corners[1:] + corners[-1:], strict=True)]
    return np.concatenate(out) if out else np.zeros((0, 2))


def _name_points(ax: plt.Axes, xs: Sequence[float], ys: Sequence[float], names: Sequence[str],
                 avoid: np.ndarray) -> None:
    """Write each name beside its point at the first spot where it overlaps nothing (a name already written,
    the legend, any of the data points `avoid`) and stays within the axes, else at the spot that overlaps
    least."""
    fig = ax.figure
    fig.canvas.draw()  # lay out the axes so the text's extent is known
    renderer = fig.canvas.get_renderer()
    taken = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() else []
    dots = ax.transData.transform(avoid) if len(avoid) else np.zeros((0, 2))
    frame = ax.get_window_extent(renderer)
    for x, y, name in zip(xs, ys, names, strict=True):
        best = None
        for dx, dy, ha, va in _NAME_SPOTS:
            # the name alone is measured (an annotation's extent would include its leader line)
            text = ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=6,
                               color="0.15", zorder=5)
            box = text.get_window_extent(renderer).expanded(1.05, 1.1)
            text.remove()
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            near = box.padded(3)  # a marker's radius, in pixels at the figure's dpi
            # covering another name (neither can be read) or leaving the frame is worse than covering points
            hits = 1000 * sum(box.overlaps(t) for t in taken) + int(near.count_contains(dots)) + (
                0 if inside else 500)
            if best is None or hits < best[0]:
                best = (hits, (dx, dy, ha, va), box)
            if hits == 0:
                break
        dx, dy, ha, va = best[1]
        leader = {"arrowstyle": "-", "color": "0.5", "lw": 0.5} if abs(dx) > 6 or abs(dy) > 8 else None
        ax.annotate(name, (x, y), xytext=(dx, dy), textcoords="offset points", ha=ha, va=va, fontsize=6,
                    color="0.15", zorder=5, arrowprops=leader)
        taken.append(best[2])
