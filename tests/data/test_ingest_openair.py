from pathlib import Path

import numpy as np
import pytest

from geoclim.data import schema
from geoclim.data.ingest.openair import STATION_ID, open_openair
from geoclim.errors import IngestError

HEADER = '"","date","ws","wd","nox","no2","o3","pm10","so2","co","pm25"'
ROWS = [
    '"1",1998-01-01 00:00:00,0.6,280,285,39,1,29,4.7225,3.3725,NA',
    '"2",1998-01-01 01:00:00,2.16,230,NA,NA,NA,37,NA,NA,NA',
    '"3",1998-01-01 03:00:00,2.16,170,493,52,3,35,7.6625,10.2175,NA',
]


def write(tmp_path: Path, rows: list[str], name: str = "openair.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_gaps_are_regularised_and_values_kept(tmp_path):
    ds = open_openair(write(tmp_path, ROWS))
    schema.validate(ds, ["no2", "co", "ws"])
    assert list(ds.station.values) == [STATION_ID]
    assert ds.latitude.values[0] == 51.52253 and ds.longitude.values[0] == -0.15461
    assert ds.sizes["time"] == 4  # 02:00 was absent
    assert np.isnan(ds.no2.values[:, 0]).tolist() == [False, True, True, False]
    assert ds.no2.values[3, 0] == 52.0 and ds.no2.attrs["units"] == "ppb"
    assert ds.co.values[0, 0] == np.float32(3.3725) and ds.co.attrs["units"] == "ppm"
    assert np.isnan(ds.pm25.values).all()
    assert ds.attrs["missing_hours"] == 1


def test_error_duplicate_stamp(tmp_path):
    rows = [*ROWS, ROWS[2].replace('"3"', '"4"')]
    with pytest.raises(IngestError, match=r"dup\.csv, line 5: .*each hour once"):
        open_openair(write(tmp_path, rows, "dup.csv"))


def test_error_non_numeric(tmp_path):
    rows = [ROWS[0], ROWS[1].replace("2.16", "calm")]
    with pytest.raises(IngestError, match=r"num\.csv, line 3: bad value 'calm' in column 'ws'"):
        open_openair(write(tmp_path, rows, "num.csv"))


def test_error_missing_column(tmp_path):
    path = tmp_path / "cols.csv"
    path.write_text(HEADER.replace(',"pm25"', "") + "\n")
    with pytest.raises(IngestError, match=r"cols\.csv, line 1: missing column\(s\) \['pm25'\]"):
        open_openair(path)
