"""On the synthetic field, whose dynamics are known, trained networks beat persistence."""

import pytest

from geoclim.training.train import train
from tests.registry import models, params
from tests.training.compose import compose_train

LEARNABLE = [
    "data=synthetic_grid",
    "task=synthetic_no2",
    "logger=csv",
    "trainer.enable_progress_bar=false",
    "data.source.days=40",
    "task.horizon=12",
    "trainer.max_epochs=6",
    "data.window.stride=2",
]


# whole-grid samples: one per init time, so every init and more epochs
WHOLE_GRID = ("model.window.stride=1", "trainer.max_epochs=25", "data.source.days=60")


@pytest.mark.parametrize("entry", params(models(kind="network")))
def test_networks_beat_persistence_from_lead_6(tmp_path, entry):
    extra = WHOLE_GRID if entry.spatial else ()
    cfg = compose_train(tmp_path, *LEARNABLE, f"model={entry.name}", *extra, tiny=False)
    metrics = train(cfg)
    skills = {lead: metrics[f"test/skill_persistence/no2/lead_{lead}"] for lead in range(6, 13)}
    assert all(s > 0 for s in skills.values()), skills
