import numpy as np
import pytest

from geoclim.errors import DataError
from geoclim.evaluation import table

EXAMPLES = {"reference": "_persistence", "interval": "_80"}


def _name(row):
    return row.name + EXAMPLES.get(row.needs, "")


def test_lookup_resolves_every_row_and_family():
    for row in table.METRICS:
        found, nominal = table.lookup(_name(row))
        assert found is row
        assert (nominal == 0.8) if row.needs == "interval" else nominal is None
    assert table.lookup("rmse_diff_climatology")[0].name == "rmse_diff"
    assert table.lookup("dm_pvalue_persistence")[0].name == "dm_pvalue"
    assert table.lookup("rmse_ci_upper")[0].name == "rmse"
    with pytest.raises(DataError, match="unknown metric 'brier'.*rmse"):
        table.lookup("brier")


@pytest.mark.parametrize("row", table.METRICS, ids=_name)
def test_sort_value_orders_best_first(row):
    name = _name(row)
    values = np.array([0.95, 0.79, -0.5, 0.3, np.nan])
    best = {
        "lower": -0.5,
        "higher": 0.95,
        "magnitude": 0.3,
        "nominal": 0.79,
    }[row.direction]
    order = np.argsort(table.sort_value(name, values), kind="stable")
    assert values[order[0]] == best
    assert np.isnan(values[order[-1]])


def test_per_lead_and_ci_flags():
    assert table.is_per_lead("rmse") and table.is_per_lead("skill_climatology")
    assert not table.is_per_lead("bias") and not table.is_per_lead("unknown_metric")
    assert {r.name for r in table.ci_rows()} == {"rmse", "mae", "skill", "rmse_diff", "crps"}
