"""Cross-validation folds as jobs of a real ``geoclim-train`` multirun, summarised by compare."""

import pytest

from geoclim.cli.compare import compare_main
from tests.integration.test_train_cli import TINY
from tests.support.cli import geoclim_train


@pytest.mark.slow
def test_blocked_time_folds_are_jobs_of_a_multirun_and_compare_aggregates_them(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    result = geoclim_train(
        "-m",
        "model=persistence,climatology",
        "cv=blocked_time",
        "cv.k=2",
        "cv.val_fraction=0.4",
        "cv.fold=0,1",
        *TINY,
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert compare_main([str(sweep), "--no-maps", "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    assert "cross-validation folds" in printed
    folds = (tmp_path / "report" / "folds.csv").read_text().splitlines()
    assert len(folds) == 3 and all(",2," in line for line in folds[1:])  # 2 models x 2 folds
