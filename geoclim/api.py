"""Python entry points for notebooks and scripts: the console scripts' jobs, in this process.

``geoclim-train ARGS`` starts a new interpreter, imports torch and Lightning and lets Hydra
write the run directory. From Jupyter that costs seconds per run and hides errors in a
subprocess's stderr. :func:`train` composes the same ``conf/train.yaml`` with the same
overrides, writes the same run directory (``.hydra/config.yaml``, ``hydra.yaml`` with the
group choices, ``overrides.yaml``) and returns its metrics, so the leaderboard, ``geoclim
compare``, ``geoclim-export`` and ``geoclim-evaluate`` read it like a console run::

    from geoclim import api

    run = api.train("data/source=synthetic", "data=synthetic_grid", "debug=smoke",
                    run_dir="runs/smoke")
    run.metrics["test/rmse/no2"]
    api.export(run.path)            # run/export/model.onnx, parity-checked

A mistake a user can fix raises the :class:`~geoclim.errors.GeoclimError` that the console
script would print as ``error: ...``. Sweeps (``-m``), Optuna searches and DDP stay with
``geoclim-train``, which owns Hydra's launchers; loop over :func:`train` for a small sweep.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from geoclim.cli.config import CONFIG_PATH, initialize_configs
from geoclim.errors import ConfigError


@dataclass(frozen=True)
class Run:
    """A finished run directory.

    Attributes:
        path: the run directory.
        metrics: the flat metrics ``geoclim-train`` writes to ``metrics.json``.
    """

    path: Path
    metrics: dict[str, float]


def compose(*overrides: str, run_dir: str | os.PathLike) -> tuple[DictConfig, DictConfig]:
    """``conf/train.yaml`` composed with ``overrides`` for a run in ``run_dir``.

    Returns:
        ``(cfg, hydra)``: the job's config (``paths.output_dir`` = ``run_dir``) and Hydra's
        own node (group choices, overrides), as ``geoclim-train`` would record them.

    Raises:
        ConfigError: for a sweep override or an option of Hydra itself (``geoclim-train``
            runs those), or a config Hydra cannot compose (message: Hydra's, with the
            options of a group when a choice is unknown).
    """
    from hydra import compose as hydra_compose
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    from geoclim.cli.train import check_override_keys

    for o in overrides:
        if o.startswith("-"):
            raise ConfigError(f"{o!r}: options of Hydra itself are for geoclim-train")
        try:
            (parsed,) = OverridesParser.create().parse_overrides([o])
        except HydraException as err:
            raise ConfigError(f"override {o!r}: {err}") from None
        if parsed.key_or_group.startswith("hydra"):
            raise ConfigError(f"{o!r}: options of Hydra itself are for geoclim-train")
        if parsed.is_sweep_override():
            raise ConfigError(
                f"{o!r} is a sweep; call train() once per value or use geoclim-train -m"
            )

    out = str(Path(run_dir).resolve())
    try:
        with initialize_configs(CONFIG_PATH):
            full = hydra_compose(
                "train",
                overrides=[*overrides, f"paths.output_dir={out}"],
                return_hydra_config=True,
            )
    except HydraException as err:
        check_override_keys(list(overrides), CONFIG_PATH)  # a misspelt key: the valid ones
        message = " ".join(str(err).split("Config search path")[0].split())
        raise ConfigError(message or repr(err)) from None
    hydra = full.hydra
    with open_dict(full):
        del full["hydra"]
    return full, hydra


def train(*overrides: str, run_dir: str | os.PathLike) -> Run:
    """Train (or fit) one model as ``geoclim-train *overrides`` would, in this process.

    Args:
        *overrides: Hydra overrides, e.g. ``"model=lightgbm"``, ``"debug=smoke"``.
        run_dir: the run directory to write (created; an existing run there is replaced
            file by file, as Hydra's ``hydra.run.dir`` would).

    Returns:
        The run directory and its metrics.

    Raises:
        GeoclimError: a mistake in the config or the data (see :func:`compose`).
    """
    from geoclim.cli.train import preflight

    cfg, hydra = compose(*overrides, run_dir=run_dir)
    preflight(cfg)
    path = Path(cfg.paths.output_dir)
    _record(path, cfg, hydra, overrides)
    from hydra.core.hydra_config import HydraConfig

    from geoclim.training.train import train as train_job  # torch and Lightning

    HydraConfig.instance().set_config(OmegaConf.create({"hydra": hydra}))  # the job's choices
    try:
        return Run(path, train_job(cfg))
    finally:
        HydraConfig.instance().cfg = None


def export(run_dir: str | os.PathLike, **options: Any) -> dict[str, Any]:
    """``geoclim-export RUN``: :func:`geoclim.export.run.export_run` (same options)."""
    from geoclim.export.run import export_run

    return export_run(run_dir, **options)


def _record(path: Path, cfg: DictConfig, hydra: DictConfig, overrides: Sequence[str]) -> None:
    """Write ``.hydra/`` as Hydra's run would: config, group choices, overrides."""
    from geoclim.fileio import write_text

    folder = path / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    choices = OmegaConf.to_container(hydra.runtime.choices, resolve=False)
    write_text(folder / "config.yaml", OmegaConf.to_yaml(cfg))
    write_text(folder / "hydra.yaml", yaml.safe_dump({"hydra": {"runtime": {"choices": choices}}}))
    write_text(folder / "overrides.yaml", yaml.safe_dump(list(overrides)))
