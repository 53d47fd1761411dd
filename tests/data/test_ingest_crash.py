import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import xarray as xr

from geoclim.cli.main import main
from geoclim.data.ingest import ingest_folder, open_store
from geoclim.data.ingest.generation import writer_lock
from geoclim.data.ingest.manifest import Manifest
from geoclim.data.sources import open_dataset, write_netcdf
from geoclim.errors import IngestError

FIXTURES = Path(__file__).parent / "fixtures" / "epa"
FILES = ["o3_nc.csv", "o3_va.csv", "pm25_nc.csv", "pm25_va.csv"]
REPO = Path(__file__).resolve().parents[2]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def listing(store: Path) -> list[str]:
    return sorted(p.relative_to(store).as_posix() for p in store.rglob("*") if p.is_file())


def describe(store: Path) -> tuple:
    """What must not depend on interruptions: stations.nc bytes, files, manifest records."""
    records = {
        key: (rec.md5, rec.table, rec.rows, rec.mtime_ns)
        for key, rec in Manifest.load(store / "manifest.json").files.items()
    }
    return md5(store / "stations.nc"), listing(store), records


def assert_reader_safe(store: Path) -> None:
    """A reader gets the generation the manifest describes, or an error with the repair."""
    try:
        ds = open_store(store)
    except IngestError as err:
        assert "geoclim ingest" in str(err), err
        return
    ds.close()
    assert md5(store / "stations.nc") == Manifest.load(store / "manifest.json").stations_md5


@pytest.fixture
def raw(tmp_path):
    full, half = tmp_path / "raw", tmp_path / "half"
    full.mkdir()
    half.mkdir()
    for name in FILES:
        shutil.copy2(FIXTURES / name, full / name)
    for name in FILES[:2]:
        shutil.copy2(full / name, half / name)  # same key, bytes and mtime
    return full, half


@pytest.fixture
def reference(raw, tmp_path):
    ingest_folder(raw[0], tmp_path / "reference")
    return describe(tmp_path / "reference")


def test_tampered_stations_nc_is_refused_with_the_repair_command(raw, tmp_path, capsys):
    store = tmp_path / "store"
    ingest_folder(raw[0], store)
    expected = open_store(store).load()
    edited = expected.copy(deep=True)
    edited["pm25"][0, 0] = 99.0
    write_netcdf(edited, store / "stations.nc")  # a valid netCDF the manifest does not describe
    with pytest.raises(IngestError) as info:
        open_store(store)
    message = str(info.value)
    assert f"{store / 'stations.nc'} has MD5 {md5(store / 'stations.nc')}" in message
    assert f"{store / 'manifest.json'} records" in message
    assert f"`geoclim ingest {raw[0].resolve()} {store}`" in message
    with pytest.raises(IngestError, match="changed by hand"):
        open_dataset(store / "stations.nc")
    with pytest.raises(SystemExit) as exit_info:
        main(["summary", str(store / "stations.nc")])
    assert exit_info.value.code == 2 and "geoclim ingest" in capsys.readouterr().err
    report = ingest_folder(raw[0], store)
    assert report.rebuilt and not report.ingested
    assert "rebuilt stations.nc from the tables: it did not match the manifest" in str(report)
    xr.testing.assert_identical(open_store(store).load(), expected)


def test_missing_stations_nc_and_a_folder_that_is_no_store(raw, tmp_path):
    store = tmp_path / "store"
    ingest_folder(raw[0], store)
    shutil.copy(store / "stations.nc", tmp_path / "copy.nc")
    assert open_dataset(tmp_path / "copy.nc").sizes["station"] == 2  # outside a store: no check
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(store / "stations.nc", other / "stations.nc")
    (other / "manifest.json").write_text('{"model": "not an ingest manifest"}')
    assert open_dataset(other / "stations.nc").sizes["station"] == 2
    (store / "stations.nc").unlink()
    with pytest.raises(IngestError, match=r"stations\.nc is missing, but .*geoclim ingest"):
        open_store(store)
    with pytest.raises(IngestError, match=r"not an ingest store \(no manifest\.json\)"):
        open_store(tmp_path)
    assert ingest_folder(raw[1], store).rebuilt  # any raw folder repairs it
    assert open_store(store).sizes["station"] == 2


def test_leftovers_of_an_interrupted_run_are_swept(raw, tmp_path, reference):
    store = tmp_path / "store"
    ingest_folder(raw[0], store)
    leftovers = [
        store / ".manifest.json.k3j2.tmp",
        store / "..stations.nc.staged.x1.tmp",
        store / ".stations.nc.staged",
        store / ".stations.nc.bak",
        store / "tables" / ".0123.csv.gz.ab.tmp",
        store / "tables" / "0123456789abcdef0123456789abcdef.csv.gz",
    ]
    for path in leftovers:
        path.write_bytes(b"left by a kill -9")
    report = ingest_folder(raw[0], store)
    assert len(report.recovered) == len(leftovers) and not report.rebuilt
    assert "recovered from an interrupted run:" in str(report)
    assert describe(store) == reference


def test_a_second_writer_is_refused(raw, tmp_path):
    store = tmp_path / "store"
    ingest_folder(raw[1], store)
    with writer_lock(store):
        with pytest.raises(IngestError, match="another geoclim ingest is writing"):
            ingest_folder(raw[0], store)
        (store / "stations.nc").write_bytes(b"being replaced")
        with pytest.raises(IngestError, match="is running; open it when it is done"):
            open_store(store)


def crash_child(raw_dir: Path, store: Path, point: int, after: bool) -> int:
    """Ingest in a forked child that dies (``os._exit``) at its ``point``-th ``os.replace``.

    Every write of the store ends in an ``os.replace``, so dying just before or just after
    each one visits every state a ``kill -9`` can leave. Returns the child's exit status
    (0: it finished before reaching ``point``).
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child never returns
        try:
            real, calls = os.replace, [0]

            def replace(src, dst):
                calls[0] += 1
                if calls[0] == point and not after:
                    os._exit(137)
                real(src, dst)
                if calls[0] == point:
                    os._exit(137)

            os.replace = replace
            ingest_folder(raw_dir, store)
        finally:
            os._exit(0)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# os.replace calls of a commit: one per new table, then the staged stations.nc, the manifest
# (the commit point) and the final rename. The states right around the commit point run by
# default, every other one with the slow tests.
COMMIT = ["staged", "manifest", "rename"]
STEPS = {"first": 4 * ["table"] + COMMIT, "incremental": 2 * ["table"] + COMMIT}
CRITICAL = {("staged", True), ("manifest", True), ("rename", True)}  # (step, died after it)


def crash_cases():
    for scenario, steps in STEPS.items():
        for point, step in enumerate(steps, start=1):
            for after in (False, True):
                marks = () if (step, after) in CRITICAL else pytest.mark.slow
                case_id = f"{scenario}-{point}-{step}-{'after' if after else 'before'}"
                yield pytest.param(scenario, point, after, marks=marks, id=case_id)
        done = len(steps) + 1  # the child must finish: no write was left uncounted
        yield pytest.param(scenario, done, False, marks=pytest.mark.slow, id=f"{scenario}-done")


@pytest.mark.parametrize(("scenario", "point", "after"), list(crash_cases()))
def test_a_crash_at_any_write_recovers_to_the_uninterrupted_store(
    raw, tmp_path, reference, scenario, point, after
):
    store = tmp_path / "store"
    if scenario == "incremental":
        ingest_folder(raw[1], store)
    status = crash_child(raw[0], store, point, after)
    assert status == (0 if point > len(STEPS[scenario]) else 137)
    if store.exists():
        assert_reader_safe(store)
    ingest_folder(raw[0], store)
    assert describe(store) == reference


def ingest_process(raw_dir: Path, store: Path) -> subprocess.Popen:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    command = [sys.executable, "-m", "geoclim.cli.main", "ingest", str(raw_dir), str(store)]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def files_in(store: Path) -> set[str]:
    return set(listing(store)) if store.exists() else set()


def wait_for_first_write(store: Path, process: subprocess.Popen) -> float:
    before, start = files_in(store), time.monotonic()
    while process.poll() is None and files_in(store) == before:
        time.sleep(0.0005)
    return time.monotonic() - start


@pytest.mark.slow
def test_kill_9_at_random_moments_then_ingest_gives_the_same_store(raw, tmp_path, reference):
    rng = random.Random(9)
    timed = ingest_process(raw[0], tmp_path / "timed")
    started = time.monotonic()
    wait_for_first_write(tmp_path / "timed", timed)
    writing = time.monotonic()
    assert timed.wait() == 0
    total, commit = time.monotonic() - started, time.monotonic() - writing
    killed = 0
    for i in range(10):
        store = tmp_path / f"store{i}"
        if i % 2:
            ingest_folder(raw[1], store)
        process = ingest_process(raw[0], store)
        if i % 3 == 0:  # anywhere: start-up, parsing or writing
            time.sleep(rng.uniform(0, total))
        else:  # while it writes the store
            wait_for_first_write(store, process)
            time.sleep(rng.uniform(0, commit))
        killed += process.poll() is None
        process.send_signal(signal.SIGKILL)
        process.wait()
        if store.exists():
            assert_reader_safe(store)
        ingest_folder(raw[0], store)
        assert describe(store) == reference, i
    assert killed >= 5
