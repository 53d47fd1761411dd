"""config_dict: a config group as a plain str-keyed dict, or a ConfigError naming the key."""

import pytest
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from geoclim.errors import ConfigError
from geoclim.training.instantiate import config_dict


def test_config_dict_resolves_and_returns_plain_containers():
    cfg = OmegaConf.create({"size": 8, "model": {"net": {"hidden": "${size}", "k": [1, 2]}}})
    net = config_dict(cfg.model.net)
    assert net == {"hidden": 8, "k": [1, 2]}
    assert type(net) is dict and type(net["k"]) is list


def test_config_dict_keeps_interpolations_unresolved_on_request():
    cfg = OmegaConf.create({"size": 8, "net": {"hidden": "${size}"}})
    assert config_dict(cfg.net, resolve=False) == {"hidden": "${size}"}


def test_config_dict_missing_value_raises_or_is_kept():
    cfg = OmegaConf.create({"cv": {"folds": "???"}})
    with pytest.raises(MissingMandatoryValue):
        config_dict(cfg.cv)
    assert config_dict(cfg.cv, throw_on_missing=False) == {"folds": "???"}


@pytest.mark.parametrize("value", [[1, 2], 3, "lstm"])
def test_config_dict_rejects_a_non_mapping_naming_the_key(value):
    cfg = OmegaConf.create({"model": {"net": value}})
    with pytest.raises(ConfigError, match="expected a mapping") as err:
        config_dict(cfg.model.net)
    if isinstance(value, list):  # a plain value carries no key; a ListConfig does
        assert "model.net" in str(err.value)
