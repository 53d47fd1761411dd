"""Context blocks: location embeddings, recent-lag summary, per-location target scaling."""

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from geoclim.data.normalize import Normalizer, location_stats
from geoclim.errors import ConfigError, SchemaError
from geoclim.models.components.context import (
    LocationEmbedding,
    LocationScaler,
    NetworkContext,
    RecentSummary,
    location_ids,
)
from tests.models.conftest import DIMS, make_batch, make_net

CONTEXT_NETS = ["lstm", "cnn"]
ALL_OPTIONS = {
    "n_lat": 3,
    "n_lon": 4,
    "location_embedding": 3,
    "recent_lags": [0, 1, 5],
    "recent_windows": [3, 8],
    "location_norm": True,
}


def test_recent_summary_is_the_last_lags_then_the_rolling_means():
    past = torch.arange(5.0).view(1, 5, 1, 1, 1).repeat(1, 1, 2, 1, 1)  # (1, 5, 2, 1, 1)
    past[:, :, 1] *= 10  # second channel: not a target (c_out = 1)
    out = RecentSummary(c_out=1, lags=(0, 1), windows=(2, 5))(past)
    # lag 0 = 4, lag 1 = 3, mean of the last 2 = 3.5, of all 5 = 2
    assert out.shape == (1, 4, 1, 1)
    torch.testing.assert_close(out.flatten(), torch.tensor([4.0, 3.0, 3.5, 2.0]))


def test_recent_summary_refuses_windows_longer_than_the_history():
    with pytest.raises(ConfigError, match="reach 9 steps back but the history has 8"):
        RecentSummary(1, windows=(9,))(torch.zeros(1, 8, 1, 1, 1))
    with pytest.raises(ConfigError, match="reach 9 steps back but the history has 8"):
        RecentSummary(1, lags=(8,))(torch.zeros(1, 8, 1, 1, 1))
    with pytest.raises(ConfigError, match="recent_lags must be >= 0"):
        RecentSummary(1, lags=(-1,))


def test_recent_summary_drops_what_lies_beyond_a_known_history(caplog):
    summary = RecentSummary(2, lags=(0, 5, 8), windows=(8, 9), input_steps=8)
    assert (summary.lags, summary.windows, summary.features) == ((0, 5), (8,), 6)
    assert "dropped" in caplog.text
    assert summary(torch.zeros(1, 8, 3, 1, 1)).shape == (1, 6, 1, 1)


def test_location_ids_count_rows_then_columns_from_the_patch_origin():
    batch = {"lat_idx": torch.tensor([0, 1]), "lon_idx": torch.tensor([2, 0])}
    ids = location_ids(batch, h=2, w=2, n_lon=4)
    assert ids[0].tolist() == [[2, 3], [6, 7]]
    assert ids[1].tolist() == [[4, 5], [8, 9]]
    emb = LocationEmbedding(3, 4, dim=5)
    out = emb(batch, 2, 2)  # (B, E, H, W)
    torch.testing.assert_close(out[1, :, 1, 0], emb.table.weight[8])


def test_location_scaler_inverts_exactly_and_checks_its_statistics():
    scaler = LocationScaler(n_lat=2, n_lon=1, c_out=1)  # two stations
    scaler.set_stats(torch.tensor([[1.0], [-2.0]]), torch.tensor([[2.0], [0.5]]))
    batch = make_batch(b=2, dims={"c_out": 1, "c_past": 2})
    batch["lat_idx"] = torch.tensor([0, 1])
    encoded = scaler.encode(batch)
    torch.testing.assert_close(encoded[0, :, 0], (batch["past"][0, :, 0] - 1.0) / 2.0)
    torch.testing.assert_close(encoded[1, :, 0], (batch["past"][1, :, 0] + 2.0) / 0.5)
    torch.testing.assert_close(encoded[:, :, 1], batch["past"][:, :, 1])  # not a target
    back = scaler.decode(encoded[:, :, :1], batch)
    torch.testing.assert_close(back, batch["past"][:, :, :1], rtol=0, atol=1e-6)
    with pytest.raises(ConfigError, match=r"expects \(2, 1\)"):
        scaler.set_stats(torch.zeros(3, 1), torch.ones(3, 1))
    with pytest.raises(ConfigError, match="must be > 0"):
        scaler.set_stats(torch.zeros(2, 1), torch.zeros(2, 1))


def test_location_options_need_the_number_of_locations():
    with pytest.raises(ConfigError, match="need the number of locations"):
        NetworkContext(c_out=1, location_embedding=4)


@pytest.mark.parametrize("name", CONTEXT_NETS)
@pytest.mark.parametrize("n_quantiles", [0, 3], ids=["point", "quantiles"])
def test_untrained_gated_network_with_every_option_forecasts_persistence(name, n_quantiles):
    net = make_net(name, n_quantiles=n_quantiles, anchor="gated", **ALL_OPTIONS)
    n_loc = ALL_OPTIONS["n_lat"] * ALL_OPTIONS["n_lon"]
    g = torch.Generator().manual_seed(1)
    net.context.scaler.set_stats(
        torch.randn(n_loc, DIMS["c_out"], generator=g),
        torch.rand(n_loc, DIMS["c_out"], generator=g) + 0.5,
    )
    batch = make_batch(b=2, h=2, w=3)
    batch["lat_idx"], batch["lon_idx"] = torch.tensor([0, 1]), torch.tensor([1, 0])
    prediction = net(batch)["prediction"]
    last = batch["past"][:, -1:, : DIMS["c_out"]]
    if n_quantiles:
        last = last.unsqueeze(3)
    torch.testing.assert_close(prediction, last.expand_as(prediction), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", CONTEXT_NETS)
def test_context_reaches_the_forecast(name):
    net = make_net(name, anchor="none", **ALL_OPTIONS)
    batch = make_batch(b=2)
    moved = dict(batch, lat_idx=torch.tensor([2, 2]))  # other stations, same inputs
    before, after = net(batch)["prediction"], net(moved)["prediction"]
    assert not torch.allclose(before, after)
    older = dict(batch, past=batch["past"].clone())
    older["past"][:, -2, 0] += 1.0  # lag 2 of the first target only
    assert not torch.allclose(net(older)["prediction"], before)


def _station_data(values: np.ndarray) -> xr.Dataset:
    """``no2`` ``(time, station)`` with the given values."""
    time = pd.date_range("2024-01-01", periods=values.shape[0], freq="h")
    return xr.Dataset(
        {"no2": (("time", "station"), values.astype(np.float32))},
        coords={"time": time, "station": [f"s{i}" for i in range(values.shape[1])]},
    )


def test_location_stats_per_station_in_normalised_space():
    values = np.array([[1.0, 10.0, np.nan], [3.0, 10.0, np.nan], [5.0, 10.0, np.nan], [99, 99, 99]])
    ds = _station_data(values)
    normalizer = Normalizer.fit(ds, ["no2"], time_range=(0, 3), log=())
    mean, std = location_stats(ds, normalizer, ["no2"], (0, 3))  # last row: not train
    g = normalizer.stats["no2"]
    z = (np.array([1.0, 3.0, 5.0]) - g.mean) / g.std
    np.testing.assert_allclose(mean[:, 0], [z.mean(), (10 - g.mean) / g.std, 0.0], rtol=1e-5)
    np.testing.assert_allclose(std[:, 0], [z.std(), 1.0, 1.0], rtol=1e-5)  # constant, empty: 1


def test_location_stats_of_a_grid_are_row_major_and_names_bad_variables():
    time = pd.date_range("2024-01-01", periods=2, freq="h")
    data = np.array([[[0, 1], [2, 3], [4, 5]], [[2, 3], [4, 5], [6, 7]]], dtype=np.float32)
    ds = xr.Dataset(
        {"no2": (("time", "latitude", "longitude"), data), "elev": (("latitude",), [1, 2, 3])},
        coords={"time": time, "latitude": [1.0, 2.0, 3.0], "longitude": [5.0, 6.0]},
    )
    normalizer = Normalizer({"no2": Normalizer.fit(ds, ["no2"], log=()).stats["no2"]})
    mean, _ = location_stats(ds, normalizer, ["no2"], (0, 2))
    g = normalizer.stats["no2"]
    expected = (data.mean(0).ravel() - g.mean) / g.std  # cell (row, col) -> row * 2 + col
    np.testing.assert_allclose(mean[:, 0], expected, rtol=1e-5)
    with pytest.raises(SchemaError, match="cannot scale 'elev' per location"):
        location_stats(ds, normalizer, ["elev"], (0, 2))


@pytest.mark.parametrize("name", CONTEXT_NETS)
def test_a_network_with_context_reads_the_servable_batch_keys(name):
    from geoclim.export.onnx import batch_keys_read

    net = make_net(name, anchor="gated", **ALL_OPTIONS).eval()
    read = batch_keys_read(net, make_batch(b=2))
    assert set(read) == {"past", "known_future", "static", "lat_idx", "lon_idx"}
