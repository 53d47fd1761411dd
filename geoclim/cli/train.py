"""``geoclim-train``: compose ``conf/train.yaml`` with Hydra and run one training job.

Examples::

    geoclim-train                                   # LSTM on gridded NAPS NO2
    geoclim-train model=tft experiment=...          # any option of any group
    geoclim-train -m model=lstm,cnn,tft             # one job (and run directory) per model
    geoclim-train hparams_search=lstm_optuna        # Optuna search
    geoclim-train data/source=synthetic debug=smoke # seconds, no bundled data needed

A mistake a user can fix (a :class:`~geoclim.errors.GeoclimError`, a missing mandatory
value, an unknown config key) is printed as one ``error: ...`` line, with the valid choices,
and the command exits with status 2. Unknown group options are reported by Hydra with the
list of available options.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from geoclim.cli.config import CONFIG_PATH, compose_config, config_root
from geoclim.cli.errors import exit_with, friendly_errors
from geoclim.errors import ConfigError, SchemaError

log = logging.getLogger(__name__)


def check_override_keys(argv: list[str], config_path: str = CONFIG_PATH) -> None:
    """Fail early, listing the valid keys, when an override names a key that does not exist.

    Hydra already lists the options of an unknown group choice; for a misspelt key it only
    says "not in struct". This composes the config with the command line's group choices
    (first value of a sweep) and checks every plain ``key=value`` override against it.

    Raises:
        ConfigError: naming the first unknown key and the keys valid at its level.
    """
    if any(a.startswith(("--config", "-cn", "-cp", "-cd")) for a in argv):
        return
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(
            [a for a in argv if "=" in a and not a.startswith("-")]
        )
    except Exception:  # noqa: BLE001 -- Hydra reports syntax errors itself
        return
    root = config_root(config_path)
    groups, keys = [], []
    for o in parsed:
        key = o.key_or_group
        if o.is_add() or o.is_delete() or o.is_force_add() or key.startswith("hydra"):
            continue
        if root.joinpath(key).is_dir():
            try:
                value = (
                    next(iter(o.sweep_string_iterator()))
                    if o.is_sweep_override()
                    else o.get_value_element_as_str()
                )
            except Exception:  # noqa: BLE001 -- e.g. glob() sweeps: leave checks to Hydra
                return
            groups.append(f"{key}={value}")
        else:
            keys.append(key)
    if not keys:
        return
    try:
        cfg = compose_config("train", groups, config_path)
    except Exception:  # noqa: BLE001 -- bad group choices: Hydra lists the options
        return
    for key in keys:
        _check_key(cfg, key)


def _check_key(cfg: DictConfig, key: str) -> None:
    node: object = cfg  # a DictConfig while the path runs through mappings
    path: list[str] = []
    for part in key.split("."):
        if not isinstance(node, DictConfig):  # what OmegaConf.is_dict checks
            return  # a list index or a value: Hydra decides
        if part not in node.keys():  # `in node` is False for a missing (???) value
            where = ".".join(path) or "the top level"
            raise ConfigError(
                f"unknown config key {key!r}: {where} has no {part!r}; valid keys are "
                f"{sorted(str(k) for k in node.keys())} (use +{key}=... to add a new key)"
            )
        node = node._get_node(part)  # noqa: SLF001 -- no resolution of interpolations
        path.append(part)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
@friendly_errors
def _hydra_main(cfg: DictConfig) -> float | None:
    preflight(cfg)
    from geoclim.training.train import train  # torch and Lightning: seconds to import

    _single_log_handler()
    _quiet_library_warnings()
    metrics = train(cfg)
    metric = cfg.get("optimized_metric")
    if not metric or not metrics:
        return None
    if metric not in metrics:  # e.g. val/loss of a baseline, which has no val loss
        same_split = sorted(k for k in metrics if k.split("/")[0] == metric.split("/")[0])
        log.info(
            "optimized_metric %r is not among this run's metrics, so nothing is "
            "returned to a sweeper; %d others are in metrics.json (e.g. %s)",
            metric,
            len(metrics),
            ", ".join(same_split[:3] or sorted(metrics)[:3]),
        )
        return None
    return metrics[metric]


def preflight(cfg: DictConfig) -> None:
    """Report the config mistakes that need no training stack, before it is imported.

    A missing mandatory value (``???``) or a data file that does not exist is found in the
    composed config itself, so the user hears of it at once rather than after torch and
    Lightning have loaded.

    Raises:
        ConfigError: for the first mandatory value left unset (sorted by key).
        SchemaError: for ``data.source.path`` naming no file or store.
    """
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        key = missing[0]
        raise ConfigError(f"no value for {key!r}; set it on the command line: {key}=...")
    source = OmegaConf.select(cfg, "data.source")
    if isinstance(source, DictConfig) and str(source.get("_target_", "")).startswith(
        "geoclim.data.sources."
    ):
        path = OmegaConf.select(source, "path", throw_on_resolution_failure=False)
        if isinstance(path, str) and "://" not in path and not Path(path).exists():
            raise SchemaError(f"{path}: no such file or store")


def _single_log_handler() -> None:
    """Drop Lightning's own console handler: Hydra's root handlers already print its logs."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)


LIBRARY_WARNINGS = (
    # torch 2.13 deprecated LeafSpec; Lightning 2.6 still builds one for every batch it moves
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
    # Lightning's advice to pytorch-forecasting's TFT (model=pf_tft), which saves its loss
    (UserWarning, r"Attribute '\w+' is an instance of `nn.Module` and is already saved"),
)
"""Warnings from inside the libraries that a geoclim user can do nothing about."""


def _quiet_library_warnings() -> None:
    """Keep :data:`LIBRARY_WARNINGS` off the console of a training run; all others still show."""
    for category, message in LIBRARY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)


def main() -> None:
    """Console entry point (``geoclim-train``)."""
    try:
        check_override_keys(sys.argv[1:])
    except ConfigError as err:
        exit_with(err)
    _hydra_main()


if __name__ == "__main__":
    main()
