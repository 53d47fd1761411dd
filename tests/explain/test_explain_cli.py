import subprocess
import sys
from pathlib import Path

import pytest
import xarray as xr
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from geoclim.errors import ConfigError, DataError
from tests.export.conftest import train_run

CONF = Path(__file__).resolve().parents[2] / "conf"
FAST = ["max_samples=6", "options.n_steps=8", "progress=false"]


def explain_cfg(overrides):
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONF), version_base=None):
            return compose("explain", overrides=overrides)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory, one_thread):
    return train_run(tmp_path_factory.mktemp("lstm"), ["model=lstm", "model.net.hidden_size=8"])


@pytest.mark.slow  # trains a smoke run (~30 s on the shared machine)
def test_explain_a_network_run_writes_datasets_and_plots(lstm_run, tmp_path):
    from geoclim.cli.explain import explain

    out = explain(explain_cfg([f"run_dir={lstm_run}", f"out={tmp_path}", *FAST]))
    for method in ("integrated_gradients", "feature_ablation"):
        with xr.open_dataset(out / f"attribution_{method}.nc") as ds:
            assert ds["attribution"].dims == ("sample", "lead_time", "input_variable", "lag")
            assert ds.sizes["sample"] == 6 and ds.attrs["model"] == "lstm"
        for plot in ("importance", "lag_heatmap", "lag_heatmap_lead1", "map"):
            assert (out / f"{method}_{plot}.png").stat().st_size > 10_000


@pytest.mark.slow  # fits LightGBM twice
def test_explain_a_tree_run_refits_and_writes_tree_shap(tmp_path, one_thread):
    from geoclim.cli.explain import explain

    run = train_run(
        tmp_path / "run",
        ["model=lightgbm", "model.params.n_estimators=15", "model.max_train_samples=2000"],
    )
    out = explain(
        explain_cfg([f"run_dir={run}", f"out={tmp_path / 'x'}", "target.leads=[1,6]", *FAST])
    )
    with xr.open_dataset(out / "attribution_tree_shap.nc") as ds:
        assert ds.sizes["lead_time"] == 2 and "shap_values" in ds
    assert (out / "tree_shap_beeswarm_lead6.png").is_file()


def test_explain_config_errors_name_what_is_missing(tmp_path):
    from geoclim.cli.explain import explain

    with pytest.raises(ConfigError, match="nothing to explain"):
        explain(explain_cfg([]))
    with pytest.raises(DataError, match="not a run directory"):
        explain(explain_cfg([f"run_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match="needs history"):
        explain(explain_cfg([f"model_path={tmp_path / 'm.onnx'}"]))


@pytest.mark.slow  # trains a run and starts a Python process
def test_explain_cli_errors_are_one_line_with_status_2(tmp_path, lstm_run):
    from geoclim.cli.explain import explain

    with pytest.raises(ConfigError, match="unknown methods"):
        explain(explain_cfg([f"run_dir={lstm_run}", "methods=[lime]", *FAST]))
    proc = subprocess.run(
        [sys.executable, "-m", "geoclim.cli.explain", f"run_dir={tmp_path / 'none'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: run_dir {str(tmp_path / 'none')!r}: no such directory"
    ]


def test_category_baseline_and_maps_reach_the_methods_that_take_them():
    from geoclim.cli.explain import _category_baseline, _method_options

    cfg = explain_cfg(["category_baseline={wd: N}", "options.maps=true"])
    assert _category_baseline(cfg) == {"wd": "N"}
    assert _category_baseline(explain_cfg([])) is None
    with pytest.raises(ConfigError, match=r"category_baseline=\{wd: N\}"):
        _category_baseline(explain_cfg(["category_baseline=N"]))
    options = dict(cfg.options)
    assert _method_options("integrated_gradients", options)["maps"] is True
    assert _method_options("gradient_shap", options)["maps"] is True
    assert "maps" not in _method_options("feature_ablation", options)
    assert "maps" not in _method_options("occlusion", options)
