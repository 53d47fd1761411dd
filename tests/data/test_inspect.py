import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from geoclim.data import inspect, samples
from geoclim.errors import SchemaError


def _file(tmp_path, freq="h", n=48, **attrs):
    times = pd.date_range("2020-01-01", periods=n, freq=freq)
    dew = np.linspace(0, 1, n)
    dew[:6] = np.nan
    raw = xr.Dataset(
        {
            "dew": ("time", dew, {"units": "C"}),
            "temperature": ("time", np.full(n, 10.0), {"units": "degC"}),
            "sst": ("time", np.zeros(n)),
            "label": ("time", np.array(["x"] * n)),
        },
        coords={"time": times, "lat": 45.0, "lon": -73.0},
        attrs=attrs,
    )
    raw.to_netcdf(tmp_path / "obs.nc")
    return tmp_path / "obs.nc"


def test_inspect_explains_a_user_file(tmp_path):
    ins = inspect.inspect_dataset(_file(tmp_path, units="K"))
    text = inspect.format_inspection(ins)
    assert "station, 1 station(s); single series" in text
    assert "48 steps of 1 h from 2020-01-01 00:00:00" in text
    assert "calendar proleptic_gregorian" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    assert "kept" in rows["dew"] and "12.50" in rows["dew"]  # 6 of 48 missing
    assert "converted" in rows["t2m"] and "'degC' -> 'K'" in rows["t2m"]
    assert "dropped" in rows["label"] and "not numeric" in rows["label"]
    assert "must declare" in text and "data.variables.sst.units" in text
    assert "global attributes say units='K'" in text


def test_suggested_configs_parse_and_mark_what_must_be_declared(tmp_path):
    ins = inspect.inspect_dataset(_file(tmp_path))
    configs = inspect.suggest_configs(ins)
    data, task = yaml.safe_load(configs["data"]), yaml.safe_load(configs["task"])
    assert data["source"]["path"] == str((tmp_path / "obs.nc").resolve())
    assert data["variables"] == {"sst": {"units": "???", "long_name": "sst"}}
    assert data["window"] == {"stride": None, "patch": 1} and data["batch_size"] is None
    assert task["targets"] == ["dew"] and task["past_inputs"] == ["t2m", "sst"]
    assert task["future_inputs"][:2] == ["hour_sin", "hour_cos"]
    assert (task["input_steps"], task["horizon"]) == (24, 24)


def test_daily_file_gets_a_daily_task(tmp_path):
    ins = inspect.inspect_dataset(_file(tmp_path, freq="D", n=60))
    task = yaml.safe_load(inspect.suggest_configs(ins)["task"])
    assert ins.step == "1 d" and ins.step_kind == "daily"
    assert "hour_sin" not in task["future_inputs"] and task["horizon"] == 7


def test_step_descriptions():
    def t(freq, n=14):
        return pd.date_range("2001-01-01", periods=n, freq=freq).values

    assert inspect.describe_step(t("3h")) == ("3 h", "sub-daily")
    assert inspect.describe_step(t("MS")) == ("1 month (28-31 days)", "monthly")
    assert inspect.describe_step(t("YS")) == ("1 year (365-366 days)", "other")
    irregular = np.array(["2001-01-01", "2001-01-02", "2001-01-05"], dtype="datetime64[ns]")
    assert inspect.describe_step(irregular)[0] == "irregular (1 d to 3 d)"


def test_write_configs_writes_hydra_groups(tmp_path):
    ins = inspect.inspect_dataset(_file(tmp_path))
    written = inspect.write_configs(ins, tmp_path / "cfg")
    assert written == [tmp_path / "cfg/data/obs.yaml", tmp_path / "cfg/task/obs.yaml"]
    assert yaml.safe_load(written[1].read_text())["targets"] == ["dew"]
    assert not list((tmp_path / "cfg").rglob("*.tmp"))


@pytest.mark.parametrize("name", samples.available())
def test_every_embedded_sample_is_explained(name):
    ins = inspect.inspect_dataset(name)
    text = inspect.format_inspection(ins)
    assert text.startswith(f"{name} (embedded sample)") and "nothing to declare" in text
    assert all(r.action == "kept" for r in ins.report.rows)
    data = yaml.safe_load(inspect.suggest_configs(ins)["data"])
    assert data["source"] == {"name": name} and data["defaults"][0] == {"source": "sample"}


def test_missing_path_is_no_such_file(tmp_path):
    with pytest.raises(SchemaError, match="no such file"):
        inspect.inspect_dataset(tmp_path / "nope.nc")
