import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from geoclim.data.fingerprint import data_fingerprint
from geoclim.data.normalize import Normalizer
from geoclim.data.task import ForecastTask
from geoclim.data.timeaxis import TimeStep
from geoclim.data.windows import WindowSpec
from geoclim.errors import SchemaError
from geoclim.export.metadata import (
    Domain,
    ExportMetadata,
    ModelIO,
    decode_array,
    encode_array,
)

TASK = ForecastTask(
    targets=("pm25",),
    past_inputs=("t2m",),
    future_inputs=("hour_sin",),
    static_inputs=("elevation",),
    input_steps=4,
    horizon=2,
)


def small_metadata(ds):
    norm = Normalizer.fit(ds, ["pm25", "t2m", "elevation"])
    return ExportMetadata(
        task=TASK,
        window=WindowSpec(4, 2),
        step=TimeStep.fixed("1h"),
        normalizer=norm,
        domain=Domain.from_dataset(ds, ("elevation",)),
        io=ModelIO(inputs=("past", "known_future", "static"), model_class="x.Net"),
        data_fingerprint=data_fingerprint(ds, ["pm25", "t2m"]),
        scores={"test/rmse/pm25": 1.5},
        config={"model": {"net": {"hidden_size": 8}}},
        provenance={"git_commit": "abc"},
    )


def identity_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_metadata_round_trips_through_props(tiny_grid):
    meta = small_metadata(tiny_grid)
    props = meta.to_props()
    assert all(k.startswith("geoclim.") for k in props)
    assert all(isinstance(json.loads(v), (dict, list, str, int, float)) for v in props.values())
    back = ExportMetadata.from_props(props)
    assert back.task == meta.task and back.normalizer == meta.normalizer
    assert back.window == meta.window and back.io == meta.io
    assert back.time_step == np.timedelta64(3600, "s")
    np.testing.assert_array_equal(back.domain.static["elevation"], meta.domain.static["elevation"])
    assert back.variables["pm25"] == {"units": "ug m-3", "long_name": "PM2.5 mass concentration"}
    assert back.scores == meta.scores and back.config == meta.config


def test_metadata_round_trips_through_an_onnx_file_and_onnxruntime(tiny_grid, tmp_path):
    from geoclim.export.onnx import read_metadata, write_metadata

    path = tmp_path / "m.onnx"
    onnx.save(identity_model(), path)
    meta = small_metadata(tiny_grid)
    write_metadata(path, meta)
    assert read_metadata(path).to_props() == meta.to_props()
    session = ort.InferenceSession(str(path))
    from_ort = ExportMetadata.from_props(session.get_modelmeta().custom_metadata_map)
    assert from_ort.to_props() == meta.to_props()


def test_station_domain_keeps_ids_and_static_values(tiny_stations):
    ds = tiny_stations.assign(elevation=("station", np.arange(5, dtype=np.float32)))
    domain = Domain.from_dict(Domain.from_dataset(ds, ("elevation",)).to_dict())
    assert domain.layout == "station" and domain.station == ("s0", "s1", "s2", "s3", "s4")
    np.testing.assert_array_equal(domain.static["elevation"], np.arange(5))


def test_missing_or_future_metadata_is_refused(tiny_grid):
    props = small_metadata(tiny_grid).to_props()
    with pytest.raises(SchemaError, match="geoclim.task"):
        ExportMetadata.from_props({k: v for k, v in props.items() if k != "geoclim.task"})
    with pytest.raises(SchemaError, match="format_version 99"):
        ExportMetadata.from_props(props | {"geoclim.format_version": "99"})
    with pytest.raises(SchemaError, match="not valid JSON"):
        ExportMetadata.from_props(props | {"geoclim.scores": "{"})


def test_arrays_are_packed_exactly():
    a = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    a[0, 0] = np.nan
    np.testing.assert_array_equal(decode_array(encode_array(a)), a)


def test_fingerprint_is_stable_and_sensitive(tiny_grid):
    a = data_fingerprint(tiny_grid, ["pm25"], (0, 30))
    assert a == data_fingerprint(tiny_grid.copy(deep=True), ["pm25"], (0, 30))
    changed = tiny_grid.copy(deep=True)
    changed["pm25"][0, 0, 0] = 1.0
    assert data_fingerprint(changed, ["pm25"], (0, 30)) != a
    assert data_fingerprint(tiny_grid, ["pm25"], (0, 31)) != a
    with pytest.raises(SchemaError, match="'o3'"):
        data_fingerprint(tiny_grid, ["o3"])


def test_calendar_step_calendar_and_categories_round_trip(tiny_grid):
    task = ForecastTask(
        targets=("pm25",),
        past_inputs=("wd",),
        input_steps=4,
        horizon=2,
        categories={"wd": {"windy": 3, "calm": 0}},
    )
    meta = small_metadata(tiny_grid).replace(
        task=task, step=TimeStep(3, "month"), time_calendar="noleap"
    )
    props = meta.to_props()
    window = json.loads(props["geoclim.window"])
    assert window["time_step"] == {"count": 3, "unit": "month"}
    assert window["time_calendar"] == "noleap" and "time_step_seconds" not in window
    back = ExportMetadata.from_props(props)
    assert back.step == TimeStep(3, "month") and back.time_calendar == "noleap"
    assert back.task.categories == {"wd": {"windy": 3, "calm": 0}}
    assert back.task.past_channels == ("pm25", "wd=windy", "wd=calm")  # one-hot order kept
    assert back.summary()["time_step"] == "3 months"
    assert back.summary()["categories"] == {"wd": {"calm": 0, "windy": 3}}


def test_metadata_without_a_time_step_field_reads_as_a_fixed_step(tiny_grid):
    props = small_metadata(tiny_grid).to_props()
    window = json.loads(props["geoclim.window"])
    old = {k: v for k, v in window.items() if k not in ("time_step", "time_calendar")}
    back = ExportMetadata.from_props(props | {"geoclim.window": json.dumps(old)})
    assert back.step == TimeStep(3600 * 10**9, "ns") and back.time_calendar == "standard"
    assert back.time_step_seconds == 3600
    bad = dict(old, time_step={"count": 2, "unit": "fortnight"})
    with pytest.raises(SchemaError, match="geoclim.window.*bad time step"):
        ExportMetadata.from_props(props | {"geoclim.window": json.dumps(bad)})
    del old["time_step_seconds"]
    with pytest.raises(SchemaError, match="neither 'time_step' nor 'time_step_seconds'"):
        ExportMetadata.from_props(props | {"geoclim.window": json.dumps(old)})
