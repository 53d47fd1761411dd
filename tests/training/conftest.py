import pytest

from tests.training.compose import compose_train


@pytest.fixture
def compose_cfg(tmp_path):
    def _compose(*overrides, name="run", tiny=True):
        return compose_train(tmp_path / name, *overrides, tiny=tiny)

    return _compose
