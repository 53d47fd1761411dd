import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.strategies.launchers import subprocess_script
from omegaconf import OmegaConf

from geoclim.errors import ConfigError
from geoclim.training.distributed import hydra_job_command, hydra_job_launcher


@pytest.fixture
def hydra_mode():
    """``hydra_mode(RunMode.X)`` makes HydraConfig report that mode; cleared afterwards."""
    instance = HydraConfig.instance()

    def _set(mode):
        instance.cfg = OmegaConf.create({"hydra": {"mode": mode}})

    yield _set
    instance.cfg = None


def test_lightnings_own_hydra_support_is_kept_outside_a_multirun(hydra_mode):
    original = subprocess_script._hydra_subprocess_cmd
    with hydra_job_launcher():  # no Hydra at all
        assert subprocess_script._hydra_subprocess_cmd is original
    hydra_mode(RunMode.RUN)
    with hydra_job_launcher():
        assert subprocess_script._hydra_subprocess_cmd is original


def test_in_a_multirun_children_rerun_the_job_only_during_the_block(hydra_mode):
    original = subprocess_script._hydra_subprocess_cmd
    hydra_mode(RunMode.MULTIRUN)
    with hydra_job_launcher():
        assert subprocess_script._hydra_subprocess_cmd is hydra_job_command
    assert subprocess_script._hydra_subprocess_cmd is original
    with pytest.raises(RuntimeError), hydra_job_launcher():
        raise RuntimeError("fit failed")
    assert subprocess_script._hydra_subprocess_cmd is original


def test_a_lightning_without_the_hook_is_refused_in_a_multirun(hydra_mode, monkeypatch):
    monkeypatch.delattr(subprocess_script, "_hydra_subprocess_cmd")
    hydra_mode(RunMode.MULTIRUN)
    with pytest.raises(ConfigError, match="trainer.strategy=ddp_spawn"), hydra_job_launcher():
        pass
