import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from geoclim.cli.errors import friendly_errors, user_error
from geoclim.errors import ConfigError, DataError


def test_user_error_unwraps_hydras_instantiation_wrapper():
    cause = DataError("dataset 'x.nc' has no variable 'pm25'")
    try:
        try:
            raise cause
        except DataError as err:
            raise InstantiationException("Error in call to target 'GeoDataModule'") from err
    except InstantiationException as wrapped:
        assert user_error(wrapped) is cause


def test_a_missing_mandatory_value_names_the_key():
    cfg = OmegaConf.create({"data": {"path": "???"}})
    with pytest.raises(MissingMandatoryValue) as info:
        _ = cfg.data.path
    err = user_error(info.value)
    assert isinstance(err, ConfigError)
    assert str(err) == "no value for 'data.path'; set it on the command line: data.path=..."


def test_bugs_are_not_user_errors():
    assert user_error(ValueError("a bug")) is None
    assert user_error(InstantiationException("wrapper without a cause")) is None


def test_friendly_errors_prints_one_line_and_exits_2(capsys):
    @friendly_errors
    def command():
        raise ConfigError("unknown split 'dev'; valid splits are ['train', 'val', 'test']")

    with pytest.raises(SystemExit) as info:
        command()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: unknown split 'dev'; valid splits are ['train', 'val', 'test']\n"


def test_friendly_errors_lets_bugs_raise():
    @friendly_errors
    def command():
        raise KeyError("bug")

    with pytest.raises(KeyError):
        command()
