import subprocess
import sys

import pytest


@pytest.mark.slow  # three trainings, a leaderboard, an export and a served request
@pytest.mark.timeout(900)
def test_demo_trains_ranks_exports_and_serves(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoclim.cli.demo",
            "--out",
            str(out),
            "--models",
            "lstm,persistence,climatology",
            "debug=smoke",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    for stage in ("1. Embedded real data", "2. Forecasters", "3. Leaderboard", "4. Export"):
        assert stage in text
    assert "ranked by test/rmse/no2" in text
    assert "best network on the test split: lstm" in text
    assert "-> 200, request id" in text
    assert "mean over covered cells" in text
    assert (out / "leaderboard" / "leaderboard.csv").exists()
    assert (out / "leaderboard" / "lead_curves.png").exists()
    assert (out / "registry" / "registry.json").exists()
