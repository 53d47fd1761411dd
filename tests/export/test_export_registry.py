import json
import threading

import pytest

from geoclim.errors import ConfigError
from geoclim.export.registry import ModelRegistry


@pytest.fixture
def onnx_file(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really onnx")
    return path


def test_register_promote_and_roll_back(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path / "reg")
    v1 = reg.register(
        "no2",
        onnx_file,
        scores={"rmse": 2.0},
        data_fingerprint="sha256:a",
        config={"seed": 0},
        run_dir=tmp_path,
    )
    assert (v1.version, v1.stage) == (1, "staging")
    assert reg.get("no2").version == 1  # no production yet: the latest
    reg.promote("no2", 1)
    v2 = reg.register("no2", onnx_file, stage="production")
    assert reg.get("no2").version == 2
    assert reg.get("no2", version=1).stage == "archived"
    back = reg.rollback("no2")
    assert back.version == 1 and reg.get("no2").version == 1
    assert reg.get("no2", version=2).stage == "archived"
    assert reg.resolve("no2:2").version == v2.version
    assert reg.resolve("no2@production").version == 1
    copied = reg.get("no2", version=1)
    assert copied.path.startswith(str(tmp_path / "reg")) and copied.scores == {"rmse": 2.0}


def test_registry_file_is_valid_json_and_has_no_leftovers(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path / "reg")
    for _ in range(3):
        reg.register("pm25", onnx_file)
    data = json.loads((tmp_path / "reg" / "registry.json").read_text())
    assert [v["version"] for v in data["models"]["pm25"]["versions"]] == [1, 2, 3]
    assert not list((tmp_path / "reg").glob(".registry-*"))


def test_concurrent_registrations_get_distinct_versions(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path / "reg")
    threads = [
        threading.Thread(target=reg.register, args=("o3", onnx_file), kwargs={"copy": False})
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(v.version for v in reg.list()) == list(range(1, 9))


def test_errors_name_the_valid_choices(tmp_path, onnx_file):
    reg = ModelRegistry(tmp_path / "reg")
    reg.register("no2", onnx_file)
    with pytest.raises(ConfigError, match=r"registered models are \['no2'\]"):
        reg.get("pm25")
    with pytest.raises(ConfigError, match=r"versions are \[1\]"):
        reg.promote("no2", 5)
    with pytest.raises(ConfigError, match="rollback needs a previous one"):
        reg.rollback("no2")
    with pytest.raises(ConfigError, match="valid stages"):
        reg.register("no2", onnx_file, stage="archived")
    with pytest.raises(ConfigError, match="invalid model name"):
        reg.register("../evil", onnx_file)
    with pytest.raises(ConfigError, match="no version in stage 'production'"):
        reg.resolve("no2@production")
