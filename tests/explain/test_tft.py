import numpy as np
import pytest
import torch

from geoclim.errors import ConfigError
from geoclim.explain.tft import attention_lags, explain_tft
from tests.support.demo_export import build_net


def test_tft_weights_are_averaged_per_step_and_lead(grid_dm, one_thread):
    torch.manual_seed(0)
    net = build_net("tft", grid_dm.dims, hidden_size=8, attention_heads=2)
    ds = explain_tft(net, grid_dm, max_samples=20, progress=False)
    assert ds["selection_weight"].dims == ("input_variable", "lag")
    # the encoder selects among the past inputs and the known ones (u10 is both: summed)
    encoder = ["no2", "t2m", "u10", "hour_sin"]
    past = ds["selection_weight"].sel(lag=slice(0, None), input_variable=encoder)
    np.testing.assert_allclose(past.sum("input_variable"), 1.0, rtol=1e-5)  # per input step
    assert float(ds["selection_weight"].sel(input_variable="hour_sin", lag=0)) > 0.0
    future = ds["decoder_weight"].sel(input_variable=["hour_sin", "u10"])
    np.testing.assert_allclose(future.sum("input_variable"), 1.0, rtol=1e-5)  # per lead
    np.testing.assert_allclose(ds["selection_weight"].sel(input_variable="elevation", lag=0), 1.0)
    np.testing.assert_allclose(ds["attention"].sum("lag"), 1.0, rtol=1e-5)
    # causal: lead 1 never attends to later leads (lags -2, -3)
    assert float(ds["attention"].isel(lead_time=0).sel(lag=[-3, -2]).max()) == 0.0
    assert ds.sizes["head"] == 2 and ds.attrs["n_samples"] == 20


def test_attention_positions_map_to_lags():
    np.testing.assert_array_equal(attention_lags(3, 2), [2, 1, 0, -1, -2])


def test_explain_tft_refuses_other_networks(grid_dm):
    with pytest.raises(ConfigError, match="model=tft"):
        explain_tft(build_net("lstm", grid_dm.dims, hidden_size=4), grid_dm, progress=False)


def test_tft_weights_of_one_hot_channels_sum_under_their_variable(one_thread):
    from dataclasses import replace

    from tests.explain.flags import FLAG_TASK, flag_dm

    dm = flag_dm(replace(FLAG_TASK, future_inputs=("hour_sin", "wd")), n_times=24 * 6)
    torch.manual_seed(0)
    net = build_net("tft", dm.dims, hidden_size=8, attention_heads=2)
    ds = explain_tft(net, dm, max_samples=16, progress=False)
    assert list(ds["input_variable"].values) == ["no2", "wd", "sky", "noise", "hour_sin", "site"]
    # the encoder selects among past and known inputs (wd is both: its weights are summed)
    past = ds["selection_weight"].sel(
        lag=slice(0, None), input_variable=["no2", "wd", "sky", "noise", "hour_sin"]
    )
    np.testing.assert_allclose(past.sum("input_variable"), 1.0, rtol=1e-5)
    lead = ds["decoder_weight"].sel(input_variable=["wd", "hour_sin"]).sum("input_variable")
    np.testing.assert_allclose(lead, 1.0, rtol=1e-5)
    np.testing.assert_allclose(ds["selection_weight"].sel(input_variable="site", lag=0), 1.0)
