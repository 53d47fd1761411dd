"""How a leaderboard is shown: compact columns, intervals, and table / markdown / csv text.

:func:`render` turns the DataFrame of :func:`geoclim.evaluation.leaderboard.leaderboard`
into text: ``csv`` keeps every column; ``table`` and ``markdown`` show a compact copy
(:func:`compact`: a few per-lead columns, short names, ``value [lower, upper]`` for columns
with confidence bounds).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from geoclim.errors import DataError
from geoclim.evaluation.leaderboard import BOUNDS

FORMATS = ("table", "markdown", "csv")
_ABBREV = (
    ("skill_persistence", "skill_pers"),
    ("skill_climatology", "skill_clim"),
    ("rmse_diff_best", "rmse_diff"),
    ("dm_pvalue_best", "dm_p"),
    ("/lead_", "@"),
)


def compact(
    df: pd.DataFrame, *, max_leads: int = 4, lead: int | None = None, params_width: int = 48
) -> pd.DataFrame:
    """A narrower copy for reading: a few per-lead columns, short names and params.

    Keeps the per-lead columns of ``lead`` if given, else at most ``max_leads`` evenly
    spaced leads (first and last included).
    """
    key = df.attrs.get("sort_column")
    lead_cols = [c for c in df.columns if "/lead_" in c and c != key]
    leads = sorted({int(c.rsplit("_", 1)[1]) for c in lead_cols})
    if lead is not None:
        keep = {lead}
    elif len(leads) > max_leads:
        keep = {leads[int(round(i))] for i in np.linspace(0, len(leads) - 1, max_leads)}
    else:
        keep = set(leads)
    out = df.drop(columns=[c for c in lead_cols if int(c.rsplit("_", 1)[1]) not in keep])
    out["params"] = [
        p if len(p) <= params_width else p[: params_width - 3] + "..." for p in out["params"]
    ]
    out = with_intervals(out)
    renamed = {}
    for col in out.columns:
        short = col
        for long, abbrev in _ABBREV:
            short = short.replace(long, abbrev)
        renamed[col] = short
    return out.rename(columns=renamed)


def bound_column(column: str, bound: str) -> str:
    """``rmse/no2/lead_3`` -> ``rmse_ci_lower/no2/lead_3`` (``bound`` in :data:`BOUNDS`)."""
    head, sep, tail = column.partition("/")
    return f"{head}_{bound}{sep}{tail}"


def with_intervals(df: pd.DataFrame) -> pd.DataFrame:
    """Columns with bounds become ``value [lower, upper]`` strings; bound columns go."""
    out = df.copy()
    for col in list(out.columns):
        lo, hi = bound_column(col, BOUNDS[0]), bound_column(col, BOUNDS[1])
        if lo not in out.columns or hi not in out.columns:
            continue
        out[col] = [
            _fmt(v) if math.isnan(a) or math.isnan(b) else f"{_fmt(v)} [{a:.3g}, {b:.3g}]"
            for v, a, b in zip(out[col], out[lo].astype(float), out[hi].astype(float), strict=True)
        ]
        out = out.drop(columns=[lo, hi])
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _cells(df: pd.DataFrame) -> list[list[str]]:
    return [[_fmt(v) for v in row] for row in df.itertuples(index=False)]


def to_table(df: pd.DataFrame) -> str:
    """Aligned plain-text table (numbers right-aligned)."""
    header = [str(c) for c in df.columns]
    body = _cells(df)
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)
    ]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def to_markdown(df: pd.DataFrame) -> str:
    """GitHub-flavoured markdown table."""
    header = [str(c) for c in df.columns]
    numeric = [pd.api.types.is_numeric_dtype(df[c]) for c in df.columns]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if n else ":---" for n in numeric) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in _cells(df)]
    return "\n".join(lines)


def render(df: pd.DataFrame, fmt: str = "table", *, lead: int | None = None) -> str:
    """The leaderboard as ``table`` / ``markdown`` (compact) or ``csv`` (every column)."""
    if fmt not in FORMATS:
        raise DataError(f"unknown format {fmt!r}; valid formats are {list(FORMATS)}")
    if fmt == "csv":
        return df.to_csv(index=False, float_format="%.6g")
    small = compact(df, lead=lead)
    text = to_table(small) if fmt == "table" else to_markdown(small)
    step = df.attrs.get("lead_step")
    if step and any("@" in str(c) for c in small.columns):
        sep = "\n" if fmt == "table" else "\n\n"
        text += f"{sep}@k: lead k, in steps of {step}"
    return text
