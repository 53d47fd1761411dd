"""``geoclim.api``: the console scripts' jobs in-process, writing the same run directories."""

import json

import pytest
import xarray as xr
import yaml

from geoclim import api
from geoclim.errors import ConfigError, SchemaError
from geoclim.evaluation import leaderboard as lb
from geoclim.training import rundir
from tests.support.cli import geoclim_train

SMOKE = ("data/source=synthetic", "data=synthetic_grid", "task=synthetic_no2", "debug=smoke")


def _timeless(metrics):
    """The metrics without wall times, as JSON text (NaN compares equal to NaN)."""
    return json.dumps({k: v for k, v in sorted(metrics.items()) if not k.startswith("time/")})


def test_a_run_of_the_api_equals_the_same_console_run(tmp_path):
    run = api.train(*SMOKE, "model=persistence", run_dir=tmp_path / "api")
    cli = geoclim_train(
        *SMOKE, "model=persistence", f"hydra.run.dir={tmp_path / 'cli'}", cwd=tmp_path
    )
    assert cli.returncode == 0, cli.stderr
    console = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    saved = json.loads((tmp_path / "api" / "metrics.json").read_text())
    assert _timeless(saved) == _timeless(console)
    assert run.metrics["test/rmse/no2"] == saved["test/rmse/no2"] > 0
    assert run.path == (tmp_path / "api").resolve()
    # what the readers of run directories need, as Hydra writes it for the console run
    assert rundir.model_name(run.path, rundir.read_config(run.path)) == "persistence"
    assert rundir.read_overrides(run.path) == [*SMOKE, "model=persistence"]
    saved = yaml.safe_load((run.path / ".hydra" / "config.yaml").read_text())
    assert saved["paths"]["output_dir"] == str(run.path) and "hydra" not in saved
    assert xr.open_dataset(run.path / "predictions.nc").attrs["model"] == "persistence"
    runs = [lb.load_run(p) for p in lb.find_runs([tmp_path])]
    board = lb.leaderboard(runs, sort_by="rmse", root=tmp_path)
    assert board["data"].nunique() == 1 and len(board) == 2  # same data, same samples


def test_a_network_run_exports_through_the_api(tmp_path):
    run = api.train(*SMOKE, "model=lstm", run_dir=tmp_path / "lstm")
    assert (run.path / "checkpoints").is_dir() and run.metrics["test/rmse/no2"] > 0
    report = api.export(run.path, exporter="torchscript", parity_batches=1)
    assert report["parity"]["passed"] and (run.path / "export" / "model.onnx").is_file()


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        (["model=lstm,cnn"], ConfigError, r"'model=lstm,cnn' is a sweep; call train\(\) once"),
        (["hydra.run.dir=x"], ConfigError, "options of Hydra itself are for geoclim-train"),
        (["-m"], ConfigError, "options of Hydra itself"),
        (["model=nosuch"], ConfigError, "Could not find 'model/nosuch'.*lstm"),
        (["model.net.hiden_size=3"], ConfigError, "model.net has no 'hiden_size'.*hidden_size"),
        (["task.targets=[a"], ConfigError, r"override 'task.targets=\[a'"),
        (["data=file"], ConfigError, "no value for 'data.source.path'"),
        (["data=file", "data.source.path=/no/such.nc"], SchemaError, "/no/such.nc: no such file"),
    ],
    ids=["sweep", "hydra-option", "flag", "group-choice", "key", "syntax", "missing", "no-file"],
)
def test_mistakes_raise_the_error_the_console_prints(tmp_path, overrides, error, match):
    with pytest.raises(error, match=match) as err:
        api.train(*overrides, run_dir=tmp_path / "run")
    assert "Config search path" not in str(err.value)
    assert not (tmp_path / "run").exists()  # nothing written before the config holds
