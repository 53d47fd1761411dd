"""``geoclim-explain``: attribute a run's (or an exported model's) forecasts to their inputs.

Examples::

    geoclim-explain run_dir=logs/train/runs/2024-05-01_12-00-00_000000
    geoclim-explain run_dir=... methods=[feature_ablation,gradient_shap] target.quantile=0.9
    geoclim-explain run_dir=... target.region='{latitude: [42, 45]}' target.leads=[1,12]
    geoclim-explain model_path=export/model.onnx history=history.nc onnx_methods=[ablation,shap]

A run directory is rebuilt from its ``.hydra/config.yaml`` (same data, task, splits): a
network is loaded from its checkpoint and explained with Captum (plus its own weights for the
TFT); a tree baseline is explained with TreeSHAP (the run's saved trees in ``model/``, or
refitted, seeded, for runs without). An exported model is explained over onnxruntime on
``history``. Every attribution Dataset is written as ``attribution_<method>.nc`` with its
plots into ``out``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from geoclim.cli.config import CONFIG_PATH
from geoclim.cli.errors import friendly_errors
from geoclim.errors import ConfigError, DataError

log = logging.getLogger(__name__)

TREES = ("xgboost", "lightgbm", "random_forest")


def explain(cfg: DictConfig) -> Path:
    """Explain what ``cfg`` points at; return the output folder."""
    if cfg.get("model_path"):
        return explain_export(cfg)
    if not cfg.get("run_dir"):
        raise ConfigError("nothing to explain: give run_dir=<run directory> or model_path=<.onnx>")
    return explain_run(cfg)


def _options(cfg: DictConfig) -> dict[str, Any]:
    target = OmegaConf.to_container(cfg.target, resolve=True) if cfg.get("target") else {}
    assert isinstance(target, dict)
    return {
        "target": {str(k): v for k, v in target.items() if v is not None},
        "split": str(cfg.split),
        "max_samples": None if cfg.max_samples is None else int(cfg.max_samples),
        "seed": int(cfg.seed),
        "progress": bool(cfg.progress),
    }


def explain_run(cfg: DictConfig) -> Path:
    """Explain the model of a run directory (network or tree baseline)."""
    from geoclim.training import rundir
    from geoclim.training.instantiate import build_estimator, model_kind

    run_dir = Path(cfg.run_dir)
    if not run_dir.is_dir():
        raise DataError(f"run_dir {str(run_dir)!r}: no such directory")
    run_cfg = rundir.read_config(run_dir)
    out = Path(cfg.out) if cfg.get("out") else run_dir / "explain"
    dm = rundir.load_datamodule(run_dir, run_cfg)
    kind, name = model_kind(run_cfg), _model_name(run_cfg)
    if kind == "network":
        return _explain_network(cfg, run_dir, dm, name, out)
    if name not in TREES:
        raise ConfigError(
            f"run {str(run_dir)!r} is a {name} model: it has no inputs to attribute; "
            f"explain a network or a tree model ({', '.join(TREES)})"
        )
    from geoclim.explain import plots
    from geoclim.explain.tree_shap import explain_trees

    saved = run_dir / "model"
    if (saved / "tree.json").is_file():  # the run's own fitted trees
        from geoclim.baselines import tree_store

        model = tree_store.load(saved, dm)
    else:  # older runs kept no trees: refit, seeded as in the run
        log.info("refitting %s (seeded, as in the run) for TreeSHAP", name)
        model = build_estimator(run_cfg).fit(dm)
    opts = _options(cfg)
    result = explain_trees(model, dm, **opts)
    ds = result.dataset.assign_attrs(model=name)
    _write(ds, out, "tree_shap", cfg)
    if cfg.plots:
        leads = sorted({k for _, k in result.explanations})
        for lead in (leads[0], leads[-1]):
            ex = result.explanations[(ds.attrs["target_variable"], lead)]
            plots.shap_beeswarm(
                ex, out / f"tree_shap_beeswarm_lead{lead}.png", title=f"{name}, lead {lead}"
            )
    return out


def _model_name(run_cfg: DictConfig) -> str:
    target = str(run_cfg.model.get("_target_") or run_cfg.model.get("net", {}).get("_target_", ""))
    lowered = target.lower()
    for name in (*TREES, "persistence", "climatology"):
        if name.replace("_", "") in lowered.replace("_", ""):
            return name
    for name, key in (("tft", "temporalfusion"), ("cnn", "unet"), ("lstm", "lstm")):
        if key in lowered:
            return name
    return target.rsplit(".", 1)[-1] or "model"


def _checkpoint(cfg: DictConfig, run_dir: Path) -> Path:
    if cfg.get("ckpt_path"):
        path = Path(cfg.ckpt_path)
        if not path.is_file():
            raise DataError(f"ckpt_path {str(path)!r}: no such checkpoint file")
        return path
    for name in ("best.ckpt", "last.ckpt"):
        path = run_dir / "checkpoints" / name
        if path.is_file():
            return path
    raise DataError(f"run_dir {str(run_dir)!r} has no checkpoints/best.ckpt or last.ckpt")


def _explain_network(cfg: DictConfig, run_dir: Path, dm: Any, name: str, out: Path) -> Path:
    from geoclim.explain.captum import METHODS
    from geoclim.explain.network import explain_network
    from geoclim.explain.target import is_spatial
    from geoclim.models.module import ForecastModule

    net = ForecastModule.from_checkpoint(_checkpoint(cfg, run_dir)).net
    opts = _options(cfg)
    methods = list(cfg.methods)
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; valid are {list(METHODS)}")
    if "occlusion" in methods and not is_spatial(dm):
        log.warning("occlusion needs a spatial model; skipped for %s", name)
        methods.remove("occlusion")
    method_opts = OmegaConf.to_container(cfg.options, resolve=True) if cfg.get("options") else {}
    assert isinstance(method_opts, dict)
    categories = _category_baseline(cfg)
    for method in methods:
        keep = _method_options(method, {str(k): v for k, v in method_opts.items()})
        if categories:
            keep["category_baseline"] = categories
        ds = explain_network(
            net,
            dm,
            method=method,
            baseline=str(cfg.baseline),
            batch_size=int(cfg.batch_size),
            **opts,
            **keep,
        ).assign_attrs(model=name)
        _write(ds, out, method, cfg)
    if name == "tft":
        from geoclim.explain import plots
        from geoclim.explain.tft import explain_tft

        tft = explain_tft(
            net, dm, split=opts["split"], seed=opts["seed"], progress=opts["progress"]
        )
        _save_netcdf(tft.assign_attrs(model=name), out / "tft_interpretation.nc")
        if cfg.plots:
            plots.tft_attention(tft, out / "tft_attention.png")
            plots.tft_selection(tft, out / "tft_selection.png")
    return out


def _category_baseline(cfg: DictConfig) -> dict[str, str] | None:
    """``category_baseline`` as ``{variable: meaning}``, or None for the default."""
    value = cfg.get("category_baseline")
    if value is None:
        return None
    if not OmegaConf.is_dict(value):
        raise ConfigError(
            f"category_baseline must map categorical variables to a category, e.g. "
            f"category_baseline={{wd: N}}; got {value!r}"
        )
    return {str(k): str(v) for k, v in value.items()}


def _method_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    wanted = {
        "integrated_gradients": ("n_steps", "sigma", "maps"),
        "feature_ablation": ("ablation", "sigma"),
        "gradient_shap": ("n_samples", "stdevs", "sigma", "maps"),
        "occlusion": ("block", "sigma"),
    }[method]
    return {k: v for k, v in options.items() if k in wanted}


def _save_netcdf(ds, path: Path) -> Path:
    from geoclim.data.sources import write_netcdf

    return write_netcdf(ds, path)


def _write(ds, out: Path, method: str, cfg: DictConfig) -> None:
    """``attribution_<method>.nc`` and, unless ``plots=false``, its figures."""
    from geoclim.explain import plots

    path = _save_netcdf(ds, out / f"attribution_{method}.nc")
    log.info("wrote %s", path)
    if not cfg.plots:
        return
    dims = ds["attribution"].dims
    if "input_variable" in dims:
        plots.importance_bars(ds, path=out / f"{method}_importance.png")
    if "lag" in dims and "input_variable" in dims:
        plots.lag_heatmap(ds, path=out / f"{method}_lag_heatmap.png")
        first = ds["lead_time"].values[0]
        plots.lag_heatmap(ds, lead=first, signed=True, path=out / f"{method}_lag_heatmap_lead1.png")
    if "latitude" in dims or "latitude" in ds.coords:
        target = ds.attrs.get("target_variable")
        plots.spatial_map(
            ds, target if "latitude" in dims else None, path=out / f"{method}_map.png"
        )


def explain_export(cfg: DictConfig) -> Path:
    """Explain an exported model over onnxruntime on a netCDF history."""
    import xarray as xr

    from geoclim.serving.adapter import Forecaster

    if not cfg.get("history"):
        raise ConfigError("model_path needs history=<netCDF history in physical units>")
    path, history = Path(cfg.model_path), Path(cfg.history)
    if not history.is_file():
        raise DataError(f"history {str(history)!r}: no such file")
    forecaster = Forecaster.from_onnx(path, max_missing=1.0)
    out = Path(cfg.out) if cfg.get("out") else path.parent / "explain"
    target = _options(cfg)["target"]
    with xr.open_dataset(history) as ds:
        ds = ds.load()
    for method in cfg.onnx_methods:
        result = forecaster.explain(
            ds,
            method=str(method),
            variable=target.get("variable"),
            quantile=target.get("quantile"),
            block=int(cfg.options.get("block", 2)),
            category_baseline=_category_baseline(cfg),
        )
        _write(result, out, f"onnx_{method}", cfg)
    return out


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="explain")
@friendly_errors
def _hydra_main(cfg: DictConfig) -> None:
    out = explain(cfg)
    log.info("attributions and plots in %s", out)


def main() -> None:
    """Console entry point (``geoclim-explain``)."""
    _hydra_main()


if __name__ == "__main__":
    main()
