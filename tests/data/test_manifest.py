import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from geoclim.data import schema
from geoclim.data.ingest import epa_merge, store
from geoclim.data.ingest.manifest import Manifest
from geoclim.data.ingest.store import ingest_folder, open_store

FIXTURES = Path(__file__).parent / "fixtures" / "epa"
FILES = ["o3_nc.csv", "o3_va.csv", "pm25_nc.csv", "pm25_va.csv"]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in FILES:
        shutil.copy(FIXTURES / name, folder / name)
    return folder


def test_first_ingest_builds_store_and_manifest(raw, tmp_path):
    report = ingest_folder(raw, tmp_path / "store")
    assert report.ingested == tuple(FILES) and report.rebuilt
    assert (report.stations, report.times, report.variables) == (2, 5, ("pm25", "o3"))
    ds = open_store(tmp_path / "store")
    schema.validate(ds, ["pm25", "o3"])
    xr.testing.assert_equal(ds.load(), epa_merge.open_epa_daily(FIXTURES))
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    record = manifest["files"]["pm25_nc.csv"]
    assert record["rows"] == 8 and record["pollutant"] == "pm25"
    assert record["sites"] == ["370630015"]
    assert (record["time_start"], record["time_end"]) == ("2024-01-01", "2024-01-04")
    assert (tmp_path / "store" / record["table"]).exists()
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [
        "manifest.json",
        "stations.nc",
        "tables",
    ]


def test_reingest_unchanged_is_a_noop(raw, tmp_path):
    ingest_folder(raw, tmp_path / "store")
    before = snapshot(tmp_path / "store")
    report = ingest_folder(raw, tmp_path / "store")
    assert report.skipped == tuple(FILES) and not report.ingested and not report.rebuilt
    assert snapshot(tmp_path / "store") == before


def test_changed_file_replaces_its_rows(raw, tmp_path):
    ingest_folder(raw, tmp_path / "store")
    old_table = Manifest.load(tmp_path / "store" / "manifest.json").files["o3_va.csv"].table
    path = raw / "o3_va.csv"
    path.write_text(path.read_text().replace(",0.052,", ",0.061,"))
    report = ingest_folder(raw, tmp_path / "store")
    assert report.replaced == ("o3_va.csv",) and len(report.skipped) == 3
    ds = open_store(tmp_path / "store")
    assert float(ds.o3.sel(station="510130020", time="2024-01-02")) == 61.0
    assert float(ds.o3.sel(station="370630015", time="2024-01-02")) == 45.0
    assert not (tmp_path / "store" / old_table).exists()
    assert len(list((tmp_path / "store" / "tables").iterdir())) == 4


def test_malformed_changed_file_keeps_its_earlier_version(raw, tmp_path):
    ingest_folder(raw, tmp_path / "store")
    before = snapshot(tmp_path / "store")
    bad = FIXTURES.joinpath("pm25_va.csv").read_text().replace("01/03/2024", "13/03/2024", 1)
    (raw / "pm25_va.csv").write_text(bad)
    report = ingest_folder(raw, tmp_path / "store")
    assert [p.path for p in report.rejected] == ["pm25_va.csv"] and report.partial
    assert str(report.rejected[0].shown[0]).startswith("line 3: bad value '13/03/2024'")
    assert report.kept_previous == ("pm25_va.csv",) and "earlier version" in str(report)
    assert not report.rebuilt and snapshot(tmp_path / "store") == before


def test_only_bad_files_on_first_ingest_create_nothing(raw, tmp_path):
    for name in FILES[1:]:
        (raw / name).unlink()
    (raw / FILES[0]).write_text("")
    report = ingest_folder(raw, tmp_path / "store")
    expected = f"{FILES[0]}, line 1: file is empty; expected a header line"
    assert report.rejected[0].format() == expected
    assert not (tmp_path / "store").exists()


@pytest.mark.parametrize("target", ["manifest", "netcdf"])
def test_exception_after_parsing_rolls_back(raw, tmp_path, monkeypatch, target):
    (raw / "pm25_va.csv").unlink()
    ingest_folder(raw, tmp_path / "store")
    before = snapshot(tmp_path / "store")
    shutil.copy(FIXTURES / "pm25_va.csv", raw / "pm25_va.csv")

    def boom(*args, **kwargs):
        raise RuntimeError("injected")

    if target == "manifest":  # the very last step: stations.nc has already been swapped
        monkeypatch.setattr(Manifest, "save", boom)
    else:
        monkeypatch.setattr(store, "write_netcdf", boom)
    with pytest.raises(RuntimeError, match="injected"):
        ingest_folder(raw, tmp_path / "store")
    assert snapshot(tmp_path / "store") == before
    monkeypatch.undo()
    assert ingest_folder(raw, tmp_path / "store").ingested == ("pm25_va.csv",)


def test_archive_moves_files_and_keeps_their_rows(raw, tmp_path):
    archive = tmp_path / "archive"
    report = ingest_folder(raw, tmp_path / "store", archive_dir=archive)
    assert report.archived == tuple(FILES)
    assert not list(raw.iterdir()) and sorted(p.name for p in archive.iterdir()) == FILES
    report = ingest_folder(raw, tmp_path / "store", archive_dir=archive)
    assert not report.rebuilt and report.stations == 2
    # a new download of an archived file replaces its rows; the old raw file is kept aside
    path = raw / "o3_nc.csv"
    path.write_text((archive / "o3_nc.csv").read_text().replace(",0.031,", ",0.033,"))
    report = ingest_folder(raw, tmp_path / "store", archive_dir=archive)
    assert report.replaced == ("o3_nc.csv",)
    assert float(open_store(tmp_path / "store").o3.values[0, 0]) == 33.0
    assert len(list(archive.glob("o3_nc*.csv"))) == 2


def test_stations_file_out_of_step_with_manifest_is_rebuilt(raw, tmp_path):
    ingest_folder(raw, tmp_path / "store")
    expected = open_store(tmp_path / "store").load()
    (tmp_path / "store" / "stations.nc").write_bytes(b"half-written")
    report = ingest_folder(raw, tmp_path / "store")
    assert report.rebuilt and not report.ingested
    xr.testing.assert_identical(open_store(tmp_path / "store").load(), expected)


def test_result_does_not_depend_on_arrival_order(raw, tmp_path):
    ingest_folder(raw, tmp_path / "all")
    partial = tmp_path / "partial"
    partial.mkdir()
    for name in reversed(FILES):
        shutil.copy(raw / name, partial / name)
        ingest_folder(partial, tmp_path / "incremental")
    a = open_store(tmp_path / "all").load()
    b = open_store(tmp_path / "incremental").load()
    np.testing.assert_array_equal(a.pm25.values, b.pm25.values)
    np.testing.assert_array_equal(a.o3.values, b.o3.values)


def test_exception_during_first_commit_leaves_no_store(raw, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(Manifest, "save", boom)
    with pytest.raises(RuntimeError, match="injected"):
        ingest_folder(raw, tmp_path / "store")
    assert not (tmp_path / "store").exists()
