"""The real ``geoclim-train`` command on the tiny synthetic config.

One smoke run goes through a fresh interpreter (the console path); the rest call the same
entry point in this process (:mod:`tests.support.cli`).
"""

import json
import subprocess
import sys

import pytest
import yaml

from tests.support.cli import geoclim_train

TINY = ["data=synthetic_grid", "task=synthetic_no2", "debug=smoke"]


def test_console_smoke_run_writes_its_run_directory_and_ends_with_a_score_table(tmp_path):
    """One real ``geoclim-train`` smoke run of the default network, in a fresh interpreter.

    One test, so that a parallel suite starts one console run rather than one per worker.
    """
    run = tmp_path / "run"
    result = geoclim_train(*TINY, f"hydra.run.dir={run}", cwd=tmp_path, subprocess=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "LeafSpec" not in result.stderr  # the libraries' chatter stays off the console
    for name in (
        "metrics.json",
        "predictions.nc",
        "scores.nc",
        "task.json",
        "normalizer.json",
        "checkpoints/best.ckpt",
        "checkpoints/last.ckpt",
        "csv/metrics.csv",
        ".hydra/config.yaml",
    ):
        assert (run / name).exists(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["val/loss"] > 0 and "test/skill_persistence/no2" in metrics
    # the job ends with its score table, on the console and in train.log
    log = result.stdout + result.stderr
    assert f"test scores of lstm ({run})" in log
    header = next(line for line in log.splitlines() if line.startswith("target  RMSE"))
    assert "skill vs persistence" in header and "skill vs climatology" in header
    row = log.splitlines()[log.splitlines().index(header) + 2].split()
    assert row[0] == "no2" and float(row[1]) == pytest.approx(metrics["test/rmse/no2"], rel=1e-3)
    assert "skill vs persistence" in (run / "train.log").read_text()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(["trainer.max_epoch=1"], "valid keys are", id="misspelt-key"),
        pytest.param(
            ["data/source=netcdf", "data.source.path=/nonexistent/file.nc"],
            "no such file",
            id="geoclim-error",
        ),
        pytest.param(["data/source=netcdf"], "data.source.path", id="missing-mandatory-value"),
        pytest.param(  # the same GeoclimError path as geoclim-error, from another module
            ["task.targets=[pm2.5]"], "pm2.5", id="unknown-variable", marks=pytest.mark.slow
        ),
    ],
)
def test_user_errors_exit_2_with_a_message_not_a_traceback(tmp_path, args, expected):
    result = geoclim_train(*TINY, *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert expected in result.stderr
    assert "error:" in result.stderr and "Traceback" not in result.stderr


def test_misspelt_key_lists_the_valid_keys(tmp_path):
    result = geoclim_train(*TINY, "trainer.max_epoch=1", cwd=tmp_path)
    assert "'max_epochs'" in result.stderr and "'trainer.max_epoch'" in result.stderr


def test_unknown_group_option_lists_the_available_options(tmp_path):
    result = geoclim_train(*TINY, "model=lsmt", cwd=tmp_path)
    assert result.returncode != 0
    assert "Available options" in result.stderr and "lstm" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # a sweep: two trainings in one subprocess
def test_two_job_multirun_with_wandb_offline(tmp_path):
    sweep = tmp_path / "sweep"
    result = geoclim_train(
        "-m",
        "model=lstm,cnn",
        "logger=wandb",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        subprocess=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").exists()
        assert list((sweep / job / "wandb").glob("offline-run-*")), "one W&B run per job"
    assert {p.name for p in tmp_path.iterdir()} == {"sweep"}  # no stray run directories


@pytest.mark.slow  # a sweep: two Optuna trials
def test_short_optuna_search_returns_the_best_trial(tmp_path):
    sweep = tmp_path / "optuna"
    result = geoclim_train(
        "hparams_search=lstm_optuna",
        "hydra.sweeper.n_trials=2",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        subprocess=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    values = [
        # the sweep optimises val/rmse (conf/hparams_search)
        json.loads((sweep / job / "metrics.json").read_text())["val/rmse"]
        for job in ("0", "1")
    ]
    assert best["best_value"] == pytest.approx(min(values))
    assert set(best["best_params"]) == {
        "model.net.hidden_size",
        "model.net.num_layers",
        "model.optimizer.lr",
    }


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_matches_single_process(tmp_path):
    common = [
        "data=synthetic_grid",
        "task=synthetic_no2",
        "trainer.max_epochs=2",
        "trainer.enable_progress_bar=false",
        "logger=csv",
    ]
    single = geoclim_train(
        *common, f"hydra.run.dir={tmp_path / 'single'}", cwd=tmp_path, subprocess=True
    )
    ddp = geoclim_train(
        *common,
        "trainer=ddp_cpu",
        f"hydra.run.dir={tmp_path / 'ddp'}",
        cwd=tmp_path,
        subprocess=True,
    )
    assert single.returncode == 0 and ddp.returncode == 0, ddp.stderr[-3000:]
    assert "Starting with 2 processes" in ddp.stdout + ddp.stderr
    m1, m2 = (
        json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("single", "ddp")
    )
    assert m2["train/steps"] == m1["train/steps"]
    # each global batch is split over the 2 ranks and gradients averaged: same trajectory
    # up to float summation order
    assert m2["val/loss"] == pytest.approx(m1["val/loss"], rel=1e-3)
    assert m2["test/rmse/no2"] == pytest.approx(m1["test/rmse/no2"], rel=1e-3)


@pytest.mark.slow
def test_multirun_with_ddp_leaves_no_stray_run_directories(tmp_path):
    sweep = tmp_path / "sweep"
    result = geoclim_train(
        "-m",
        "model=lstm,tft",
        "trainer=ddp_cpu",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        subprocess=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    for job in ("0", "1"):
        assert (sweep / job / "metrics.json").exists()
        assert (sweep / job / "train_ddp_rank1.log").exists()  # rank 1 ran this job only
    assert {p.name for p in tmp_path.iterdir()} == {"sweep"}


def test_data_file_with_unparsable_units_names_variable_file_and_key(tmp_path):
    from tests.cli.test_units_errors import write_station_file

    path = write_station_file(tmp_path / "obs.nc", "blorps per fortnight squared")
    result = geoclim_train(
        "data=file",
        f"data.source.path={path}",
        "task.targets=[no2]",
        "task.past_inputs=[no2,wobble]",
        "debug=smoke",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert f"error: {path}: variable 'wobble': unknown units" in result.stderr
    assert "data.variables.wobble.units" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_eval_val_of_a_network_run_as_the_readme_shows_it(tmp_path):
    run = tmp_path / "run"
    assert (
        geoclim_train(*TINY, f"hydra.run.dir={run}", cwd=tmp_path, subprocess=True).returncode == 0
    )
    result = subprocess.run(
        [sys.executable, "-m", "geoclim.cli.evaluate", f"run_dir={run}", "split=val"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert "predictions.nc holds the test split; predicting the 'val' split with" in log
    assert "checkpoints/best.ckpt" in log and "val scores of" in log
    assert (run / "predictions_val.nc").is_file() and (run / "scores_val.nc").is_file()
