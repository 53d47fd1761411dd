"""scripts/bench_http.py's measurements: process CPU and the in-process request path."""

import asyncio
import os
import time

import pytest

from scripts.bench_http import in_process, prepare, process_cpu


def test_process_cpu_counts_this_process_and_nothing_for_no_process():
    before = process_cpu(os.getpid())
    end = time.process_time() + 0.2
    while time.process_time() < end:  # burn a little CPU
        pass
    after = process_cpu(os.getpid())
    # psutil reads the kernel's clock ticks (10 ms): well under the 0.2 s burnt
    assert before is not None and after is not None and after - before >= 0.1
    assert process_cpu(None) is None


def test_process_cpu_of_a_process_that_is_gone_is_unknown():
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # reaped: its pid names no process now
    assert process_cpu(gone.pid) is None


@pytest.mark.slow
def test_in_process_runs_authenticated_forecasts_and_profiles_them(tmp_path):
    path, key, body = prepare(tmp_path)
    cpu, table = asyncio.run(in_process(body, path, key, 20, profile=True))
    assert cpu > 0 and "forecast_records" in table
    with pytest.raises(SystemExit, match="401"):  # a wrong key is refused, not timed
        asyncio.run(in_process(body, path, "bench.wrong", 5, profile=False))


def test_request_cpu_bench_refuses_an_unknown_base_revision_by_name():
    from scripts.bench_request_cpu import _git

    with pytest.raises(SystemExit, match="--base: git rev-parse .*no-such-revision"):
        _git("rev-parse", "--verify", "no-such-revision^{commit}", what="--base")


@pytest.mark.slow
def test_request_cpu_bench_compares_two_trees_and_records_every_run(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "ab.json"
    cmd = [sys.executable, "-m", "scripts.bench_request_cpu", "--base", "HEAD", "--rounds", "2"]
    subprocess.run([*cmd, "-n", "20", "--json", str(out)], check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert {len(v) for v in result["cpu_ms_per_request"].values()} == {2}
    assert all(ms > 0 for v in result["cpu_ms_per_request"].values() for ms in v)
    assert result["ratio_of_medians"] == pytest.approx(
        result["median_ms"]["new"] / result["median_ms"]["base"], rel=1e-3
    )
    assert len(result["load_average_1m"]["all"]) == 5  # before, then after each of 4 runs
