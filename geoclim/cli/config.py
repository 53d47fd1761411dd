"""Where the Hydra entry points find geoclim's configs.

``conf/`` sits at the top of the source tree, where users look for it, and ships in the wheel
as the data-only package ``geoclim.conf`` (pyproject's ``package-dir`` mapping). Hydra reaches
the installed copy through its package search path, ``pkg://geoclim.conf``. When geoclim is
imported from a source tree (an editable install, ``PYTHONPATH``, a git worktree) the
``conf/`` beside that tree's ``geoclim/`` is used instead: it is the copy that matches the
code being run, where ``pkg://`` could resolve to another checkout's editable install.

``CONFIG_PATH`` is the one value every entry point passes to ``hydra.main``;
:func:`compose_config` composes a config from the same place in-process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from omegaconf import DictConfig

CONFIG_PACKAGE = "geoclim.conf"
PKG_SCHEME = "pkg://"


def _source_tree_conf() -> Path | None:
    """``<tree>/conf`` when this geoclim is imported from a source tree, else None."""
    tree = Path(__file__).resolve().parents[2]
    conf = tree / "conf"
    if (tree / "pyproject.toml").is_file() and (conf / "train.yaml").is_file():
        return conf
    return None


_SOURCE_CONF = _source_tree_conf()
CONFIG_PATH: str = str(_SOURCE_CONF) if _SOURCE_CONF else PKG_SCHEME + CONFIG_PACKAGE


def config_root(config_path: str = CONFIG_PATH) -> Traversable:
    """The folder that ``config_path`` names (a directory or a ``pkg://`` package)."""
    if config_path.startswith(PKG_SCHEME):
        return resources.files(config_path.removeprefix(PKG_SCHEME))
    return Path(config_path)


@contextmanager
def initialize_configs(config_path: str = CONFIG_PATH) -> Iterator[None]:
    """Hydra's compose API on ``config_path``, with Hydra's global state cleared around it."""
    from hydra import initialize_config_dir, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    try:
        if config_path.startswith(PKG_SCHEME):
            module = config_path.removeprefix(PKG_SCHEME)
            with initialize_config_module(module, version_base="1.3"):
                yield
        else:
            with initialize_config_dir(config_path, version_base="1.3"):
                yield
    finally:
        GlobalHydra.instance().clear()


def compose_config(
    config_name: str, overrides: list[str] | None = None, config_path: str = CONFIG_PATH
) -> DictConfig:
    """Compose ``<config_name>.yaml`` with ``overrides`` from ``config_path``.

    Args:
        config_name: a top-level config, e.g. ``"train"``.
        overrides: Hydra overrides, e.g. ``["model=lstm", "debug=smoke"]``.
        config_path: a config directory or ``pkg://`` package (default: geoclim's).

    Returns:
        The composed config (without the ``hydra`` node).
    """
    from hydra import compose

    with initialize_configs(config_path):
        return compose(config_name, overrides=list(overrides or []))
