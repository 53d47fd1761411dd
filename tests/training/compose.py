"""Compose ``conf/train.yaml`` in-process (Hydra compose API) for tests."""

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

CONFIG_DIR = Path(__file__).resolve().parents[2] / "conf"
TINY = [
    "data=synthetic_grid",
    "task=synthetic_no2",
    "debug=smoke",
    "logger=csv",
    "trainer.enable_progress_bar=false",
]


def compose_train(output_dir, *overrides, tiny=True):
    """Compose (with the tiny synthetic overrides unless ``tiny=False``) into ``output_dir``."""
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
            return compose(
                "train",
                overrides=[*(TINY if tiny else []), f"paths.output_dir={output_dir}", *overrides],
            )
    finally:
        GlobalHydra.instance().clear()
