import pytest
import torch

from geoclim.errors import ConfigError
from geoclim.models.losses import ForecastLoss, point_forecast


def test_masked_mse_averages_only_counted_entries():
    pred = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1, 1)
    target = torch.zeros_like(pred)
    mask = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 4, 1, 1, 1)
    assert ForecastLoss("mse")(pred, target, mask).item() == pytest.approx((1 + 4) / 2)
    assert ForecastLoss("mae")(pred, target, mask).item() == pytest.approx((1 + 2) / 2)


def test_masked_entries_do_not_change_loss_or_gradient():
    pred = torch.randn(2, 3, 1, 2, 2, requires_grad=True)
    target = torch.randn(2, 3, 1, 2, 2)
    mask = (torch.rand(2, 3, 1, 2, 2) > 0.5).float()
    loss_a = ForecastLoss("mse")(pred, target, mask)
    (grad_a,) = torch.autograd.grad(loss_a, pred)
    target_b = torch.where(mask > 0, target, torch.full_like(target, 1e6))
    loss_b = ForecastLoss("mse")(pred, target_b, mask)
    (grad_b,) = torch.autograd.grad(loss_b, pred)
    assert torch.equal(loss_a, loss_b)
    assert torch.equal(grad_a, grad_b)
    assert torch.all(grad_a[mask == 0] == 0)


def test_pinball_loss_closed_form():
    q = (0.1, 0.5, 0.9)
    target = torch.zeros(1, 1, 1, 1, 1)
    pred = torch.ones(1, 1, 1, 3, 1, 1)  # over-forecast by 1: loss (1 - q) per quantile
    loss = ForecastLoss("quantile", q)(pred, target, torch.ones_like(target))
    assert loss.item() == pytest.approx(((0.9) + (0.5) + (0.1)) / 3)


def test_empty_mask_gives_zero_loss():
    pred = torch.randn(1, 2, 1, 1, 1, requires_grad=True)
    loss = ForecastLoss("mse")(pred, torch.zeros_like(pred), torch.zeros_like(pred))
    assert loss.item() == 0.0


@pytest.mark.parametrize(("name", "quantiles"), [("huber", ()), ("quantile", ()), ("mse", (0.5,))])
def test_bad_loss_config_names_valid_choices(name, quantiles):
    with pytest.raises(ConfigError, match="quantile|valid losses"):
        ForecastLoss(name, quantiles)


def test_point_forecast_takes_the_median_quantile():
    pred = torch.arange(3.0).view(1, 1, 1, 3, 1, 1)
    assert point_forecast(pred, (0.1, 0.5, 0.9)).item() == 1.0
    assert point_forecast(pred[:, :, :, 0], ()).shape == (1, 1, 1, 1, 1)
