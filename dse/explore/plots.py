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

from dse.explore.labels import label  # noqa: E402

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


def _save(fig: plt.Figure, path_without_suffix: Path) -> list[Path]:
    out = []
    for suffix in (".png", ".pdf"):
        path = path_without_suffix.with_suffix(suffix)
        fig.savefig(path)
        out.append(path)
    plt.close(fig)
    return out


def plot_sensitivity(data: pd.DataFrame, *, x: str, y: Sequence[str], by: str | None, path: Path,
                     title: str = "", tied: dict[str, str] | None = None) -> list[Path]:
    """`data` from pareto.sensitivity: one panel per y, one line per value of `by`."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(y), 1, figsize=(COLUMN_WIDTH_IN, PANEL_HEIGHT_IN * len(y)), sharex=True,
                                 squeeze=False)
        styles = series_styles(list(data[by].unique()) if by and not data.empty else [None])
        groups = list(styles)
        for ax, col in zip(axes[:, 0], y, strict=True):
            for g in groups:
                part = data if g is None or by is None else data[data[by].map(lambda v, g=g: v == g)]
                colour, marker = styles[g]
                ax.plot(part[x].astype(float), part[col].astype(float), marker=marker, color=colour,
                        label=_fmt(g) if by else None)
            if col == "accuracy_delta_pp":
                ax.axhline(0.0, color="0.5", lw=0.6, ls="--", zorder=0)
            ys = pd.to_numeric(data[col], errors="coerce").dropna()
            if col in RESOURCE_COUNTS and len(ys) and ys.min() > 0 and ys.max() / ys.min() > 8:
                _log_axis(ax.yaxis, ys.min(), ys.max())
            ax.set_ylabel(label(col))
            _x_axis(ax, data[x].tolist(), x)
        axes[-1, 0].set_xlabel(label(x, tied))
        if by and len(groups) > 1:
            axes[0, 0].legend(title=label(by, tied), loc="best")
        if title:
            axes[0, 0].set_title(title)
        return _save(fig, path)


def plot_pareto(points: pd.DataFrame, front: pd.DataFrame, *, error: str, resource: str, by: str | None,
                path: Path, title: str = "") -> list[Path]:
    """Every usable trial (by series) and the Pareto front (the staircase of non-dominated trials)."""
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, PANEL_HEIGHT_IN + 0.2))
        styles = series_styles(list(points[by].unique()) if by and not points.empty else [None])
        groups = list(styles)
        for g in groups:
            part = points if g is None or by is None else points[points[by].map(lambda v, g=g: v == g)]
            colour, marker = styles[g]
            ax.scatter(part[resource].astype(float), part[error].astype(float), s=14, color=colour, marker=marker,
                       alpha=0.55, linewidths=0, label=(f"{label(by)}: {_fmt(g)}" if by else "legal trials"))
        if not front.empty:
            f = front.sort_values(resource)
            ax.step(f[resource].astype(float), f[error].astype(float), where="post", color="black", lw=1.0,
                    zorder=3)
            ax.scatter(f[resource].astype(float), f[error].astype(float), s=22, facecolors="none",
                       edgecolors="black", linewidths=0.9, zorder=4, label="Pareto front")
        values = points[resource].astype(float) if not points.empty else pd.Series(dtype=float)
        if len(values) and values.min() > 0 and values.max() / values.min() > 8:
            _log_axis(ax.xaxis, values.min(), values.max())
        if error == "accuracy_delta_pp":
            ax.axhline(0.0, color="0.5", lw=0.6, ls="--", zorder=0)
        ax.set_xlabel(label(resource))
        ax.set_ylabel(label(error))
        ax.legend(loc="best")
        if title:
            ax.set_title(title)
        return _save(fig, path)
