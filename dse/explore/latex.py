"""The Pareto set as a LaTeX table (booktabs), ready to \\input into a paper."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from dse.explore.labels import label

_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
            "²": r"\textsuperscript{2}", "µ": r"\textmu{}"}


def escape(text: str) -> str:
    return "".join(_ESCAPES.get(c, c) for c in text)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "--"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else f"{value:.2f}"
    return escape(str(value))


def latex_table(frame: pd.DataFrame, columns: Sequence[str], *, caption: str, ref: str,
                tied: dict[str, str] | None = None) -> str:
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c]) for c in columns]
    spec = "".join("r" if n else "l" for n in numeric)
    lines = [
        r"% written by dse.sweep; needs \usepackage{booktabs}",
        r"\begin{table}[t]",
        r"  \centering",
        rf"  \caption{{{escape(caption)}}}",
        rf"  \label{{{ref}}}",
        r"  \small",
        rf"  \begin{{tabular}}{{{spec}}}",
        r"    \toprule",
        "    " + " & ".join(escape(label(c, tied)) for c in columns) + r" \\",
        r"    \midrule",
    ]
    for _, row in frame.iterrows():
        lines.append("    " + " & ".join(_cell(row[c]) for c in columns) + r" \\")
    if frame.empty:
        lines.append(rf"    \multicolumn{{{len(columns)}}}{{c}}{{no legal trial}} \\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)
