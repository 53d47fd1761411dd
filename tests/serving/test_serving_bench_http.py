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
