import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoclim.cli.main import main
from geoclim.data.ingest import EXIT_PARTIAL, ingest_folder, open_store, store
from geoclim.data.ingest.epa import ON_BAD_ROWS
from geoclim.data.ingest.epa_merge import Superseded
from geoclim.errors import ConfigError, IngestError
from tests.data.airdata import days, set_mtime, write_csv

FIXTURES = Path(__file__).parent / "fixtures" / "epa"
GOOD_FILES = ["o3_nc.csv", "o3_va.csv", "pm25_nc.csv"]
O3 = "Daily Max 8-hour Ozone Concentration"


def ozone(path: Path, first_day: int, n: int, ppm: str, mtime: int) -> Path:
    rows = [{**d, O3: ppm} for d in days(n, start=first_day)]
    path.parent.mkdir(parents=True, exist_ok=True)
    return set_mtime(write_csv(path, rows), mtime)


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    for name in GOOD_FILES:
        shutil.copy(FIXTURES / name, folder / name)
    rows = days(28)
    for i in range(3, 28):  # 25 bad values on lines 5..29
        rows[i][O3] = "0.04x"
    write_csv(folder / "broken.csv", rows)
    return folder


def test_broken_file_among_good_ones_is_reported_and_the_rest_ingested(raw, tmp_path, capsys):
    assert main(["ingest", str(raw), str(tmp_path / "store")]) == EXIT_PARTIAL
    out = capsys.readouterr().out
    assert "3 new, 0 replaced, 0 skipped, 0 archived, 1 rejected" in out
    assert "broken.csv: 25 bad lines of 28 data rows (first 20 shown):" in out
    bad = [line.strip() for line in out.splitlines() if line.strip().startswith("line ")]
    assert bad[0] == f"line 5: bad value '0.04x' in column {O3!r}; expected a number"
    assert [b.split(":")[0] for b in bad] == [f"line {n}" for n in range(5, 25)]
    assert "... and 5 more bad line(s)" in out
    assert "partial: 1 file(s) rejected, 0 row(s) dropped (exit status 3)" in out
    ds = open_store(tmp_path / "store")
    assert ds.station.values.tolist() == ["370630015", "510130020"]
    assert float(ds.pm25.sel(station="370630015", time="2024-01-01")) == 8.5
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert sorted(manifest["files"]) == sorted(GOOD_FILES)


def test_rejected_file_is_tried_again_and_not_archived(raw, tmp_path):
    archive = tmp_path / "archive"
    ingest_folder(raw, tmp_path / "store", archive_dir=archive)
    assert [p.name for p in raw.iterdir()] == ["broken.csv"]
    report = ingest_folder(raw, tmp_path / "store", archive_dir=archive)
    assert [p.path for p in report.rejected] == ["broken.csv"] and not report.rebuilt
    text = (raw / "broken.csv").read_text().replace("0.04x", "0.044")
    (raw / "broken.csv").write_text(text)
    report = ingest_folder(raw, tmp_path / "store", archive_dir=archive)
    assert report.ingested == ("broken.csv",) and report.exit_code == 0
    assert report.archived == ("broken.csv",) and report.stations == 3


def test_skip_ingests_valid_rows_and_reports_the_dropped_ones(raw, tmp_path, capsys):
    code = main(["ingest", str(raw), str(tmp_path / "store"), "--on-bad-rows=skip"])
    out = capsys.readouterr().out
    assert code == EXIT_PARTIAL and "0 rejected" in out
    assert "dropped bad rows of 1 file(s) (on-bad-rows=skip):" in out
    assert "broken.csv: 25 bad lines of 28 data rows (first 20 shown):" in out
    assert "partial: 0 file(s) rejected, 25 row(s) dropped" in out
    ds = open_store(tmp_path / "store")
    site = ds.o3.sel(station="060371103")
    assert site.sel(time=slice("2024-06-01", "2024-06-03")).values.tolist() == [41.0] * 3
    assert np.isnan(site.sel(time=slice("2024-06-04", None)).values).all()
    record = json.loads((tmp_path / "store" / "manifest.json").read_text())["files"]
    assert (record["broken.csv"]["rows"], record["broken.csv"]["dropped_rows"]) == (3, 25)
    # unchanged files are not parsed again: the next run has nothing left out
    assert main(["ingest", str(raw), str(tmp_path / "store")]) == 0


def test_unreadable_file_is_rejected_not_fatal(raw, tmp_path, monkeypatch):
    real = store.md5_file

    def md5_file(path):  # what a file without read permission does (root reads anything)
        if Path(path).name == "broken.csv":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(store, "md5_file", md5_file)
    report = ingest_folder(raw, tmp_path / "store")
    assert report.rejected[0].format() == "broken.csv: cannot be read: Permission denied"
    assert report.ingested == tuple(GOOD_FILES) and report.exit_code == EXIT_PARTIAL


def test_skip_rejects_a_file_without_a_valid_row(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    ozone(raw / "good.csv", 1, 3, "0.040", 1)
    write_csv(raw / "hopeless.csv", [{**d, "Date": "June"} for d in days(3)])
    report = ingest_folder(raw, tmp_path / "store", on_bad_rows="skip")
    assert report.ingested == ("good.csv",) and not report.dropped
    assert report.rejected[0].path == "hopeless.csv" and report.rejected[0].count == 3


@pytest.fixture
def revised(tmp_path):
    raw = tmp_path / "raw"
    ozone(raw / "2024" / "o3.csv", 1, 5, "0.040", mtime=1_700_000_000)
    ozone(raw / "2024" / "revised" / "o3.csv", 3, 4, "0.050", mtime=1_700_000_100)
    ozone(raw / ".partial" / "o3.csv", 1, 9, "0.999", mtime=1_700_000_200)  # hidden: ignored
    return raw


def test_recursive_folder_with_a_revised_file(revised, tmp_path, capsys):
    report = ingest_folder(revised, tmp_path / "flat")
    assert not report.ingested and report.stations == 0
    assert main(["ingest", str(revised), str(tmp_path / "store"), "--recursive"]) == 0
    out = capsys.readouterr().out
    assert "2024/o3.csv: 3 row(s) superseded by 2024/revised/o3.csv" in out
    assert "most recently modified file wins" in out
    ds = open_store(tmp_path / "store")
    assert ds.o3.values[:, 0].tolist() == [40.0, 40.0, 50.0, 50.0, 50.0, 50.0]


def test_revised_file_rule_is_by_mtime_then_path(revised, tmp_path):
    set_mtime(revised / "2024" / "revised" / "o3.csv", 1_600_000_000)  # now the older one
    report = ingest_folder(revised, tmp_path / "a", recursive=True)
    assert report.superseded == (Superseded("2024/revised/o3.csv", "2024/o3.csv", 3),)
    assert open_store(tmp_path / "a").o3.values[:, 0].tolist() == [40.0] * 5 + [50.0]
    set_mtime(revised / "2024" / "revised" / "o3.csv", 1_700_000_000)  # a tie: later path
    report = ingest_folder(revised, tmp_path / "b", recursive=True)
    assert report.superseded == (Superseded("2024/o3.csv", "2024/revised/o3.csv", 3),)


def test_recursive_leaves_out_store_and_archive_inside_the_raw_folder(revised):
    report = ingest_folder(revised, revised / "store", recursive=True, archive_dir=revised / "old")
    assert report.archived == ("2024/o3.csv", "2024/revised/o3.csv")
    assert (revised / "old" / "2024" / "revised" / "o3.csv").is_file()
    report = ingest_folder(revised, revised / "store", recursive=True, archive_dir=revised / "old")
    assert not report.ingested and not report.skipped and not report.rebuilt
    assert report.stations == 1


def test_store_of_the_previous_version_is_read_and_updated(raw, tmp_path):
    store = tmp_path / "store"
    (raw / "broken.csv").unlink()
    ingest_folder(raw, store)
    manifest = json.loads((store / "manifest.json").read_text())
    for record in manifest["files"].values():  # no FIPS columns, mtimes or dropped rows then
        del record["mtime_ns"], record["dropped_rows"]
        table = store / record["table"]
        frame = pd.read_csv(table, dtype=str).drop(columns=["state_fips", "county_fips"])
        table.write_bytes(gzip.compress(frame.to_csv(index=False).encode(), mtime=0))
    del manifest["raw_dir"]
    (store / "manifest.json").write_text(json.dumps(manifest))
    (store / ".stations.nc.bak").write_bytes(b"old backup")
    (raw / "o3_va.csv").write_text((raw / "o3_va.csv").read_text().replace(",0.052,", ",0.061,"))
    report = ingest_folder(raw, store)
    assert report.replaced == ("o3_va.csv",) and report.recovered == (
        f"removed backup {store / '.stations.nc.bak'}",
    )
    ds = open_store(store)
    assert ds.state_fips.values.tolist() == ["37", "51"]
    assert float(ds.o3.sel(station="510130020", time="2024-01-02")) == 61.0


def test_fips_codes_are_text_station_coordinates_in_the_store(raw, tmp_path):
    ingest_folder(raw, tmp_path / "store", on_bad_rows="skip")
    ds = open_store(tmp_path / "store")
    assert ds.state_fips.values.tolist() == ["06", "37", "51"]
    assert ds.county_fips.values.tolist() == ["037", "063", "013"]
    assert ds.state_fips.dtype.kind in "UO" and "leading zeros" in ds.state_fips.attrs["long_name"]


def test_bad_option_and_missing_folder_are_user_errors(tmp_path, capsys):
    assert list(ON_BAD_ROWS) == ["reject", "skip"]  # the CLI's choices
    with pytest.raises(ConfigError, match=r"on_bad_rows='drop'"):
        ingest_folder(tmp_path, tmp_path / "store", on_bad_rows="drop")
    with pytest.raises(IngestError, match=r"nowhere: raw folder does not exist"):
        ingest_folder(tmp_path / "nowhere", tmp_path / "store")
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(tmp_path / "nowhere"), str(tmp_path / "store")])
    assert info.value.code == 2 and "raw folder does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["ingest", str(tmp_path), str(tmp_path / "store"), "--on-bad-rows=drop"])
    assert info.value.code == 2


def test_ingest_help_shows_defaults_exit_codes_and_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        main(["ingest", "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for fragment in ("(default: reject)", "(default: off)", "3  partial", "example:"):
        assert fragment in out
    assert "geoclim ingest ~/airdata ~/stores/airdata --recursive --on-bad-rows=skip" in out
