import pytest
import torch

from geoclim.errors import ConfigError
from geoclim.models.losses import ForecastLoss

from .conftest import DIMS, NETS, POINT_NETS, make_batch, make_net

GRIDS = [
    pytest.param(1, 1, id="point"),
    pytest.param(7, 5, id="7x5"),
    pytest.param(13, 11, id="13x11"),
]


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize(("h", "w"), GRIDS)
@pytest.mark.parametrize("n_quantiles", [0, 3], ids=["point_forecast", "quantiles"])
def test_prediction_shape_on_any_grid(name, h, w, n_quantiles):
    net = make_net(name, n_quantiles)
    out = net(make_batch(b=2, h=h, w=w))["prediction"]
    q = (n_quantiles,) if n_quantiles else ()
    assert out.shape == (2, DIMS["horizon"], DIMS["c_out"], *q, h, w)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", POINT_NETS)
def test_point_model_on_spatial_batch_equals_cell_by_cell(name):
    net = make_net(name).eval()
    spatial = make_batch(b=2, h=3, w=2)
    out = net(spatial)["prediction"]  # (B, T, C, 3, 2)
    for y in range(3):
        for x in range(2):
            cell = {
                k: (v[..., y : y + 1, x : x + 1] if v.dim() >= 4 else v) for k, v in spatial.items()
            }
            torch.testing.assert_close(
                net(cell)["prediction"][..., 0, 0], out[..., y, x], rtol=1e-5, atol=1e-5
            )


@pytest.mark.parametrize("name", sorted(NETS))
def test_gradients_reach_every_input_group(name):
    net = make_net(name, anchor="none")  # a gated net starts with a zero head: no gradient
    batch = make_batch(b=2, h=3, w=3, requires_grad=True)
    net(batch)["prediction"].square().sum().backward()
    for group in ("past", "known_future", "static"):
        grad = batch[group].grad
        assert grad is not None and grad.abs().sum() > 0, group
    # the targets' own history, not only the other past channels, drives the forecast
    assert batch["past"].grad[:, :, : DIMS["c_out"]].abs().sum() > 0


@pytest.mark.parametrize("name", sorted(NETS))
def test_overfits_one_small_batch(name):
    net = make_net(name, anchor="none")
    batch = make_batch(b=8, h=2, w=2)
    loss_fn = ForecastLoss("mse")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(300):
        optimizer.zero_grad()
        loss = loss_fn(net(batch)["prediction"], batch["target"], batch["target_mask"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if losses[-1] <= 0.05 * losses[0]:
            break
    assert losses[-1] <= 0.1 * losses[0], (losses[0], losses[-1], len(losses))


@pytest.mark.parametrize("name", sorted(NETS))
@pytest.mark.parametrize("n_quantiles", [0, 3], ids=["point", "quantiles"])
def test_untrained_gated_network_forecasts_persistence_exactly(name, n_quantiles):
    net = make_net(name, n_quantiles=n_quantiles, anchor="gated")
    batch = make_batch(b=2, h=2, w=2)
    prediction = net(batch)["prediction"]
    last = batch["past"][:, -1:, : DIMS["c_out"]]  # (B, 1, C_out, H, W)
    if n_quantiles:
        last = last.unsqueeze(3)
    torch.testing.assert_close(prediction, last.expand_as(prediction), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(NETS))
def test_anchored_network_learns_per_lead_how_much_persistence_to_keep(name):
    # the target is the last observation at lead 1 and independent noise after it: trained,
    # the forecast follows the last observation at lead 1 (slope ~1) and not at later leads
    net = make_net(name, anchor="gated")
    batch = make_batch(b=32, h=1, w=1)
    last = batch["past"][:, -1:, : DIMS["c_out"]]  # (B, 1, C_out, 1, 1)
    target = torch.randn_like(batch["target"])
    target[:, :1] = last
    batch["target"] = target
    loss_fn = ForecastLoss("mse")
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        optimizer.zero_grad()
        loss_fn(net(batch)["prediction"], batch["target"], batch["target_mask"]).backward()
        optimizer.step()
    with torch.no_grad():
        prediction = net(batch)["prediction"]  # (B, T_out, C_out, 1, 1)
    x = last - last.mean(0)
    y = prediction - prediction.mean(0)
    slope = (x * y).sum(0) / (x * x).sum(0)  # (T_out, C_out, 1, 1): persistence weight
    assert (slope[0] - 1).abs().max() < 0.15, slope.flatten()
    assert slope[1:].abs().max() < 0.6, slope.flatten()


@pytest.mark.parametrize("name", sorted(NETS))
def test_residual_anchor_adds_the_last_observation(name):
    net = make_net(name, anchor="residual")
    batch = make_batch(b=2, h=2, w=2)
    with_res = net(batch)["prediction"]
    net.anchor.mode = "none"
    without = net(batch)["prediction"]
    last = batch["past"][:, -1:, : DIMS["c_out"]]
    torch.testing.assert_close(with_res - without, last.expand_as(with_res))


def test_unknown_anchor_is_refused_with_the_choices():
    from geoclim.models.components.common import PersistenceAnchor

    with pytest.raises(ConfigError, match="unknown anchor 'last'.*gated"):
        PersistenceAnchor("last", horizon=4, c_out=2)


@pytest.mark.parametrize("name", sorted(NETS))
def test_no_static_and_no_known_inputs(name):
    dims = {"c_static": 0, "c_known": 0}
    net = make_net(name, dims=dims)
    out = net(make_batch(b=2, h=2, w=3, dims=dims))["prediction"]
    assert out.shape == (2, DIMS["horizon"], DIMS["c_out"], 2, 3)
