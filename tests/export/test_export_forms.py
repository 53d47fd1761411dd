"""Export forms: the rewritten network computes the same function, and onnxruntime takes
the fast (NCHWc) convolution path for it."""

import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from geoclim.export import forms
from geoclim.export.forms import ChannelPaddedConv2d, export_form
from geoclim.export.onnx import ExportError, export_net
from geoclim.export.parity import check_parity
from tests.support.demo_export import build_net

# 10 * 8 + 6 * 5 + 3 = 113 stacked input channels: the U-Net stem is padded to 128
DIMS = {"c_past": 8, "c_known": 5, "c_static": 3, "c_out": 1, "input_steps": 10, "horizon": 6}


def grid_batch(b: int, h: int, w: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "past": torch.randn(b, DIMS["input_steps"], DIMS["c_past"], h, w, generator=g),
        "known_future": torch.randn(b, DIMS["horizon"], DIMS["c_known"], h, w, generator=g),
        "static": torch.randn(b, DIMS["c_static"], h, w, generator=g),
    }


@pytest.mark.parametrize(
    ("stride", "padding", "bias"), [(1, 1, True), (2, 1, False), (1, 0, True), (2, 0, True)]
)
def test_channel_padded_conv_is_the_same_convolution(stride, padding, bias):
    torch.manual_seed(0)
    conv = nn.Conv2d(70, 9, 3, stride=stride, padding=padding, bias=bias).eval()
    padded = ChannelPaddedConv2d(conv, 10)
    x = torch.randn(2, 70, 11, 8)
    with torch.no_grad():
        want, got = conv(x), padded(x)
    assert padded.weight.shape == (9, 80, 3, 3)
    assert torch.equal(padded.weight[:, 70:], torch.zeros(9, 10, 3, 3))
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_export_form_pads_only_wide_plain_convolutions_and_leaves_the_net_alone():
    net = nn.Sequential(
        nn.Conv2d(113, 16, 3, padding=1),  # padded: 113 -> 128
        nn.Conv2d(16, 20, 1),  # narrow: left alone
        nn.Conv2d(20, 96, 1),
        nn.Conv2d(96, 80, 3, padding=1),  # a multiple of 16 already: left alone
        nn.Conv2d(80, 80, 3, padding=1, groups=8),  # grouped: left alone
        nn.Conv2d(80, 8, 3, padding=1, padding_mode="replicate"),  # not zero padding: left alone
    ).eval()
    form, rewrites = export_form(net)
    assert rewrites == ("0: Conv2d input channels 113 -> 128 (zeros, NCHWc)",)
    assert isinstance(form[0], ChannelPaddedConv2d)
    assert all(isinstance(form[i], nn.Conv2d) for i in range(1, 6))
    assert isinstance(net[0], nn.Conv2d) and net[0].weight.shape[1] == 113  # original intact
    x = torch.randn(1, 113, 6, 5)
    with torch.no_grad():
        torch.testing.assert_close(form(x), net(x), rtol=1e-5, atol=1e-5)
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    assert export_form(plain) == (plain, ())


def test_unet_form_appends_the_zeros_in_its_input_and_widens_the_stem():
    torch.manual_seed(0)
    net = build_net("cnn", DIMS, base_channels=16)
    form, rewrites = export_form(net)
    assert rewrites == (
        "stem.body.0: Conv2d input channels 113 -> 128 (zeros, NCHWc)",
        "stem.skip: Conv2d input channels 113 -> 128 (zeros, NCHWc)",
    )
    assert form.input_padding == 15 and net.input_padding == 0
    assert form.stem.skip.weight.shape == (16, 128, 1, 1)
    assert net.stem.skip.weight.shape == (16, 113, 1, 1)  # the trained network is not rewritten
    assert not any(isinstance(m, ChannelPaddedConv2d) for m in form.modules())
    batch = grid_batch(2, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(
            form(batch)["prediction"], net(batch)["prediction"], rtol=1e-5, atol=1e-5
        )


def _nchwc_conv_input_channels(path, tmp_path) -> list[int]:
    """Input channels of the convolutions onnxruntime runs in NCHWc layout (level ALL)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(options.optimized_model_filepath)
    weights = {t.name: t.dims for t in model.graph.initializer}
    return [
        weights[n.input[1]][1]
        for n in model.graph.node
        if n.domain == "com.microsoft.nchwc" and n.op_type == "Conv" and n.input[1] in weights
    ]


class StackedFramesNet(nn.Module):
    """The smallest network with a wide stem: 10 steps x 7 channels stacked -> one lead frame."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(10 * 7, 16, 3, padding=1)
        self.head = nn.Conv2d(16, 1, 1)

    def forward(self, batch):
        x = batch["past"].flatten(1, 2)  # (B, T_in * C_in, H, W)
        return {"prediction": self.head(torch.relu(self.stem(x)))[:, None]}  # (B, 1, 1, H, W)


def test_export_traces_the_form_and_checks_it_against_the_network(tmp_path):
    torch.manual_seed(0)
    net = StackedFramesNet().eval()
    batch = {"past": torch.randn(2, 10, 7, 6, 6)}
    result = export_net(net, batch, tmp_path / "net.onnx", dynamic_spatial=False)
    assert result.rewrites == ("stem: Conv2d input channels 70 -> 80 (zeros, NCHWc)",)
    graph = onnx.load(str(result.path)).graph
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    assert (16, 80, 3, 3) in weights.values() and (16, 70, 3, 3) not in weights.values()
    report = check_parity(net, result.path, [{"past": torch.randn(3, 10, 7, 6, 6)}])
    assert report.passed and report.max_abs < 1e-5


@pytest.mark.slow  # ~5 s: an export that must fail its check
def test_a_form_that_is_not_equivalent_is_refused(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = StackedFramesNet().eval()
    batch = {"past": torch.randn(2, 10, 7, 6, 6)}

    def broken(net):
        form, rewrites = forms.export_form(net)
        form.stem.weight.data[:, 0] += 1.0  # not the same convolution any more
        return form, rewrites

    monkeypatch.setattr("geoclim.export.onnx.export_form", broken)
    with pytest.raises(ExportError, match="output differs"):
        export_net(net, batch, tmp_path / "broken.onnx", dynamic_spatial=False, exporter="dynamo")


@pytest.mark.slow  # ~20 s: two U-Net exports
def test_cnn_stem_is_exported_padded_runs_nchwc_and_matches_the_trained_net(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net = build_net("cnn", DIMS, base_channels=16)
    batch = grid_batch(2, 8, 8)
    result = export_net(net, batch, tmp_path / "cnn.onnx", dynamic_spatial=False)
    assert result.rewrites == (
        "stem.body.0: Conv2d input channels 113 -> 128 (zeros, NCHWc)",
        "stem.skip: Conv2d input channels 113 -> 128 (zeros, NCHWc)",
    )
    assert isinstance(net.stem.skip, nn.Conv2d)  # the trained network is not rewritten
    report = check_parity(net, result.path, [grid_batch(3, 8, 8, seed=1)])
    assert report.passed and report.max_abs < 1e-4
    assert 128 in _nchwc_conv_input_channels(result.path, tmp_path)

    monkeypatch.setattr(forms, "MIN_PADDED_CHANNELS", 10_000)  # the same export, unpadded
    plain = export_net(net, batch, tmp_path / "plain.onnx", dynamic_spatial=False)
    assert plain.rewrites == ()
    channels = _nchwc_conv_input_channels(plain.path, tmp_path)
    assert 113 not in channels and 128 not in channels  # the stem fell back to im2col + GEMM
