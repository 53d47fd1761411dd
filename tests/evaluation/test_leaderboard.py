import io

import numpy as np
import pandas as pd
import pytest

from geoclim.cli.compare import compare_main
from geoclim.errors import DataError
from geoclim.evaluation import leaderboard as lb
from geoclim.evaluation import render, table


def test_find_runs_searches_recursively_and_names_bad_paths(multirun_dir, tmp_path):
    runs = lb.find_runs([multirun_dir])
    assert [p.name for p in runs] == ["0", "1"]
    assert lb.find_runs([multirun_dir / "1"]) == [multirun_dir / "1"]
    with pytest.raises(DataError, match="no such run"):
        lb.find_runs([tmp_path / "missing"])
    with pytest.raises(DataError, match="no run directory found"):
        lb.find_runs([tmp_path])


def test_leaderboard_ranks_by_the_chosen_score(multirun_dir):
    runs = [lb.load_run(p) for p in lb.find_runs([multirun_dir])]
    assert {r.model for r in runs} == {"persistence", "climatology"}
    assert runs[0].data_id == runs[1].data_id and runs[0].data_id.startswith("cfg:")

    by_rmse = lb.leaderboard(runs, sort_by="rmse", root=multirun_dir)
    rmse = by_rmse["rmse/no2"].to_numpy()
    assert (rmse[:-1] <= rmse[1:]).all()
    assert list(by_rmse["rank"]) == [1, 2]
    assert by_rmse.attrs["sort_key"] == "test/rmse/no2"

    by_skill = lb.leaderboard(runs, sort_by="skill_climatology/no2", lead=3)
    assert by_skill.attrs["sort_key"] == "test/skill_climatology/no2/lead_3"
    skill = by_skill["skill_climatology/no2/lead_3"].to_numpy()
    assert skill[0] >= skill[1]
    per_lead = [c for c in by_skill.columns if c.startswith("skill_persistence/no2/lead_")]
    assert per_lead == [f"skill_persistence/no2/lead_{k}" for k in (1, 2, 3)]
    persistence = by_skill[by_skill.model == "persistence"]
    assert (persistence[per_lead].to_numpy() == 0).all()
    assert "smoothing_days=15.0" in by_skill[by_skill.model == "climatology"]["params"].item()

    with pytest.raises(DataError, match="unknown sort metric"):
        lb.leaderboard(runs, sort_by="rmsee")


def test_render_formats(multirun_dir):
    runs = [lb.load_run(p) for p in lb.find_runs([multirun_dir])]
    df = lb.leaderboard(runs, root=multirun_dir)
    table = render.render(df, "table")
    assert "persistence" in table.splitlines()[2] or "persistence" in table.splitlines()[3]
    markdown = render.render(df, "markdown")
    assert markdown.splitlines()[1].startswith("|---:|:---|")
    back = pd.read_csv(io.StringIO(render.render(df, "csv")))
    assert list(back["model"]) == list(df["model"])
    assert "skill_persistence/no2/lead_3" in back.columns
    with pytest.raises(DataError, match="valid formats"):
        render.render(df, "html")


def test_compare_cli_writes_tables_and_figures(multirun_dir, tmp_path, capsys):
    out = tmp_path / "report"
    assert compare_main([str(multirun_dir), "--out", str(out), "--lead", "2"]) == 0
    printed = capsys.readouterr().out
    assert "ranked by test/rmse/no2/lead_2 (lower is better)" in printed
    for name in (
        "leaderboard.md",
        "leaderboard.csv",
        "lead_curves.png",
        "error_map_no2.png",
        "timeseries_no2.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "![lead_curves](lead_curves.png)" in (out / "leaderboard.md").read_text()


def test_compare_cli_reports_user_errors(multirun_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        compare_main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
    assert "no such run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compare_main([str(multirun_dir), "--sort-by", "nonsense"])
    assert "unknown sort metric" in capsys.readouterr().err


def _record(path, model, metrics, cv=None, overrides=()):
    config = {"model": {}, "cv": cv or {"name": "none"}}
    return lb.RunRecord(
        path=path,
        model=model,
        config=config,
        metrics=metrics,
        data_id="d",
        overrides=list(overrides),
    )


@pytest.mark.parametrize("row", table.METRICS, ids=lambda r: r.name + "_" + r.needs)
def test_leaderboard_sorts_every_table_metric_in_its_direction(row, tmp_path):
    name = row.name + {"reference": "_persistence", "interval": "_80"}.get(row.needs, "")
    values = [0.95, 0.79, -0.5, 0.3]
    runs = [
        _record(tmp_path / str(i), f"m{i}", {"test/rmse/no2": 1.0, f"test/{name}/no2": v})
        for i, v in enumerate(values)
    ]
    df = lb.leaderboard(runs, sort_by=f"{name}/no2")
    best = {"lower": -0.5, "higher": 0.95, "magnitude": 0.3, "nominal": 0.79}[row.direction]
    assert df[f"{name}/no2"].iloc[0] == best
    assert df.attrs["direction"] == row.direction


def test_labels_stay_unique_across_sweeps(tmp_path):
    paths = [tmp_path / "a" / "0", tmp_path / "b" / "0", tmp_path / "b" / "1"]
    runs = [_record(p, "lstm", {"test/rmse/no2": 1.0}) for p in paths]
    runs.append(_record(tmp_path / "c" / "0", "tft", {"test/rmse/no2": 2.0}))
    labels = lb.run_labels(runs)
    assert len(set(labels.values())) == 4
    assert labels[paths[0]] == "lstm (a/0)" and labels[tmp_path / "c" / "0"] == "tft"


def test_intervals_paired_columns_and_fold_summary(tmp_path):
    def metrics(rmse, ref_rmse):
        m = {"test/rmse/no2": rmse, "test/rmse_ci_lower/no2": rmse - 0.1}
        m |= {"test/rmse_ci_upper/no2": rmse + 0.1, "test/rmse/no2/lead_1": rmse}
        m |= {"test/rmse_ci_lower/no2/lead_1": rmse - 0.2, "test/rmse_ci_upper/no2/lead_1": rmse}
        m |= {"test/rmse_persistence/no2": ref_rmse, "test/rmse_climatology/no2": ref_rmse + 1}
        m |= {"test/rmse_diff_persistence/no2": rmse - ref_rmse}
        m |= {"test/dm_pvalue_persistence/no2/lead_1": 0.01}
        return m

    cv = {"name": "blocked_time", "k": 2}
    runs = [
        _record(tmp_path / "s" / str(f), "lstm", metrics(1.0 + f, 2.0), {**cv, "fold": f},
                ["model=lstm", f"cv.fold={f}"])
        for f in (0, 1)
    ]  # fmt: skip
    df = lb.leaderboard(runs)
    assert list(df["vs/no2"]) == ["persistence", "persistence"]
    assert list(df["rmse_diff_best/no2"]) == [-1.0, 0.0]
    assert df["dm_pvalue_best/no2/lead_1"].tolist() == [0.01, 0.01]
    back = pd.read_csv(io.StringIO(render.render(df, "csv")))
    assert {"rmse_ci_lower/no2", "rmse_ci_upper/no2/lead_1"} <= set(back.columns)
    shown = render.render(df, "markdown")
    assert "1 [0.9, 1.1]" in shown and "rmse_ci_lower" not in shown
    folds = lb.aggregate_folds(df, runs)
    assert folds["folds"].tolist() == [2]
    assert folds["rmse/no2 mean"].item() == pytest.approx(1.5)
    assert folds["rmse/no2 std"].item() == pytest.approx(np.std([1.0, 2.0], ddof=1))
    assert folds["rmse/no2 per fold"].item() == "0:1 1:2"
    plain = [_record(tmp_path / "x", "p", metrics(3.0, 2.0))]
    assert lb.aggregate_folds(lb.leaderboard(plain), plain) is None


def test_lead_columns_name_the_step(multirun_dir):
    runs = [lb.load_run(p) for p in lb.find_runs([multirun_dir])]
    df = lb.leaderboard(runs, root=multirun_dir)
    assert df.attrs["lead_step"] == "1h"
    assert render.render(df, "table").splitlines()[-1] == "@k: lead k, in steps of 1h"
    assert "in steps of" not in render.render(df, "csv")


def test_lead_axis_reads_calendar_units():
    import numpy as np
    import xarray as xr

    from geoclim.evaluation.plots import lead_axis

    x, label = lead_axis(xr.DataArray([1, 2, 3], dims="lead_time", attrs={"units": "months"}))
    assert label == "lead time (months)" and list(x) == [1.0, 2.0, 3.0]
    x, label = lead_axis(np.array([1, 2], dtype="timedelta64[h]").astype("timedelta64[ns]"))
    assert label == "lead time (h)" and list(x) == [1.0, 2.0]
