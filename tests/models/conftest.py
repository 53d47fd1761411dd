import pytest
import torch
from hydra.utils import instantiate

from geoclim.training.instantiate import net_dims
from tests.registry import models

NETS = {e.name: e for e in models(kind="network")}  # every conf/model/*.yaml network
POINT_NETS = sorted(e.name for e in models(kind="network", spatial=False))
DIMS = {"c_past": 3, "c_known": 2, "c_static": 2, "c_out": 2, "input_steps": 8, "horizon": 4}


def make_batch(b=4, h=1, w=1, dims=None, seed=0, requires_grad=False):
    d = {**DIMS, **(dims or {})}
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(requires_grad)

    return {
        "past": rand(b, d["input_steps"], d["c_past"], h, w),
        "known_future": rand(b, d["horizon"], d["c_known"], h, w),
        "known_past": rand(b, d["input_steps"], d["c_known"], h, w),
        "static": rand(b, d["c_static"], h, w),
        "target": torch.randn(b, d["horizon"], d["c_out"], h, w, generator=g),
        "target_mask": torch.ones(b, d["horizon"], d["c_out"], h, w),
        "time_idx": torch.arange(b),
        "lat_idx": torch.zeros(b, dtype=torch.long),
        "lon_idx": torch.zeros(b, dtype=torch.long),
    }


def make_net(name, n_quantiles=0, dims=None, **kwargs):
    """The network of ``conf/model/<name>.yaml`` (its sizes), on ``DIMS``, dropout off."""
    torch.manual_seed(0)
    config = dict(NETS[name].config["net"])
    if "dropout" in config:
        config["dropout"] = 0.0
    sizes = net_dims(config["_target_"], {**DIMS, **(dims or {}), "n_quantiles": n_quantiles})
    return instantiate({**config, **sizes, **kwargs})


@pytest.fixture
def batch():
    return make_batch()
