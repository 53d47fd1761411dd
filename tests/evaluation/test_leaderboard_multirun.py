# The real thing: a 2-job geoclim-train multirun of the baselines, then its leaderboard.

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from geoclim.cli.compare import compare_main
from geoclim.evaluation import leaderboard as lb

ROOT = Path(__file__).resolve().parents[2]
TRAIN = shutil.which("geoclim-train", path=str(Path(sys.executable).parent))

pytestmark = [
    pytest.mark.slow,  # a sweep: a two-job multirun in a subprocess
    pytest.mark.skipif(
        TRAIN is None or not (ROOT / "conf" / "train.yaml").is_file(),
        reason="geoclim-train or conf/train.yaml not installed yet",
    ),
]


def test_multirun_of_baselines_makes_a_leaderboard(tmp_path, capsys):
    env = {**os.environ, "GEOCLIM_LOG_DIR": str(tmp_path / "logs"), "WANDB_MODE": "disabled"}
    cmd = [
        TRAIN,
        "-m",
        "model=persistence,climatology",
        "data=synthetic_grid",
        "task=synthetic_no2",
        "debug=smoke",
        "logger=none",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    runs = lb.find_runs([tmp_path / "logs"])
    assert len(runs) == 2
    for run in runs:
        for name in ("metrics.json", "predictions.nc", "scores.nc", ".hydra/config.yaml"):
            assert (run / name).is_file(), f"{run}/{name}"
    records = [lb.load_run(p) for p in runs]
    assert {r.model for r in records} == {"persistence", "climatology"}
    assert len({r.data_id for r in records}) == 1

    board = lb.leaderboard(records, sort_by="skill_persistence")
    persistence = board[board.model == "persistence"]
    assert persistence["skill_persistence/no2"].item() == 0.0
    climatology = board[board.model == "climatology"]
    assert climatology["skill_climatology/no2"].item() == 0.0

    out = tmp_path / "report"
    assert compare_main([str(tmp_path / "logs"), "--out", str(out), "--format", "markdown"]) == 0
    assert "| rank |" in capsys.readouterr().out
    for name in (
        "leaderboard.md",
        "leaderboard.csv",
        "lead_curves.png",
        "error_map_no2.png",
        "timeseries_no2.png",
    ):
        assert (out / name).is_file(), name
