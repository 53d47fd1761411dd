"""A short score table for the console, from a run's flat metrics.

``geoclim-train`` prints it at the end of each job and ``geoclim-eval`` after scoring, so a
run ends with the numbers a researcher looks at first: per target, the lead-mean RMSE and
the MSE skill against persistence and climatology, each with its bootstrap interval when
the run computed one, and the RMSE at the first and the last lead time.

The input is the ``{"<split>/<metric>/<var>[/lead_<k>]": value}`` mapping of
:func:`geoclim.evaluation.score.metrics_summary` (what ``metrics.json`` holds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

#: (metric, column title) of the table, in order; each metric is its lead mean.
COLUMNS = (
    ("rmse", "RMSE"),
    ("skill_persistence", "skill vs persistence"),
    ("skill_climatology", "skill vs climatology"),
)


def targets(metrics: Mapping[str, float], split: str = "test") -> list[str]:
    """The target variables that have a lead-mean RMSE on ``split``, sorted."""
    pattern = re.compile(rf"^{re.escape(split)}/rmse/([^/]+)$")
    return sorted(m.group(1) for key in metrics if (m := pattern.match(key)))


def _number(value: float | None, fmt: str = "#.4g") -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return format(value, fmt)


def _cell(metrics: Mapping[str, float], split: str, metric: str, var: str) -> str:
    """``value`` or ``value [lo, hi]`` when both interval bounds are present."""
    fmt = ".3f" if metric.startswith("skill") else "#.4g"  # skills are near [-1, 1]
    value = metrics.get(f"{split}/{metric}/{var}")
    lo = metrics.get(f"{split}/{metric}_ci_lower/{var}")
    hi = metrics.get(f"{split}/{metric}_ci_upper/{var}")
    text = _number(value, fmt)
    if value is not None and lo is not None and hi is not None:
        text += f" [{_number(lo, fmt)}, {_number(hi, fmt)}]"
    return text


def _lead_range(metrics: Mapping[str, float], split: str, var: str) -> tuple[str, str]:
    """Header and cell of the RMSE at the first and the last lead (``-`` when absent)."""
    prefix = f"{split}/rmse/{var}/lead_"
    leads = sorted(int(k[len(prefix) :]) for k in metrics if k.startswith(prefix))
    if not leads:
        return "RMSE first -> last lead", "-"
    first, last = leads[0], leads[-1]
    cell = f"{_number(metrics[prefix + str(first)])} -> {_number(metrics[prefix + str(last)])}"
    return f"RMSE lead {first} -> {last}", cell


def score_table(metrics: Mapping[str, float], split: str = "test", title: str = "") -> str:
    """The console table of ``split``'s scores, one row per target.

    Args:
        metrics: flat metrics as written to ``metrics.json``.
        split: the split whose scores are shown (``test``, ``val``, ``train``).
        title: what scored (a model name, a run directory); shown in the heading.

    Returns:
        The table as text (no trailing newline); a one-line note when ``metrics`` holds no
        ``<split>/rmse/<var>`` score.

    """
    heading = f"{split} scores" + (f" of {title}" if title else "")
    names = targets(metrics, split)
    if not names:
        return f"{heading}: none (no {split}/rmse/<target> in the metrics)"
    rows = []
    for var in names:
        lead_header, lead_cell = _lead_range(metrics, split, var)
        cells = [_cell(metrics, split, metric, var) for metric, _ in COLUMNS]
        rows.append([var, *cells, lead_cell])
    header = ["target", *(name for _, name in COLUMNS), lead_header]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    has_ci = any(f"{split}/rmse_ci_lower/{v}" in metrics for v in names)
    note = "lead-mean scores" + (", [bootstrap interval]" if has_ci else "")
    note += "; skill = 1 - MSE / MSE of the reference (> 0 beats it)"
    return "\n".join(
        [f"{heading} ({note})", line(header), line(["-" * w for w in widths])]
        + [line(r) for r in rows]
    )
