import numpy as np
import onnx
import pytest
import torch
from torch import nn

from geoclim.export.lstm_op import TracedLSTM, traced_lstms
from geoclim.export.onnx import GraphModule, _export_once

CONFIGS = [
    pytest.param({}, id="one-layer"),
    pytest.param({"num_layers": 2}, id="two-layers"),
    pytest.param({"batch_first": True}, id="batch-first"),
    pytest.param({"bidirectional": True}, id="bidirectional"),
    pytest.param({"bias": False}, id="no-bias"),
]


class _Net(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.encoder = nn.LSTM(3, 5, **kw)

    def forward(self, batch):
        out, (h, c) = self.encoder(batch["past"])
        return {"prediction": out + h.sum() + c.sum()}


def _x(batch_first, n=4, steps=6):
    return torch.randn((n, steps, 3) if batch_first else (steps, n, 3))


@pytest.mark.parametrize("kw", CONFIGS)
def test_traced_lstm_is_nn_lstm(kw):
    torch.manual_seed(0)
    net = _Net(**kw).eval()
    form = traced_lstms(net)
    assert type(form.encoder) is TracedLSTM and type(net.encoder) is nn.LSTM
    assert form.state_dict().keys() == net.state_dict().keys()
    x = _x(kw.get("batch_first", False))
    rows = (2 if kw.get("bidirectional") else 1) * kw.get("num_layers", 1)
    hx = (torch.randn(rows, 4, 5), torch.randn(rows, 4, 5))
    with torch.no_grad():
        for args in ((x,), (x, hx)):
            want, (wh, wc) = net.encoder(*args)
            got, (gh, gc) = form.encoder(*args)
            for a, b in ((got, want), (gh, wh), (gc, wc)):
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        unbatched = x[:, 0] if kw.get("batch_first") else x[0]  # nn.LSTM's own forward
        torch.testing.assert_close(form.encoder(unbatched)[0], net.encoder(unbatched)[0])


@pytest.mark.parametrize("kw", CONFIGS)
def test_the_op_has_consistent_fake_and_eager_kernels(kw):
    lstm = nn.LSTM(3, 5, **kw)
    rows = (2 if lstm.bidirectional else 1) * lstm.num_layers
    h = torch.zeros(rows, 4, 5)
    args = (_x(lstm.batch_first), [h, h], list(lstm._flat_weights), lstm.bias, lstm.num_layers)
    torch.library.opcheck(
        torch.ops.geoclim.lstm.default,
        (*args, 0.0, False, lstm.bidirectional, lstm.batch_first),
        test_utils=("test_schema", "test_faketensor"),
    )


def test_a_net_without_lstm_is_returned_as_it_is():
    net = nn.Sequential(nn.Linear(2, 2))
    assert traced_lstms(net) is net


@pytest.mark.slow  # two dynamo exports (~3 s)
@pytest.mark.parametrize("kw", [{"num_layers": 2, "bidirectional": True}])
def test_traced_graph_is_the_plain_trace(tmp_path, kw, monkeypatch):
    import onnxruntime as ort

    import geoclim.export.onnx as gx

    torch.manual_seed(0)
    module = GraphModule(_Net(**kw).eval(), ("past",)).eval()
    args = (_x(False),)
    _export_once(module, args, tmp_path / "op.onnx", exporter="dynamo", spatial=False, opset=18)
    monkeypatch.setattr(gx, "traced_lstms", lambda net: net)
    _export_once(module, args, tmp_path / "plain.onnx", exporter="dynamo", spatial=False, opset=18)
    op, plain = (onnx.load(str(tmp_path / f"{n}.onnx")) for n in ("op", "plain"))
    assert [n.op_type for n in op.graph.node] == [n.op_type for n in plain.graph.node]
    assert "LSTM" in [n.op_type for n in op.graph.node]
    x = np.random.default_rng(0).normal(size=(6, 4, 3)).astype(np.float32)
    feed = {"past": x}
    runs = [
        ort.InferenceSession(str(tmp_path / f"{n}.onnx")).run(None, feed)[0]
        for n in ("op", "plain")
    ]
    np.testing.assert_array_equal(*runs)
