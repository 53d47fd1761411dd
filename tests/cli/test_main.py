import subprocess
import sys

import pytest

from geoclim.cli.main import main


def test_summary_of_a_sample(capsys):
    assert main(["summary", "naps_no2"]) == 0
    out = capsys.readouterr().out
    assert "196 stations" in out and "no2" in out


def test_samples_lists_every_embedded_dataset(capsys):
    assert main(["samples"]) == 0
    out = capsys.readouterr().out
    for name in ("naps_no2", "naps_no2_grid", "london"):
        assert name in out


def test_unknown_sample_is_a_clean_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["summary", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "nope: no such file or store, and no embedded sample" in err and "Traceback" not in err


def test_cli_process_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.nc"
    bad.write_text("not a netcdf file")
    proc = subprocess.run(
        [sys.executable, "-m", "geoclim.cli.main", "summary", str(bad)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "bad.nc: cannot be read as netcdf4" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_data_stage_grids_the_network(capsys):
    from geoclim.cli.demo import data_stage

    data_stage()
    out = capsys.readouterr().out
    assert "% imputed" in out and "covered" in out and "london" in out
