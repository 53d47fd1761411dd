import numpy as np
import pytest
import torch

from geoclim.data.quantiles import median_weights, point_from_quantiles
from geoclim.errors import ConfigError
from geoclim.models.losses import point_forecast


def test_median_weights_pick_interpolate_or_clip():
    assert median_weights([0.1, 0.5, 0.9]) == ((1, 1.0),)
    assert median_weights([0.1, 0.9]) == ((0, 0.5), (1, 0.5))
    (i, a), (j, b) = median_weights([0.2, 0.4, 0.9])
    assert (i, j) == (1, 2) and a == pytest.approx(0.8) and b == pytest.approx(0.2)
    assert median_weights([0.7, 0.9]) == ((0, 1.0),)
    assert median_weights([0.1, 0.3]) == ((1, 1.0),)
    with pytest.raises(ConfigError, match="increasing"):
        median_weights([0.9, 0.1])
    with pytest.raises(ConfigError, match="within"):
        median_weights([])


def test_numpy_torch_and_the_loss_module_agree():
    x = np.random.default_rng(0).normal(size=(2, 3, 1, 2, 1, 1))  # (B, T, C, Q, H, W)
    levels = (0.1, 0.9)
    want = x[:, :, :, 0] * 0.5 + x[:, :, :, 1] * 0.5
    np.testing.assert_allclose(point_from_quantiles(x, levels, axis=3), want)
    t = torch.from_numpy(x)
    np.testing.assert_allclose(point_from_quantiles(t, levels, axis=3).numpy(), want)
    np.testing.assert_allclose(point_forecast(t, levels).numpy(), want)
    assert point_forecast(t[:, :, :, 0], ()) is not None
