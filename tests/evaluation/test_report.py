"""The console score table printed by geoclim-train and geoclim-eval."""

import math

from geoclim.evaluation.report import score_table, targets


def _metrics(var="no2", ci=True):
    m = {
        f"test/rmse/{var}": 2.5,
        f"test/rmse/{var}/lead_1": 1.0,
        f"test/rmse/{var}/lead_3": 4.0,
        f"test/rmse/{var}/lead_2": 2.5,
        f"test/skill_persistence/{var}": 0.25,
        f"test/skill_climatology/{var}": -0.5,
        f"val/rmse/{var}": 9.0,
    }
    if ci:
        m |= {
            f"test/rmse_ci_lower/{var}": 2.0,
            f"test/rmse_ci_upper/{var}": 3.0,
            f"test/skill_persistence_ci_lower/{var}": 0.1,
            f"test/skill_persistence_ci_upper/{var}": 0.4,
        }
    return m


def test_table_rows_exact():
    lines = score_table(_metrics(), "test", title="lstm").splitlines()
    assert lines[0].startswith("test scores of lstm (lead-mean scores, [bootstrap interval]")
    assert lines[1].split("  ")[0] == "target"
    assert "RMSE lead 1 -> 3" in lines[1]
    # a skill interval of one run, not of another column; climatology has none
    assert lines[3].split() == [
        "no2",
        "2.500",
        "[2.000,",
        "3.000]",
        "0.250",
        "[0.100,",
        "0.400]",
        "-0.500",
        "1.000",
        "->",
        "4.000",
    ]


def test_columns_align_across_targets():
    metrics = _metrics("no2") | _metrics("pm25", ci=False)
    lines = score_table(metrics).splitlines()
    assert [line.split()[0] for line in lines[3:]] == ["no2", "pm25"]
    col = lines[1].index("skill vs persistence")
    assert lines[3][col:].startswith("0.250") and lines[4][col:].startswith("0.250")


def test_other_split_and_missing_scores_show_a_dash():
    table = score_table(_metrics(), "val")
    row = table.splitlines()[3].split()
    assert row == ["no2", "9.000", "-", "-", "-"]
    assert "bootstrap" not in table.splitlines()[0]


def test_non_finite_values_are_a_dash():
    metrics = _metrics(ci=False) | {"test/skill_climatology/no2": math.nan}
    assert score_table(metrics).splitlines()[3].split()[3] == "-"


def test_no_scores_is_one_line_saying_so():
    assert score_table({"val/loss": 1.0}, "test") == (
        "test scores: none (no test/rmse/<target> in the metrics)"
    )


def test_targets_ignore_per_lead_and_region_keys():
    metrics = _metrics("no2") | {"test_east/rmse/o3": 1.0, "test/rmse": 3.0}
    assert targets(metrics) == ["no2"]
