import json
import subprocess
import sys

import pytest

from tests.deploy.conftest import ROOT


@pytest.mark.slow
def test_a_short_headless_locust_run_serves_every_endpoint_without_failures(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "loadtest.run", "--out", str(tmp_path)]
        + ["--users", "4", "--spawn-rate", "4", "--run-time", "8s"],
        capture_output=True,
        text=True,
        timeout=500,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads((tmp_path / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["endpoints"]}
    assert rows["/v1/forecast [1]"]["requests"] > 0
    assert rows["/v1/forecast [batch]"]["requests"] > 0
    assert all(r["failures"] == 0 for r in rows.values()), rows
    assert summary["server_exit_code"] in (0, -15)  # SIGTERM re-raised after the drain
    locust = json.loads((tmp_path / "locust.json").read_text())
    assert {s["name"] for s in locust} >= {"/v1/forecast [1]", "/v1/models"}
