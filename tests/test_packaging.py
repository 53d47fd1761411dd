"""The wheel ships the configs (``geoclim.conf``) and works when installed, outside the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
from setuptools import find_packages

from geoclim.cli.config import CONFIG_PATH, compose_config, config_root
from geoclim.cli.train import check_override_keys
from geoclim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_pyproject_lists_every_package_and_config_group():
    setuptools_cfg = _pyproject()["tool"]["setuptools"]
    code = set(find_packages(str(ROOT), include=["geoclim", "geoclim.*"]))
    groups = {
        ".".join(("geoclim.conf", *d.relative_to(ROOT / "conf").parts)).rstrip(".")
        for d in [ROOT / "conf", *(ROOT / "conf").rglob("*")]
        if d.is_dir() and any(d.glob("*.yaml"))
    }
    assert set(setuptools_cfg["packages"]) == code | groups
    assert setuptools_cfg["package-dir"] == {"geoclim.conf": "conf"}


def test_license_is_an_spdx_string():
    assert _pyproject()["project"]["license"] == "MIT"


def test_source_tree_uses_its_own_conf_directory():
    assert Path(CONFIG_PATH) == ROOT / "conf"
    assert config_root().joinpath("model").is_dir()
    assert compose_config("train", ["model=lstm"]).model.net._target_.endswith("LSTMNet")


@pytest.fixture
def config_package(tmp_path, monkeypatch):
    """A tiny config package ``fakeconf`` importable as ``pkg://fakeconf``."""
    pkg = tmp_path / "fakeconf"
    (pkg / "trainer").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "train.yaml").write_text("defaults:\n  - trainer: small\n  - _self_\nseed: 0\n")
    (pkg / "trainer" / "small.yaml").write_text("max_epochs: 1\n")
    (pkg / "trainer" / "big.yaml").write_text("max_epochs: 9\nprecision: 16\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "pkg://fakeconf"


def test_compose_config_reads_a_config_package(config_package):
    assert config_root(config_package).joinpath("trainer").is_dir()
    cfg = compose_config("train", ["trainer=big"], config_package)
    assert cfg.trainer.max_epochs == 9 and cfg.seed == 0


def test_check_override_keys_from_a_package_names_the_bad_key(config_package):
    check_override_keys(["trainer=big", "trainer.precision=32"], config_package)
    with pytest.raises(ConfigError) as err:
        check_override_keys(["trainer=small", "trainer.precision=32"], config_package)
    assert "unknown config key 'trainer.precision'" in str(err.value)
    assert "['max_epochs']" in str(err.value)


def _copy_source_tree(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("geoclim", "conf"):
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, dest / name)
    return dest


def _venv_reusing_these_dependencies(venv: Path) -> Path:
    """A fresh venv (no geoclim) whose dependencies are this interpreter's site-packages."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A bare path line: the shared packages become importable, their .pth hooks (such as
    # an editable geoclim) do not run, so only the installed wheel provides geoclim.
    Path(purelib, "geoclim-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return python


@pytest.mark.slow
@pytest.mark.timeout(900)  # a wheel build, a venv and a training run in subprocesses
def test_wheel_installs_and_trains_outside_the_checkout(tmp_path):
    src = _copy_source_tree(tmp_path / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["--no-index", "-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "Warning" not in build.stdout + build.stderr  # e.g. a license-table deprecation
    (wheel,) = (tmp_path / "dist").glob("geoclim-*.whl")

    python = _venv_reusing_these_dependencies(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"]
        + ["--no-index", "-q", str(wheel)],
        check=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MPLBACKEND="Agg", WANDB_MODE="offline")
    work = tmp_path / "elsewhere"
    work.mkdir()

    where = subprocess.run(
        [str(python), "-c", "import geoclim.cli.config as c; print(c.__file__, c.CONFIG_PATH)"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(tmp_path / "venv") and where[1] == "pkg://geoclim.conf"

    train = str(python.parent / "geoclim-train")
    smoke = ["data/source=synthetic", "data=synthetic_grid", "task=synthetic_no2", "debug=smoke"]
    bad = subprocess.run(
        [train, *smoke, "trainer.bogus=1"], cwd=work, env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "unknown config key 'trainer.bogus'" in bad.stderr

    run = subprocess.run(
        [train, *smoke], cwd=work, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (run_dir,) = (work / "logs" / "train" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert any(key.startswith("test/") for key in metrics)
    assert (run_dir / "predictions.nc").is_file() and (run_dir / "scores.nc").is_file()


@pytest.mark.slow
def test_editable_install_maps_geoclim_conf_to_the_source_conf(tmp_path):
    src = _copy_source_tree(tmp_path / "src")
    python = _venv_reusing_these_dependencies(tmp_path / "venv")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q"]
        + ["--no-build-isolation", "--no-index", "-e", str(src)],
        check=True,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = (
        "import importlib.resources as r, geoclim, geoclim.cli.config as c; "
        "print(geoclim.__file__); print(c.CONFIG_PATH); print(r.files('geoclim.conf'))"
    )
    lines = subprocess.run(
        [str(python), "-c", probe],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    assert lines == [str(src / "geoclim" / "__init__.py"), str(src / "conf"), str(src / "conf")]
    bad = subprocess.run(
        [str(python.parent / "geoclim-train"), "model=tft", "model.net.bogus=1"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "unknown config key 'model.net.bogus'" in bad.stderr
