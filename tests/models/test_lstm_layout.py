"""The time-major LSTMNet computes exactly the batch-first encoder-decoder it replaced."""

import pytest
import torch
from torch import nn

from geoclim.models.components.common import fold_space, fold_static, unfold_space
from geoclim.models.components.lstm import LSTMNet


def batch_first_reference(net: LSTMNet, batch: dict) -> torch.Tensor:
    """The forecast of ``net`` (decoder "lstm", no context, anchor "none") by batch-first LSTMs."""
    enc = nn.LSTM(net.encoder.input_size, net.hidden_size, net.num_layers, batch_first=True)
    dec = nn.LSTM(net.decoder.input_size, net.hidden_size, net.num_layers, batch_first=True)
    enc.load_state_dict(net.encoder.state_dict())
    dec.load_state_dict(net.decoder.state_dict())
    b, _, _, h, w = batch["past"].shape
    x_past = fold_space(batch["past"])  # (N, T_in, C_in)
    x_known = fold_space(batch["known_future"])  # (N, T_out, C_known)
    _, state = enc(x_past, net._initial_state(fold_static(batch["static"])))
    lead = net.lead_embedding.expand(x_past.shape[0], -1, -1)  # (N, T_out, D)
    dec_out, _ = dec(torch.cat([x_known, lead], dim=-1), state)  # (N, T_out, D)
    return unfold_space(net.head(dec_out), b, h, w)  # (B, T_out, C_out, H, W)


@pytest.mark.parametrize(("layers", "h", "w"), [(1, 1, 1), (2, 3, 2)])
def test_time_major_lstm_net_is_bitwise_the_batch_first_one(layers, h, w):
    torch.manual_seed(0)
    net = LSTMNet(6, 5, 3, 1, horizon=7, hidden_size=16, num_layers=layers).eval()
    batch = {
        "past": torch.randn(4, 9, 6, h, w),
        "known_future": torch.randn(4, 7, 5, h, w),
        "static": torch.randn(4, 3, h, w),
    }
    with torch.no_grad():
        got = net(batch)["prediction"]
        want = batch_first_reference(net, batch)
    assert got.shape == (4, 7, 1, h, w)
    assert torch.equal(got, want)
