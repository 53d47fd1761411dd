"""Build the run's objects from the composed config: datamodule, model, callbacks, loggers.

Shapes come from the datamodule (``dm.dims``, known from the task alone) and are passed to
the network's constructor here, once; configs never interpolate sizes across groups.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from geoclim.data import schema
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError
from geoclim.models.module import ForecastModule

log = logging.getLogger(__name__)

MODEL_KINDS = ("network", "baseline", "reference")
NETWORK_KEYS = ("kind", "window", "net", "loss", "optimizer", "scheduler", "budget")
"""Keys of a network's model config; ``budget`` (``max_epochs``, ``patience``) is read by the
trainer and early-stopping configs, so one multirun gives each model its own budget."""


def config_dict(
    node: Any, *, resolve: bool = True, throw_on_missing: bool = True
) -> dict[str, Any]:
    """The config mapping ``node`` as a plain ``dict`` with string keys.

    Args:
        node: a ``DictConfig`` (e.g. ``cfg.model``).
        resolve: resolve interpolations.
        throw_on_missing: raise on mandatory (``???``) values instead of keeping them.

    Raises:
        ConfigError: if ``node`` is not a mapping (e.g. ``model.net`` set to a list).

    """
    if not isinstance(node, DictConfig):
        key = node._get_full_key(None) if OmegaConf.is_config(node) else None  # noqa: SLF001
        raise ConfigError(
            f"config key {key or '?'!r} is a {type(node).__name__} ({node!r}); expected a mapping"
        )
    plain = OmegaConf.to_container(node, resolve=resolve, throw_on_missing=throw_on_missing)
    assert isinstance(plain, dict)  # a DictConfig always converts to a dict
    return {str(k): v for k, v in plain.items()}


def model_kind(cfg: DictConfig) -> str:
    """``network`` (a ForecastModule), ``baseline`` or ``reference`` (fit/predict objects)."""
    kind = cfg.model.get("kind")
    if kind not in MODEL_KINDS:
        raise ConfigError(
            f"model.kind is {kind!r}; valid kinds are {list(MODEL_KINDS)} "
            "(every conf/model/*.yaml states one)"
        )
    return str(kind)


def build_datamodule(cfg: DictConfig) -> GeoDataModule:
    """The datamodule of ``cfg.data`` for ``cfg.task``, with the model's window preference.

    A model config may carry ``window`` (e.g. the CNN's ``patch: null``, whole grids); it
    updates ``data.window`` because how samples are cut is the model's requirement.
    """
    data_cfg = config_dict(cfg.data)
    window = dict(data_cfg.get("window") or {})
    if cfg.model.get("window"):  # baselines have none
        window.update(config_dict(cfg.model.window))
    data_cfg["window"] = window
    task = config_dict(cfg.task)
    cv = config_dict(cfg.cv, throw_on_missing=False) if cfg.get("cv") else None
    return instantiate(data_cfg, task=task, cv=cv, _convert_="all")


def build_module(cfg: DictConfig, dm: GeoDataModule) -> ForecastModule:
    """The network, sized from ``dm.dims``, wrapped in a :class:`ForecastModule`.

    ``dm`` must be set up (the normaliser travels in the module's checkpoints).
    """
    model = cfg.model
    unknown = sorted(set(model) - set(NETWORK_KEYS))
    if unknown:
        raise ConfigError(
            f"unknown model key(s) {unknown}; a network config has "
            f"{sorted(NETWORK_KEYS)} (network sizes go under model.net)"
        )
    net_config = config_dict(model.net)
    net_config.update(net_dims(net_config["_target_"], {**dm.dims, **location_dims(dm)}))
    net = instantiate(net_config)
    if net_config.get("location_norm"):
        _set_location_stats(net, dm)
    return ForecastModule(
        net=net,
        task=dm.task.to_dict(),
        normalizer=dm.normalizer.to_dict() if dm.normalizer is not None else None,
        loss=model.get("loss", "auto"),
        optimizer=instantiate(model.optimizer) if model.get("optimizer") else None,
        scheduler=instantiate(model.scheduler) if model.get("scheduler") else None,
        net_config=net_config,
    )


def location_dims(dm: GeoDataModule) -> dict[str, int]:
    """``n_lat``, ``n_lon``: the grid the batch positions index (stations: ``n x 1``)."""
    if dm.ds is None:
        return {}
    sizes = [dm.ds.sizes[d] for d in schema.space_dims(dm.ds)]
    return {"n_lat": sizes[0], "n_lon": sizes[1] if len(sizes) > 1 else 1}


def _set_location_stats(net: Any, dm: GeoDataModule) -> None:
    """Give a ``location_norm`` network the targets' per-location train statistics."""
    import torch

    from geoclim.data.normalize import location_stats

    if dm.ds is None or dm.normalizer is None or dm.splits is None:
        raise ConfigError("model.net.location_norm needs the data in memory and a normaliser")
    mean, std = location_stats(dm.ds, dm.normalizer, dm.task.targets, dm.splits.train)
    net.context.scaler.set_stats(torch.from_numpy(mean), torch.from_numpy(std))


def net_dims(target: str, dims: dict[str, int]) -> dict[str, int]:
    """The entries of ``dims`` (``task.dims``) the network class ``target`` takes.

    Every network gets its sizes from the data, but only those it uses (a network that
    runs over any history length need not take ``input_steps``; one with a location
    embedding takes ``n_lat`` / ``n_lon`` from :func:`location_dims`).

    Raises:
        ConfigError: if ``target`` cannot be imported.

    """
    from hydra.utils import get_class

    try:
        cls = get_class(target)
    except Exception as err:  # noqa: BLE001 -- Hydra wraps import errors of any kind
        raise ConfigError(f"model.net._target_ {target!r} cannot be imported ({err})") from None
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(dims)
    return {k: v for k, v in dims.items() if k in params}


def build_estimator(cfg: DictConfig) -> Any:
    """A baseline or reference model (``fit(dm)`` / ``predict(dm, split)``).

    Reference models (``kind: reference``, e.g. pytorch-forecasting's TFT) train with
    Lightning themselves and receive the trainer settings of ``cfg.trainer``.
    """
    model_cfg = config_dict(cfg.model)
    model_cfg.pop("window", None)
    model_cfg.pop("budget", None)  # read by the trainer config (conf/trainer/cpu.yaml)
    if model_kind(cfg) == "reference":
        trainer = config_dict(cfg.trainer)
        trainer.pop("_target_", None)
        return instantiate(model_cfg, trainer=trainer, _convert_="all")
    return instantiate(model_cfg, _convert_="all")


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Callbacks of ``cfg.callbacks`` (a dict of configs; ``null`` entries are skipped)."""
    callbacks = []
    for name, conf in (cfg.get("callbacks") or {}).items():
        if conf is None:
            continue
        if "_target_" not in conf:
            raise ConfigError(f"callbacks.{name} has no _target_")
        callbacks.append(instantiate(conf))
    return callbacks


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """Loggers of ``cfg.logger``; W&B runs offline unless ``WANDB_MODE`` says otherwise."""
    loggers = []
    for name, conf in (cfg.get("logger") or {}).items():
        if conf is None:
            continue
        if name == "wandb" and conf.get("offline", True):
            os.environ.setdefault("WANDB_MODE", "offline")
        loggers.append(instantiate(conf))
    return loggers
