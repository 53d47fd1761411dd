"""Fitted tree baselines on disk: the estimators in their library's format plus ``tree.json``.

::

    <folder>/                      (a run's ``model/``)
      tree.json                    class, constructor settings, quantiles, per-lead scale,
                                   feature names, which file holds which model
      target0_all_0.ubj            XGBoost (binary JSON), or
      target0_all_0.txt            LightGBM model text, or
      target0_all_0.joblib         scikit-learn (joblib, its documented persistence)

The lag features are not stored: they are rebuilt from the datamodule and checked against
the saved feature names, so a model is never applied to other columns than it was fitted on.
Every file is written atomically (:mod:`geoclim.fileio`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoclim import fileio
from geoclim.baselines.features import LagFeatures
from geoclim.errors import DataError

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

# The baseline is typed ``Any`` here: this module is what geoclim.baselines.trees delegates
# to, so it must not import it back (one direction, no import circle).

MODEL_FILE = "tree.json"


def save(baseline: Any, folder: str | os.PathLike) -> Path:
    """Write a fitted tree baseline to ``folder``; return the folder.

    Raises:
        DataError: if the baseline is not fitted.

    """
    if not baseline.estimators or baseline.features is None:
        raise DataError(f"{baseline.name} is not fitted; nothing to save")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for (c, lead), ests in sorted(baseline.estimators.items(), key=lambda kv: str(kv[0])):
        stem = f"target{c}_" + ("all" if lead is None else f"lead{lead}")
        names = [f"{stem}_{i}{baseline.suffix}" for i in range(len(ests))]
        for est, name in zip(ests, names, strict=True):
            fileio.write_bytes(folder / name, baseline._dump_one(est))  # noqa: SLF001
        files.append({"target": c, "lead": lead, "files": names})
    state = {
        "class": f"{type(baseline).__module__}.{type(baseline).__qualname__}",
        "settings": settings(baseline),
        "quantiles": list(baseline.quantiles),
        "lead_scale": baseline.lead_scale.tolist(),
        "feature_names": list(baseline.features.names),
        "models": files,
    }
    fileio.write_text(folder / MODEL_FILE, json.dumps(state, indent=2) + "\n")
    return folder


def settings(baseline: Any) -> dict[str, Any]:
    """Constructor arguments that rebuild ``baseline`` (before fitting)."""
    return {
        "params": baseline.params,
        "features": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in dataclasses.asdict(baseline.spec).items()
        },
        "strategy": baseline.strategy,
        "max_train_samples": baseline.max_train_samples,
        "quantiles": None if baseline.quantiles_arg is None else list(baseline.quantiles_arg),
        "seed": baseline.seed,
        "residual": baseline.residual,
        "predict_chunk_rows": baseline.predict_chunk_rows,
    }


def load(folder: str | os.PathLike, dm: GeoDataModule, expected: type | None = None) -> Any:
    """The tree baseline :func:`save` wrote to ``folder``, ready to predict ``dm``'s samples.

    Args:
        folder: the saved model (``<run dir>/model``).
        dm: the datamodule the model was fitted on (its features are rebuilt from it).
        expected: a :class:`~geoclim.baselines.trees.TreeBaseline` (sub)class the model
            must be.

    Raises:
        DataError: naming the folder when it holds no saved tree model, a model of another
            class, or when ``dm`` does not give the features the model was fitted on.

    """
    folder = Path(folder)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise DataError(f"{folder}: no saved tree model ({MODEL_FILE} is missing)")
    try:
        state = json.loads(path.read_text())
        module, _, name = state["class"].rpartition(".")
        klass = getattr(importlib.import_module(module), name)
    except (json.JSONDecodeError, KeyError, ImportError, AttributeError, ValueError) as err:
        raise DataError(f"{path}: not a geoclim tree model ({err!r})") from None
    if not (isinstance(klass, type) and callable(getattr(klass, "_load_one", None))):
        raise DataError(f"{path}: {state['class']} is not a tree baseline")
    if expected is not None and not issubclass(klass, expected):
        wanted = getattr(expected, "name", expected.__name__)
        raise DataError(f"{path} holds a {klass.name} model, not {wanted}")
    model = klass(**state["settings"])
    model.quantiles = tuple(state["quantiles"])
    model.features = LagFeatures(dm, model.spec, with_lead=model.strategy == "shared")
    if model.features.names != state["feature_names"]:
        raise DataError(
            f"{path}: the datamodule gives features {model.features.names}, the model was "
            f"fitted on {state['feature_names']} (another task or data?)"
        )
    model.lead_scale = np.asarray(state["lead_scale"], dtype=float)
    model.estimators = {
        (int(m["target"]), None if m["lead"] is None else int(m["lead"])): [
            model._load_one(folder / f)
            for f in m["files"]  # noqa: SLF001
        ]
        for m in state["models"]
    }
    return model
