import onnxruntime as ort
import pytest
import torch
from torch import nn

from geoclim.export.onnx import ExportError, ExportResult, batch_keys_read, export_net
from geoclim.export.parity import ParityError, check_parity
from tests.support.demo_export import build_net

DIMS = {"c_past": 3, "c_known": 2, "c_static": 2, "c_out": 1, "input_steps": 12, "horizon": 6}


def make_batch(b=4, h=1, w=1, seed=0, dims=DIMS):
    g = torch.Generator().manual_seed(seed)
    return {
        "past": torch.randn(b, dims["input_steps"], dims["c_past"], h, w, generator=g),
        "known_future": torch.randn(b, dims["horizon"], dims["c_known"], h, w, generator=g),
        "known_past": torch.randn(b, dims["input_steps"], dims["c_known"], h, w, generator=g),
        "static": torch.randn(b, dims["c_static"], h, w, generator=g),
        "target": torch.zeros(b, dims["horizon"], dims["c_out"], h, w),
        "target_mask": torch.ones(b, dims["horizon"], dims["c_out"], h, w),
        "time_idx": torch.zeros(b, dtype=torch.long),
        "lat_idx": torch.zeros(b, dtype=torch.long),
        "lon_idx": torch.zeros(b, dtype=torch.long),
    }


@pytest.fixture(scope="module")
def lstm_export(exported_run, loaded_run):
    """The dynamo export of the exported smoke run (conftest.py): net, result, dims.

    The LSTM export these tests check is the one ``geoclim-export`` made of that run; the
    suite traces it once. ``dims`` sizes :func:`make_batch` for it.
    """
    report = exported_run["report"]
    assert report["exporter"] == "dynamo"  # the real exporter path, not the fallback
    result = ExportResult(
        path=exported_run["model"],
        inputs=tuple(report["inputs"]),
        dynamic_spatial=report["dynamic_spatial"],
        exporter=report["exporter"],
        opset=report["opset"],
        rewrites=tuple(report["graph_rewrites"]),
    )
    return loaded_run.net, result, loaded_run.datamodule.dims


@pytest.mark.slow  # ~13 s: torch.export traces every TFT block
def test_tft_with_quantiles_exports_and_matches_torch(tmp_path):
    torch.manual_seed(0)
    net = build_net("tft", DIMS | {"n_quantiles": 3})
    result = export_net(net, make_batch(), tmp_path / "tft.onnx")
    # the encoder reads the known inputs at the input steps too (as in the paper)
    assert result.inputs == ("past", "known_future", "known_past", "static")
    report = check_parity(net, result.path, [make_batch(b, seed=b) for b in (1, 3, 9)])
    assert report.passed and report.batch_sizes == (1, 3, 9)
    assert report.max_abs < 1e-4


def test_lstm_export_has_a_dynamic_batch_axis_and_named_inputs(lstm_export):
    net, result, dims = lstm_export
    session = ort.InferenceSession(str(result.path))
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert shapes["past"] == ["batch", dims["input_steps"], dims["c_past"], 1, 1]
    assert not result.dynamic_spatial
    batches = [make_batch(b, seed=b, dims=dims) for b in (1, 2, 300)]
    report = check_parity(net, session, batches)
    assert report.passed


@pytest.mark.slow  # a second dynamic-grid CNN export (the serving tests keep one by default)
def test_cnn_export_accepts_other_grid_sizes(tmp_path):
    torch.manual_seed(0)
    net = build_net("cnn", DIMS)
    result = export_net(net, make_batch(2, 7, 5), tmp_path / "cnn.onnx")
    assert result.dynamic_spatial
    session = ort.InferenceSession(str(result.path))
    shapes = {i.name: i.shape for i in session.get_inputs()}
    assert shapes["static"] == ["batch", 2, "height", "width"]
    for b, h, w in ((2, 7, 5), (1, 4, 4), (3, 9, 13), (2, 1, 1)):
        report = check_parity(net, session, [make_batch(b, h, w, seed=h)])
        assert report.passed and report.max_abs < 1e-4


def test_parity_check_fails_loudly_for_a_different_network(lstm_export):
    _, result, dims = lstm_export
    torch.manual_seed(1)
    other = build_net("lstm", dims, hidden_size=16)
    with pytest.raises(ParityError, match="max abs error"):
        check_parity(other, result.path, [make_batch(dims=dims)])
    report = check_parity(other, result.path, [make_batch(dims=dims)], raise_on_failure=False)
    assert not report.passed and report.worst["batch"] == 0


class ReadsTarget(nn.Module):
    def forward(self, batch):
        return {"prediction": batch["past"][:, :6, :1] + batch["target"]}


def test_a_network_reading_targets_cannot_be_exported():
    with pytest.raises(ExportError, match=r"reads \['target'\]"):
        batch_keys_read(ReadsTarget(), make_batch())
