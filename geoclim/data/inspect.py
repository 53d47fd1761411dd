"""``geoclim inspect``: how geoclim reads a file, and a data / task config to train on it.

:func:`inspect_dataset` runs the loader's own decisions (:func:`geoclim.data.canonical.
canonicalise`) without stopping at the first problem, and adds what a researcher checks
first: layout, time step and calendar, missing values per variable, and what must be
declared. :func:`suggest_configs` turns that into a ``data`` and a ``task`` YAML which
:func:`write_configs` writes atomically, in the layout of Hydra groups, so that
``geoclim-train hydra.searchpath=[file://DIR] data=NAME task=NAME`` trains on the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from geoclim import fileio
from geoclim.data import calendar, canonical, samples, sources, summary, variables
from geoclim.types import TIME

# input steps, horizon and calendar features suggested per kind of step
_TASK_BY_STEP = {
    "sub-daily": (24, 24, ("hour_sin", "hour_cos", "dow_sin", "dow_cos")),
    "daily": (14, 7, ("dow_sin", "dow_cos", "doy_sin", "doy_cos")),
    "monthly": (12, 3, ("doy_sin", "doy_cos")),
    "other": (12, 6, ()),
}


@dataclass
class Inspection:
    """What :func:`inspect_dataset` found.

    Attributes:
        name: the file path or sample name.
        report: the loader's decisions (layout, variable rows, problems).
        n_time: number of time steps.
        span: first and last time, as text.
        step: the time step, as text (``1 h``, ``1 month (28-31 days)``, ``irregular ...``).
        step_kind: ``sub-daily``, ``daily``, ``monthly`` or ``other``.
        calendar: the time axis's calendar.
        space: stations or grid cells, as text.
        missing_pct: per kept variable, percentage of NaN values.
        path: the file (``None`` for an embedded sample).

    """

    name: str
    report: canonical.LoadReport
    n_time: int = 0
    span: tuple[str, str] = ("", "")
    step: str = ""
    step_kind: str = "other"
    calendar: str = ""
    space: str = ""
    missing_pct: dict[str, float] = field(default_factory=dict)
    static: list[str] = field(default_factory=list)
    path: Path | None = None


def inspect_dataset(target: str | os.PathLike) -> Inspection:
    """Inspect a netCDF / zarr path or an embedded sample name (:func:`samples.available`).

    Raises:
        SchemaError: for a path that does not exist and is no sample name ("no such file"),
            or a file whose layout cannot be read at all.

    """
    path: Path | None = Path(target)
    assert path is not None
    if not path.exists() and str(target) in samples.available():
        raw = samples.load(str(target))
        ds, report = canonical.canonicalise(raw, source=f"sample {target!r}")
        path = None
    else:
        ds, report = sources.read(path)
    out = Inspection(str(target), report, path=path.resolve() if path else None)
    times = ds[TIME].values
    out.n_time = len(times)
    out.span = (_stamp(times[0]), _stamp(times[-1])) if len(times) else ("", "")
    out.step, out.step_kind = describe_step(times)
    out.calendar = _calendar(ds)
    if report.layout is not None and report.layout.layout == "station":
        out.space = f"{ds.sizes['station']} station(s)"
    else:
        out.space = f"{ds.sizes['latitude']} x {ds.sizes['longitude']} cells"
    covered = summary.describe(ds)["variables"]  # covered grid cells only, where known
    for name, da in ds.data_vars.items():
        name = str(name)
        if da.dtype == bool:
            continue
        if name in covered:
            out.missing_pct[name] = covered[name]["missing_pct"]
        else:
            out.missing_pct[name] = 100.0 * float(da.isnull().mean())
        if TIME not in da.dims and variables.describe(name).kind != "ancillary":
            out.static.append(name)
    return out


def describe_step(times: np.ndarray) -> tuple[str, str]:
    """The time step as text and its kind (``sub-daily``, ``daily``, ``monthly``, ``other``)."""
    if len(times) < 2:
        return f"{len(times)} time step(s): no step", "other"
    steps = pd.to_timedelta(pd.Series(np.diff(times)).astype("timedelta64[ns]"))
    lo, hi = steps.min(), steps.max()
    day = pd.Timedelta(days=1)
    if lo == hi:
        kind = "sub-daily" if lo < day else "daily" if lo == day else "other"
        if pd.Timedelta(days=360) <= lo <= pd.Timedelta(days=366):
            kind = "other"
        return _format(lo), kind
    if pd.Timedelta(days=28) <= lo and hi <= pd.Timedelta(days=31):
        return f"1 month ({lo.days}-{hi.days} days)", "monthly"
    if pd.Timedelta(days=365) <= lo and hi <= pd.Timedelta(days=366):
        return f"1 year ({lo.days}-{hi.days} days)", "other"
    return f"irregular ({_format(lo)} to {_format(hi)})", "other"


def _stamp(t) -> str:
    return str(pd.Timestamp(t)) if isinstance(t, np.datetime64) else str(t)


def _format(step: pd.Timedelta) -> str:
    for unit, size in (("d", pd.Timedelta(days=1)), ("h", pd.Timedelta(hours=1))):
        if step % size == pd.Timedelta(0):
            return f"{step // size} {unit}"
    return str(step)


def _calendar(ds: xr.Dataset) -> str:
    first = ds[TIME].values[0] if ds.sizes[TIME] else None
    if getattr(first, "calendar", None):
        return str(getattr(first, "calendar"))  # noqa: B009 -- cftime dates only
    return str(ds[TIME].encoding.get("calendar", "proleptic_gregorian (numpy datetime64)"))


def format_inspection(ins: Inspection) -> str:
    """A readable account of ``ins``: layout, time, variables, what to declare."""
    rep = ins.report
    assert rep.layout is not None
    found = ", ".join(f"{k} <- {v}" for k, v in rep.layout.found.items())
    lines = [
        ins.name if ins.path is not None else f"{ins.name} (embedded sample)",
        f"  layout    {rep.layout.layout}, {ins.space}"
        + "".join(f"; {n}" for n in rep.layout.notes),
        f"  coords    {found}",
        f"  time      {ins.n_time} steps of {ins.step} from {ins.span[0]} to {ins.span[1]}, "
        f"calendar {ins.calendar}",
        f"  {'variable':<18} {'action':<10} {'units':<12} {'missing %':>9}  detail",
    ]
    for r in rep.rows:
        name = r.name if r.name == r.source_name else f"{r.name} <- {r.source_name}"
        miss = f"{ins.missing_pct[r.name]:9.2f}" if r.name in ins.missing_pct else " " * 9
        lines.append(f"  {name:<18} {r.action:<10} {r.units:<12} {miss}  {r.detail}".rstrip())
    if rep.problems:
        lines.append("  must declare / fix:")
        lines += [f"    - {p}" for p in rep.problems]
    else:
        lines.append("  nothing to declare")
    return "\n".join(lines)


def suggest_configs(ins: Inspection) -> dict[str, str]:
    """``{"data": yaml, "task": yaml}`` to train on the inspected file or sample."""
    rep = ins.report
    dynamic = [
        n
        for n in ins.missing_pct
        if n not in ins.static and variables.describe(n).kind != "ancillary"
    ]
    undeclared = [r.name for r in rep.rows if r.detail == "no units (see problems)"]
    if ins.path is None:
        data: dict = {"defaults": [{"source": "sample"}, "_self_"], "source": {"name": ins.name}}
    else:
        data = {"defaults": [{"source": "file"}, "_self_"], "source": {"path": str(ins.path)}}
    data.update(
        {
            "_target_": "geoclim.data.datamodule.GeoDataModule",
            "variables": {n: {"units": "???", "long_name": n} for n in undeclared},
            "window": {"stride": None, "patch": 1},
            "splits": {"fractions": [0.7, 0.15, 0.15]},
            "batch_size": None,
            "num_workers": 0,
            "seed": "${seed}",
        }
    )
    targets = dynamic[:1] or undeclared[:1] or ["???"]
    input_steps, horizon, features = _TASK_BY_STEP[ins.step_kind]
    task = {
        "targets": targets,
        "past_inputs": [n for n in dynamic + undeclared if n not in targets],
        "future_inputs": [f for f in features if f in calendar.FEATURES],
        "static_inputs": list(ins.static),
        "input_steps": input_steps,
        "horizon": horizon,
        "quantiles": [],
    }
    head = f"# Suggested by `geoclim inspect {ins.name}`: check it, then edit freely.\n"
    note = (
        "# Units marked ??? must be declared (the file has none): replace them, or drop the\n"
        "# variable with source.drop: [name].\n"
        if undeclared
        else ""
    )
    return {
        "data": head + note + yaml.safe_dump(data, sort_keys=False, default_flow_style=None),
        "task": head + yaml.safe_dump(task, sort_keys=False, default_flow_style=None),
    }


def config_name(ins: Inspection) -> str:
    """The option name the written configs get (the file's stem or the sample name)."""
    stem = ins.path.name.split(".")[0] if ins.path is not None else ins.name
    return "".join(c if c.isalnum() or c in "_-" else "_" for c in stem) or "mydata"


def write_configs(ins: Inspection, directory: str | os.PathLike) -> list[Path]:
    """Write ``DIR/data/NAME.yaml`` and ``DIR/task/NAME.yaml`` atomically; return the paths."""
    name, out = config_name(ins), []
    for group, text in suggest_configs(ins).items():
        out.append(fileio.write_text(Path(directory) / group / f"{name}.yaml", text))
    return out
