"""Every model of ``conf/model/*.yaml``, so the shared tests iterate them without a list.

A new network or baseline is one model file plus its ``conf/model/<name>.yaml``; the model
tests, the training smoke runs and the export tests pick it up from here. Everything is
derived from the config: ``kind``, the class (``net._target_`` or ``_target_``), whether it
samples whole grids (``window.patch: null``), whether it is a tree baseline (exported with
its feature graph) and the overrides that make it fit in seconds.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

MODEL_CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
TREE_MODULE = "geoclim.baselines.trees"


@dataclass(frozen=True)
class ModelEntry:
    """One ``conf/model/<name>.yaml``."""

    name: str
    config: dict

    @property
    def kind(self) -> str:
        return str(self.config["kind"])

    @property
    def target(self) -> str:
        return str((self.config.get("net") or self.config)["_target_"])

    @property
    def spatial(self) -> bool:
        """Samples whole grids (``window.patch: null``) rather than points."""
        window = self.config.get("window") or {}
        return "patch" in window and window["patch"] is None

    @property
    def tree(self) -> bool:
        return self.target.rsplit(".", 1)[0] == TREE_MODULE

    @property
    def exportable(self) -> bool:
        """geoclim-export exports networks and tree baselines."""
        return self.kind == "network" or self.tree

    @property
    def available(self) -> bool:
        """The library behind the model is installed (reference models are optional)."""
        try:
            importlib.import_module(self.target.rsplit(".", 1)[0])
        except ImportError:
            return False
        return True

    def fast_overrides(self) -> list[str]:
        """Overrides that keep a fit to seconds, for the keys this config has."""
        out = []
        if "n_estimators" in (self.config.get("params") or {}):
            out.append("model.params.n_estimators=20")
        if "max_train_samples" in self.config:
            out.append("model.max_train_samples=5000")
        return out


def _load() -> dict[str, ModelEntry]:
    entries = {}
    for path in sorted(MODEL_CONF.glob("*.yaml")):
        entries[path.stem] = ModelEntry(path.stem, yaml.safe_load(path.read_text()))
    return entries


MODELS = _load()


def models(*, kind: str | None = None, exportable: bool | None = None, spatial=None):
    """Entries matching the filters, sorted by name."""
    out = []
    for entry in MODELS.values():
        if kind is not None and entry.kind != kind:
            continue
        if exportable is not None and entry.exportable != exportable:
            continue
        if spatial is not None and entry.spatial != spatial:
            continue
        out.append(entry)
    return out


def params(entries):
    """``pytest.param`` per entry, id = the model name, skipped when its library is absent."""
    return [
        pytest.param(
            e,
            id=e.name,
            marks=[] if e.available else [pytest.mark.skip(reason=f"{e.target} not installed")],
        )
        for e in entries
    ]


def names(entries) -> list[str]:
    return [e.name for e in entries]
