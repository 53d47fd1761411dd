"""A local model registry: one JSON file under a registry directory.

Layout::

    <root>/registry.json            {"format_version": 1, "models": {name: {...}}}
    <root>/<name>/v<k>/model.onnx   a copy of each registered export

Each model has numbered versions, each with a stage: ``staging`` (registered, not serving),
``production`` (at most one per model) or ``archived`` (was production). Promotion pushes the
new production version on a history stack; :meth:`ModelRegistry.rollback` pops it and puts
the previous production version back. Every change rewrites ``registry.json`` atomically
(temp file in the same directory + ``os.replace``) under an exclusive ``flock``, so readers
never see half a file and concurrent writers do not lose each other's updates.

Names resolve as ``name`` (the production version, else the latest), ``name:<k>`` (version
``k``) or ``name@<stage>``. Torch-free: ``geoclim serve <name>`` reads it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from geoclim import fileio
from geoclim.errors import ConfigError

STAGES = ("staging", "production", "archived")
FILENAME = "registry.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass
class ModelVersion:
    """One registered version of a model.

    Attributes:
        name: model name.
        version: 1, 2, ... in registration order.
        stage: one of :data:`STAGES`.
        path: the registered .onnx (inside the registry directory when copied).
        run_dir: the training run it came from.
        data_fingerprint: training-data fingerprint.
        scores: test scores (the run's metrics.json).
        config: the run's composed config.
        created: ISO time of registration.

    """

    name: str
    version: int
    stage: str
    path: str
    run_dir: str | None = None
    data_fingerprint: str = ""
    scores: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    created: str = ""


class ModelRegistry:
    """Register, promote and roll back exported models.

    Args:
        root: the registry directory (created on first write).

    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.file = self.root / FILENAME

    def _read(self) -> dict[str, Any]:
        if not self.file.exists():
            return {"format_version": 1, "models": {}}
        try:
            return json.loads(self.file.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{self.file}: corrupt registry file ({err})") from None

    def _write(self, data: dict[str, Any]) -> None:
        fileio.write_text(self.file, json.dumps(data, indent=2, sort_keys=True))

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._read()
                yield data
                self._write(data)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _entry(self, data: dict[str, Any], name: str) -> dict[str, Any]:
        if name not in data["models"]:
            raise ConfigError(
                f"model {name!r} is not registered in {self.file}; registered models are "
                f"{sorted(data['models'])}"
            )
        return data["models"][name]

    def register(
        self,
        name: str,
        onnx_path: str | os.PathLike,
        *,
        run_dir: str | os.PathLike | None = None,
        data_fingerprint: str = "",
        scores: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
        stage: str = "staging",
        copy: bool = True,
    ) -> ModelVersion:
        """Add a new version of ``name`` (copied into the registry unless ``copy=False``).

        Registering straight into ``production`` is a promotion (see :meth:`promote`).
        """
        if not _NAME.match(name):
            raise ConfigError(
                f"invalid model name {name!r}: use letters, digits, '_', '.', '-' (max 100)"
            )
        _check_stage(stage, allowed=("staging", "production"))
        src = Path(onnx_path)
        if not src.is_file():
            raise ConfigError(f"cannot register {name!r}: {src} is not a file")
        with self._transaction() as data:
            entry = data["models"].setdefault(name, {"versions": [], "production_history": []})
            version = 1 + max((v["version"] for v in entry["versions"]), default=0)
            path = src.resolve()
            if copy:
                dest = self.root / name / f"v{version}" / "model.onnx"
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
                path = dest.resolve()
            mv = ModelVersion(
                name=name,
                version=version,
                stage="staging",
                path=str(path),
                run_dir=str(run_dir) if run_dir is not None else None,
                data_fingerprint=data_fingerprint,
                scores=dict(scores or {}),
                config=dict(config or {}),
                created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            )
            entry["versions"].append(asdict(mv))
            if stage == "production":
                _promote(entry, version)
            return self._version(entry, name, version)

    def promote(self, name: str, version: int | None = None) -> ModelVersion:
        """Make ``version`` (default: the latest) the production version of ``name``."""
        with self._transaction() as data:
            entry = self._entry(data, name)
            version = version or max(v["version"] for v in entry["versions"])
            _find(entry, name, version)
            _promote(entry, version)
            return self._version(entry, name, version)

    def rollback(self, name: str) -> ModelVersion:
        """Put the previous production version of ``name`` back; the current one is archived."""
        with self._transaction() as data:
            entry = self._entry(data, name)
            history = entry["production_history"]
            if len(history) < 2:
                raise ConfigError(
                    f"cannot roll back {name!r}: it has {len(history)} production "
                    "version(s) in its history; rollback needs a previous one"
                )
            _find(entry, name, history.pop())["stage"] = "archived"
            previous = history[-1]
            _find(entry, name, previous)["stage"] = "production"
            return self._version(entry, name, previous)

    def get(
        self, name: str, *, version: int | None = None, stage: str | None = None
    ) -> ModelVersion:
        """A version by number, by stage, or (default) production else latest."""
        entry = self._entry(self._read(), name)
        if version is not None:
            return ModelVersion(**_find(entry, name, version))
        if stage is not None:
            _check_stage(stage)
            found = [v for v in entry["versions"] if v["stage"] == stage]
            if not found:
                raise ConfigError(f"model {name!r} has no version in stage {stage!r}")
            return ModelVersion(**found[-1])
        prod = [v for v in entry["versions"] if v["stage"] == "production"]
        return ModelVersion(**(prod[-1] if prod else entry["versions"][-1]))

    def resolve(self, spec: str) -> ModelVersion:
        """``name``, ``name:<version>`` or ``name@<stage>`` -> the version."""
        if ":" in spec:
            name, _, num = spec.partition(":")
            if not num.isdigit():
                raise ConfigError(f"bad model reference {spec!r}: expected name:<int>")
            return self.get(name, version=int(num))
        if "@" in spec:
            name, _, stage = spec.partition("@")
            return self.get(name, stage=stage)
        return self.get(spec)

    def list(self) -> list[ModelVersion]:
        """Every registered version, by name then version."""
        data = self._read()
        return [
            ModelVersion(**v)
            for name in sorted(data["models"])
            for v in data["models"][name]["versions"]
        ]

    @staticmethod
    def _version(entry: dict[str, Any], name: str, version: int) -> ModelVersion:
        return ModelVersion(**_find(entry, name, version))


def _find(entry: dict[str, Any], name: str, version: int) -> dict[str, Any]:
    for v in entry["versions"]:
        if v["version"] == version:
            return v
    raise ConfigError(
        f"model {name!r} has no version {version}; versions are "
        f"{[v['version'] for v in entry['versions']]}"
    )


def _promote(entry: dict[str, Any], version: int) -> None:
    for v in entry["versions"]:
        if v["stage"] == "production" and v["version"] != version:
            v["stage"] = "archived"
    target = next(v for v in entry["versions"] if v["version"] == version)
    target["stage"] = "production"
    history = entry["production_history"]
    if not history or history[-1] != version:
        history.append(version)


def _check_stage(stage: str, allowed: tuple[str, ...] = STAGES) -> None:
    if stage not in allowed:
        raise ConfigError(f"unknown stage {stage!r}; valid stages are {list(allowed)}")
