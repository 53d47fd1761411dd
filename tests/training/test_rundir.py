import json
import math
import os
import stat

import pytest
from omegaconf import OmegaConf

from geoclim.data.normalize import Normalizer, VariableStats
from geoclim.data.task import ForecastTask
from geoclim.errors import DataError
from geoclim.training import rundir
from tests.training.compose import compose_train


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


class _DM:
    task = ForecastTask(targets=("no2",), past_inputs=("t2m",), input_steps=4, horizon=2)
    normalizer = Normalizer(
        {"no2": VariableStats(10.0, 2.0, True), "t2m": VariableStats(0, 1, False)}
    )


def test_run_files_are_readable_by_the_group_under_umask_022(tmp_path, umask_022):
    rundir.write_metrics(tmp_path, {"test/rmse/no2": 1.5})
    rundir.write_data_files(tmp_path, _DM())
    for name in ("metrics.json", "task.json", "normalizer.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


def test_metrics_task_and_normalizer_read_back_what_was_written(tmp_path):
    rundir.write_metrics(tmp_path, {"b": 2, "a": math.inf, "c": "not a number"})
    rundir.write_data_files(tmp_path, _DM())
    assert rundir.read_metrics(tmp_path) == {"a": None, "b": 2.0}
    assert rundir.read_task(tmp_path) == _DM.task
    assert rundir.read_normalizer(tmp_path) == _DM.normalizer


def test_reader_errors_name_the_directory_and_the_file(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        rundir.read_config(tmp_path / "missing")
    with pytest.raises(DataError, match=r"not a run directory: it has no \.hydra"):
        rundir.read_config(tmp_path)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("data: {}\n")
    with pytest.raises(
        DataError, match=r"not a geoclim-train config \(it has no \['task', 'model'\]"
    ):
        rundir.read_config(tmp_path)
    assert rundir.read_metrics(tmp_path) == {}
    with pytest.raises(DataError, match="has no metrics.json"):
        rundir.read_metrics(tmp_path, required=True)
    (tmp_path / "metrics.json").write_text("{oops")
    with pytest.raises(DataError, match="metrics.json: unreadable"):
        rundir.read_metrics(tmp_path)
    with pytest.raises(DataError, match="task.json: missing"):
        rundir.read_task(tmp_path)
    assert rundir.read_normalizer(tmp_path) is None


def test_find_run_dir_walks_up_from_a_checkpoint(tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text("{}\n")
    (tmp_path / "checkpoints").mkdir()
    assert rundir.find_run_dir(tmp_path / "checkpoints" / "best.ckpt") == tmp_path
    with pytest.raises(DataError, match="no run directory"):
        rundir.find_run_dir(tmp_path.parent / "elsewhere" / "x.ckpt")


def test_model_name_is_the_hydra_choice_else_the_class(tmp_path):
    cfg = {"model": {"net": {"_target_": "geoclim.models.components.lstm.LSTMNet"}}}
    assert rundir.model_name(tmp_path, cfg) == "LSTMNet"
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  runtime:\n    choices:\n      model: lstm\n"
    )
    assert rundir.model_name(tmp_path, cfg) == "lstm"


def test_load_datamodule_refuses_data_that_changed_since_the_run(tmp_path):
    cfg = compose_train(tmp_path, "model=persistence")
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")
    dm = rundir.load_datamodule(tmp_path)  # no normalizer.json yet: nothing to compare
    rundir.write_data_files(tmp_path, dm)
    assert rundir.load_datamodule(tmp_path).normalizer == dm.normalizer
    stats = json.loads((tmp_path / "normalizer.json").read_text())
    stats["no2"]["mean"] += 1.0
    (tmp_path / "normalizer.json").write_text(json.dumps(stats))
    with pytest.raises(DataError, match="not the data the run was trained on"):
        rundir.load_datamodule(tmp_path)
