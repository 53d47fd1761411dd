"""Fixtures: one tiny trained LSTM run, exported once through the real CLI."""

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


@pytest.fixture(scope="session")
def lstm_run(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("lstm_run"), ["model=lstm"])


@pytest.fixture(scope="session")
def exported_run(lstm_run, tmp_path_factory):
    from geoclim.cli.export import main

    registry = tmp_path_factory.mktemp("registry")
    assert (
        main(
            [
                str(lstm_run),
                "--quantize",
                "--parity-batches",
                "0",
                "--register",
                str(registry),
                "--name",
                "no2_lstm",
                "--stage",
                "production",
            ]
        )
        == 0
    )
    report = json.loads((lstm_run / "export" / "export.json").read_text())
    return {
        "run_dir": lstm_run,
        "model": Path(report["model"]),
        "report": report,
        "registry": registry,
    }


@pytest.fixture
def make_run():
    """``make_run(run_dir, overrides)``: train one run directory in-process."""
    return train_run
