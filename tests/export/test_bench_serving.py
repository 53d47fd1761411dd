"""The serving benchmark's helpers: turns of the timed runtimes, the per-operator profile."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from scripts.bench_serving import interleaved, ort_node_profile


@pytest.mark.parametrize(("block", "repeats", "calls"), [(1, 6, 6), (3, 6, 6), (4, 6, 8)])
def test_turns_run_each_function_in_blocks_and_time_every_call(block, repeats, calls):
    order = []
    fns = {k: (lambda k=k: order.append(k)) for k in ("eager", "ort", "plain")}
    got = interleaved(fns, repeats, warmup=2, block=block)
    timed = order[6:]  # 2 warm-up calls each, in order
    assert order[:6] == ["eager"] * 2 + ["ort"] * 2 + ["plain"] * 2
    assert sorted(set(timed)) == ["eager", "ort", "plain"]
    assert all(timed.count(k) == calls for k in fns)  # whole blocks
    runs = [timed[i : i + block] for i in range(0, len(timed), block)]
    assert all(len(set(run)) == 1 for run in runs)  # one function per block
    assert set(got) == set(fns) and all(r["median_ms"] >= 0 for r in got.values())


def node(op: str, name: str, dur: float) -> dict:
    return {"cat": "Node", "name": f"{name}_kernel_time", "dur": dur, "args": {"op_name": op}}


def test_each_node_counts_its_median_over_the_profiled_calls_summed_per_type():
    trace = [
        node("Conv", "conv_a", 900),  # warm-up call: dropped
        node("Conv", "conv_a", 10),
        node("Conv", "conv_a", 30),
        node("Conv", "conv_a", 20),
        node("Conv", "conv_b", 5),
        node("Conv", "conv_b", 7),
        node("Conv", "conv_b", 6),
        node("Add", "add", 4),
        node("Add", "add", 2),
        node("Add", "add", 3),
        {"cat": "Node", "name": "conv_a_fence_before", "dur": 1000, "args": {"op_name": "Conv"}},
        {"cat": "Session", "name": "model_run", "dur": 5000},
    ]
    got = ort_node_profile(trace, calls=3)
    assert got == {"Conv": 26.0, "Add": 3.0}  # median 20 + median 6; median 3
    assert list(got) == ["Conv", "Add"]  # largest first


def test_a_real_profile_names_the_graph_operators(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Add", ["r", "x"], ["y"])],
        "g",
        [x],
        [y],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp_path / "prof")
    session = ort.InferenceSession(model.SerializeToString(), options)
    for _ in range(4):
        session.run(None, {"x": np.ones((2, 3), np.float32)})
    with open(session.end_profiling()) as fh:
        got = ort_node_profile(json.load(fh), calls=3)
    assert set(got) == {"Relu", "Add"}
    assert all(us >= 0 for us in got.values())


@pytest.mark.parametrize("calls", [1, 2])
def test_fewer_runs_than_calls_uses_what_there_is(calls):
    trace = [node("Conv", "c", 8)]
    assert ort_node_profile(trace, calls=calls) == {"Conv": 8.0}
