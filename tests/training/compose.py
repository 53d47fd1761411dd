"""Compose ``conf/train.yaml`` in-process for tests (:func:`geoclim.api.compose`)."""

from geoclim import api

TINY = [
    "data=synthetic_grid",
    "task=synthetic_no2",
    "debug=smoke",
    "logger=csv",
    "trainer.enable_progress_bar=false",
]


def compose_train(output_dir, *overrides, tiny=True):
    """Compose (with the tiny synthetic overrides unless ``tiny=False``) into ``output_dir``."""
    return api.compose(*(TINY if tiny else []), *overrides, run_dir=output_dir)[0]
