"""LSTM nodes run in time segments: the same recurrence, the same outputs, in L2-sized calls."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from geoclim.export.graph_forms import segment_lstm_nodes, segment_steps
from geoclim.export.onnx import export_net
from geoclim.export.parity import check_parity
from tests.support.demo_export import build_net

H = 32


def lstm_model(steps: int | str, *, direction: str = "forward", seq_lens: bool = False):
    """One ONNX LSTM (input 5, hidden 32, initial state, peepholes) with all three outputs."""
    rng = np.random.default_rng(0)
    weights = {
        "W": rng.normal(0, 0.3, (1, 4 * H, 5)),
        "R": rng.normal(0, 0.3, (1, 4 * H, H)),
        "B": rng.normal(0, 0.3, (1, 8 * H)),
        "P": rng.normal(0, 0.3, (1, 3 * H)),
    }
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, "N", 5])]
    for name in ("h0", "c0"):
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, "N", H]))
    if seq_lens:
        inputs.append(helper.make_tensor_value_info("lens", TensorProto.INT32, ["N"]))
    node = helper.make_node(
        "LSTM",
        ["X", "W", "R", "B", "lens" if seq_lens else "", "h0", "c0", "P"],
        ["Y", "Y_h", "Y_c"],
        "lstm",
        hidden_size=H,
        direction=direction,
    )
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, [None] * rank)
        for n, rank in zip(node.output, (4, 3, 3), strict=True)
    ]
    graph = helper.make_graph([node], "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model, feed):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def feed(steps: int, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "X": rng.normal(size=(steps, n, 5)).astype(np.float32),
        "h0": rng.normal(0, 0.5, (1, n, H)).astype(np.float32),
        "c0": rng.normal(0, 0.5, (1, n, H)).astype(np.float32),
    }


def test_segment_steps_keep_the_input_projection_of_128_rows_under_512_kib():
    assert [segment_steps(d) for d in (8, 32, 64, 128, 512)] == [32, 8, 4, 2, 2]
    for d in (16, 32, 64, 128):
        assert segment_steps(d) * 128 * 4 * d * 4 <= 512 * 1024


def test_a_segmented_lstm_gives_the_outputs_and_final_state_of_the_single_node():
    model = lstm_model(21)  # 8 + 8 + 5 steps: a shorter last segment
    x = feed(21, 7)
    want = run(model, x)
    rewrites = segment_lstm_nodes(model)
    onnx.checker.check_model(model)
    assert rewrites == [
        "lstm: LSTM over 21 steps run as 3 segments of <= 8 steps (input projection per call in L2)"
    ]
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Split", "LSTM", "LSTM", "LSTM", "Concat"]
    sizes = next(t for t in model.graph.initializer if t.name.endswith("segment_steps"))
    assert numpy_helper.to_array(sizes).tolist() == [8, 8, 5]
    got = run(model, x)
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)
    got_one = run(model, feed(21, 1, seed=2))  # batch 1 as well
    want_one = run(lstm_model(21), feed(21, 1, seed=2))
    np.testing.assert_allclose(got_one[0], want_one[0], rtol=0, atol=1e-6)


def test_an_unused_sequence_output_is_not_concatenated():
    model = lstm_model(16)
    del model.graph.output[0]  # only Y_h and Y_c leave the graph
    want = run(model, feed(16, 3))
    segment_lstm_nodes(model)
    assert [n.op_type for n in model.graph.node] == ["Split", "LSTM", "LSTM"]
    assert not model.graph.node[-1].output[0]  # the last segment writes no Y
    for g, w in zip(run(model, feed(16, 3)), want, strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)


def folded_model(steps: int = 19, width: int = 24):
    """known (T, N, 5) ++ a (T, 1, width) constant expanded over the batch -> one LSTM."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (1, 4 * H, 5 + width)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(0, 0.3, (1, 4 * H, H)).astype(np.float32), "R"),
        numpy_helper.from_array(rng.normal(0, 0.3, (1, 8 * H)).astype(np.float32), "B"),
        numpy_helper.from_array(rng.normal(size=(steps, 1, width)).astype(np.float32), "lead"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "start"),
        numpy_helper.from_array(np.array([2], np.int64), "end"),
    ]
    nodes = [
        helper.make_node("Shape", ["X"], ["x_shape"]),
        helper.make_node("Slice", ["x_shape", "start", "end"], ["n"]),
        helper.make_node("Concat", ["one", "n", "one"], ["target"], axis=0),
        helper.make_node("Expand", ["lead", "target"], ["lead_n"]),
        helper.make_node("Concat", ["X", "lead_n"], ["X_in"], axis=2),
        helper.make_node("LSTM", ["X_in", "W", "R", "B"], ["Y", "Y_h"], hidden_size=H),
    ]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [steps, "N", 5])]
    outputs = [
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None] * 4),
        helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [None] * 3),
    ]
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("n", [1, 6])
def test_a_per_step_constant_input_is_folded_into_per_segment_weights(n):
    model = folded_model()
    x = {"X": np.random.default_rng(n).normal(size=(19, n, 5)).astype(np.float32)}
    want = run(model, x)
    rewrites = segment_lstm_nodes(model)
    onnx.checker.check_model(model)
    assert rewrites[0] == (
        "LSTM: 24 per-step constant input channels folded into per-segment weights (a one-hot "
        "of the step, 8 channels)"
    )
    weights = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    assert "lead" not in weights and "W" not in weights  # replaced, not kept beside
    lstms = [node for node in model.graph.node if node.op_type == "LSTM"]
    assert [weights[node.input[1]].shape for node in lstms] == [(1, 4 * H, 5 + 8)] * 3
    assert not weights[lstms[-1].input[1]][:, :, 5 + 3 :].any()  # 3 steps: 5 unused columns
    one_hot = next(v for k, v in weights.items() if k.endswith("step_one_hot"))
    assert one_hot.shape == (19, 1, 8) and (one_hot.sum(axis=2) == 1).all()
    assert one_hot[10, 0, 2] == 1 and one_hot[16, 0, 0] == 1
    for g, w in zip(run(model, x), want, strict=True):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=2e-6)


def test_a_constant_narrower_than_a_segment_is_not_folded():
    model = folded_model(width=6)  # 6 channels < 8 one-hot channels: segmenting only
    want = run(model, {"X": np.ones((19, 2, 5), np.float32)})
    rewrites = segment_lstm_nodes(model)
    assert len(rewrites) == 1 and "segments" in rewrites[0]
    got = run(model, {"X": np.ones((19, 2, 5), np.float32)})
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(lstm_model(8), id="one-segment-long"),
        pytest.param(lstm_model("T"), id="dynamic-steps"),
        pytest.param(lstm_model(24, direction="reverse"), id="reverse"),
        pytest.param(lstm_model(24, direction="bidirectional"), id="bidirectional"),
        pytest.param(lstm_model(24, seq_lens=True), id="sequence-lens"),
    ],
)
def test_lstms_that_cannot_be_cut_in_time_are_left_as_they_are(model):
    before = model.SerializeToString()
    assert segment_lstm_nodes(model) == []
    assert model.SerializeToString() == before


@pytest.mark.slow  # ~20 s: two dynamo exports with their checks
def test_the_lstm_forecaster_exports_segmented_and_matches_the_network(tmp_path):
    torch.manual_seed(0)
    dims = {"c_past": 4, "c_known": 3, "c_static": 2, "c_out": 2, "input_steps": 20, "horizon": 9}
    net = build_net("lstm", dims, hidden_size=32)
    g = torch.Generator().manual_seed(0)
    batch = {
        "past": torch.randn(5, 20, 4, 1, 1, generator=g),
        "known_future": torch.randn(5, 9, 3, 1, 1, generator=g),
        "static": torch.randn(5, 2, 1, 1, generator=g),
    }
    result = export_net(net, batch, tmp_path / "lstm.onnx")
    assert result.rewrites == (
        "encoder: LSTM over 20 steps run as 3 segments of <= 8 steps (input projection per "
        "call in L2)",
        "decoder: 32 per-step constant input channels folded into per-segment weights (a "
        "one-hot of the step, 8 channels)",
        "decoder: LSTM over 9 steps run as 2 segments of <= 8 steps (input projection per "
        "call in L2)",
    )
    graph = onnx.load(str(result.path)).graph
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    widths = [weights[n.input[1]][2] for n in lstms]
    assert widths == [4, 4, 4, 3 + 8, 3 + 8]  # the decoder reads known inputs + a one-hot
    other = {k: v[:3] * 0.5 for k, v in batch.items()}
    report = check_parity(net, result.path, [batch, other])
    assert report.passed and report.max_abs < 1e-5
    with torch.no_grad():
        assert net(batch)["prediction"].abs().max() > 0.1  # a forecast, not a zero head
    plain = export_net(net, batch, tmp_path / "plain.onnx", graph_forms=False)
    assert plain.rewrites == ()
    plain_graph = onnx.load(str(plain.path)).graph
    assert sum(n.op_type == "LSTM" for n in plain_graph.node) == 2


def test_an_initializer_read_only_inside_a_subgraph_survives_the_rewrite():
    model = lstm_model(24)
    rng = np.random.default_rng(3)
    scale = numpy_helper.from_array(rng.normal(size=(1,)).astype(np.float32), "branch_scale")
    model.graph.initializer.append(scale)
    branch = helper.make_graph(
        [helper.make_node("Mul", ["Y_h", "branch_scale"], ["scaled"])],
        "branch",
        [],
        [helper.make_tensor_value_info("scaled", TensorProto.FLOAT, None)],
    )
    model.graph.node.append(helper.make_node("Constant", [], ["yes"], value_int=1))
    cast = helper.make_node("Cast", ["yes"], ["cond"], to=TensorProto.BOOL)
    model.graph.node.append(cast)
    model.graph.node.append(
        helper.make_node("If", ["cond"], ["out"], then_branch=branch, else_branch=branch)
    )
    model.graph.output.append(helper.make_tensor_value_info("out", TensorProto.FLOAT, None))
    want = run(model, feed(24, 3))
    assert segment_lstm_nodes(model)
    assert "branch_scale" in {t.name for t in model.graph.initializer}
    for a, b in zip(run(model, feed(24, 3)), want, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def _small_lstm():
    """A seeded 16-unit LSTM (20 input steps, 6 leads) and a batch of 4 for it."""
    torch.manual_seed(0)
    dims = {"c_past": 3, "c_known": 2, "c_static": 2, "c_out": 1, "input_steps": 20, "horizon": 6}
    net = build_net("lstm", dims, hidden_size=16)  # the weights first, then the batch
    batch = {
        "past": torch.randn(4, 20, 3, 1, 1),
        "known_future": torch.randn(4, 6, 2, 1, 1),
        "static": torch.randn(4, 2, 1, 1),
    }
    return net, batch


def test_a_failing_graph_form_keeps_the_plain_graph_and_says_so(tmp_path, monkeypatch, caplog):
    import geoclim.export.onnx as onnx_export

    def broken(model):
        raise ValueError("a graph the forms do not know")

    monkeypatch.setattr(onnx_export, "segment_lstm_nodes", broken)
    net, batch = _small_lstm()
    with caplog.at_level("WARNING", logger="geoclim.export.onnx"):
        result = export_net(net, batch, tmp_path / "lstm.onnx", exporter="torchscript")
    assert not any("segments" in r for r in result.rewrites)
    assert "graph forms skipped for lstm.onnx: ValueError" in caplog.text
    assert sum(n.op_type == "LSTM" for n in onnx.load(str(result.path)).graph.node) == 2
    assert check_parity(net, result.path, [batch]).passed


def test_a_graph_form_that_breaks_the_graph_is_undone_before_the_shape_check(
    tmp_path, monkeypatch, caplog
):
    import geoclim.export.onnx as onnx_export

    def breaks_the_output(model):  # runs, but doubles the forecast
        out = model.graph.output[0]
        model.graph.initializer.append(onnx.numpy_helper.from_array(np.float32(2.0), "two"))
        model.graph.node.append(onnx.helper.make_node("Mul", [out.name, "two"], ["doubled"]))
        out.name = "doubled"
        return ["a form that breaks the graph"]

    monkeypatch.setattr(onnx_export, "segment_lstm_nodes", breaks_the_output)
    net, batch = _small_lstm()
    with caplog.at_level("WARNING", logger="geoclim.export.onnx"):
        result = export_net(net, batch, tmp_path / "lstm.onnx", exporter="torchscript")
    assert "a form that breaks the graph" not in result.rewrites
    assert "graph forms undone for lstm.onnx" in caplog.text
    assert "doubled" not in {n.output[0] for n in onnx.load(str(result.path)).graph.node}
    assert check_parity(net, result.path, [batch]).passed
