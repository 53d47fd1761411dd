"""Fixtures: one tiny trained LSTM run, exported once per session through the real CLI.

Its dynamo export is the one the export tests share: the report and run tests read the run,
and ``test_export_onnx`` checks the graph of the same file against the same network (an
export costs 3-6 s of tracing, so the suite makes it once, not once per test module).
"""

import json
from pathlib import Path

import pytest

SMOKE = [
    "data=synthetic_grid",
    "task=synthetic_no2",
    "debug=smoke",
    "logger=none",
    "trainer.enable_model_summary=false",
]


def train_run(run_dir: Path, overrides: list[str]) -> Path:
    """Train one smoke run directory in-process (:func:`geoclim.api.train`)."""
    from geoclim import api

    return api.train(*SMOKE, *overrides, run_dir=run_dir).path


def _train_and_export(folder: Path) -> None:
    """A smoke LSTM run, exported through the real CLI (int8 too) and registered."""
    from geoclim.cli.export import main

    run = train_run(folder / "run", ["model=lstm"])
    argv = [str(run), "--quantize", "--parity-batches", "0", "--register"]
    argv += [str(folder / "registry"), "--name", "no2_lstm", "--stage", "production"]
    assert main(argv) == 0


@pytest.fixture(scope="session")
def exported_run(tmp_path_factory):
    """The exported smoke run (built once per session, read-only: see tests/support/shared)."""
    from tests.support.shared import build_once

    folder = build_once(tmp_path_factory, "exported_lstm_run", _train_and_export)
    run = folder / "run"
    report = json.loads((run / "export" / "export.json").read_text())
    return {
        "run_dir": run,
        "model": Path(report["model"]),
        "report": report,
        "registry": folder / "registry",
    }


@pytest.fixture(scope="session")
def loaded_run(exported_run):
    """The exported run read back: network, Lightning module and datamodule (``load_run``)."""
    from geoclim.export.run import load_run

    return load_run(exported_run["run_dir"])


@pytest.fixture
def make_run():
    """``make_run(run_dir, overrides)``: train one run directory in-process."""
    return train_run
