import pytest
import torch

from geoclim.models.components.cnn import UNetNet
from geoclim.models.components.lstm import LSTMNet
from geoclim.models.components.tft.net import TemporalFusionTransformer

NETS = {"lstm": LSTMNet, "cnn": UNetNet, "tft": TemporalFusionTransformer}
SMALL = {
    "lstm": {"hidden_size": 16},
    "cnn": {"base_channels": 8, "depth": 2},
    "tft": {"hidden_size": 16, "attention_heads": 2, "dropout": 0.0},
}
DIMS = {"c_past": 3, "c_known": 2, "c_static": 2, "c_out": 2, "input_steps": 8, "horizon": 4}


def make_batch(b=4, h=1, w=1, dims=None, seed=0, requires_grad=False):
    d = {**DIMS, **(dims or {})}
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)

    return {
        "past": rand(b, d["input_steps"], d["c_past"], h, w),
        "known_future": rand(b, d["horizon"], d["c_known"], h, w),
        "static": rand(b, d["c_static"], h, w),
        "target": torch.randn(b, d["horizon"], d["c_out"], h, w, generator=g),
        "target_mask": torch.ones(b, d["horizon"], d["c_out"], h, w),
        "time_idx": torch.arange(b),
        "lat_idx": torch.zeros(b, dtype=torch.long),
        "lon_idx": torch.zeros(b, dtype=torch.long),
    }


def make_net(name, n_quantiles=0, dims=None, **kwargs):
    torch.manual_seed(0)
    return NETS[name](
        **{**DIMS, **(dims or {})}, n_quantiles=n_quantiles, **{**SMALL[name], **kwargs}
    )


@pytest.fixture
def batch():
    return make_batch()
