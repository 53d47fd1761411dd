import numpy as np
import pytest
import torch

from geoclim.errors import ConfigError
from geoclim.explain.baselines import make_baseline
from geoclim.explain.captum import gradient_context
from geoclim.explain.layout import InputLayout
from geoclim.explain.network import explain_network
from geoclim.explain.target import ExplainTarget
from tests.explain.conftest import TASK, make_dm
from tests.support.demo_export import build_net


@pytest.fixture(scope="module")
def lstm(grid_dm, one_thread):
    torch.manual_seed(0)
    return build_net("lstm", grid_dm.dims, hidden_size=8)


def test_point_attributions_have_sample_lead_variable_lag_coords(grid_dm, lstm):
    ds = explain_network(lstm, grid_dm, max_samples=10, progress=False, n_steps=8)
    assert ds["attribution"].dims == ("sample", "lead_time", "input_variable", "lag")
    assert ds.sizes == {"sample": 10, "lead_time": 3, "input_variable": 5, "lag": 9}
    assert list(ds["input_variable"].values) == ["no2", "t2m", "u10", "hour_sin", "elevation"]
    assert {"init_time", "latitude", "longitude"} <= set(ds["sample"].coords)
    assert ds.attrs["method"] == "integrated_gradients" and ds.attrs["target_variable"] == "no2"
    # NaN exactly where the model has no input: past-only no2 at negative lags
    assert ds["attribution"].sel(input_variable="no2", lag=-1).isnull().all()
    assert ds["attribution"].sel(input_variable="u10", lag=-1).notnull().all()
    # the explained scalar is the network's forecast of that sample (physical units)
    rows = np.sort(np.random.default_rng(0).choice(len(grid_dm.index["test"]), 10, replace=False))
    batch = grid_dm.dataset("test")[rows[:1]]
    with torch.no_grad():
        raw = lstm(batch)["prediction"][0, :, 0, 0, 0].numpy()
    std = grid_dm.normalizer.stats["no2"].std
    scale = 1.0 if grid_dm.normalizer.stats["no2"].log else std
    np.testing.assert_allclose(ds["prediction"].isel(sample=0), raw * scale, rtol=1e-5)


def test_completeness_holds_through_explain_network(grid_dm, lstm):
    ds = explain_network(lstm, grid_dm, max_samples=6, progress=False, n_steps=64)
    total = ds["attribution"].sum(["input_variable", "lag"])
    change = ds["prediction"] - ds["baseline_prediction"]
    np.testing.assert_allclose(total, change, atol=0.02 * float(abs(change).mean()) + 1e-6)


def test_target_picks_leads_quantile_and_places():
    dm = make_dm(quantiles=(0.1, 0.5, 0.9))
    torch.manual_seed(0)
    net = build_net("lstm", dm.dims, hidden_size=8)
    lat = float(dm.ds.latitude[0])
    target = {"leads": [1, 3], "quantile": 0.9, "region": {"latitude": [lat - 0.01, lat + 0.01]}}
    ds = explain_network(
        net, dm, method="feature_ablation", target=target, max_samples=None, progress=False
    )
    assert ds.sizes["lead_time"] == 2
    np.testing.assert_array_equal(ds["lead_time"] / np.timedelta64(1, "h"), [1, 3])
    assert (ds["latitude"] == lat).all()
    assert ds.attrs["target_quantile"] == 0.9
    one = explain_network(
        net,
        dm,
        target={"per_lead": False},
        method="feature_ablation",
        max_samples=4,
        progress=False,
    )
    assert one.sizes["lead_time"] == 1
    with pytest.raises(ConfigError, match="not a quantile of the model"):
        explain_network(net, dm, target={"quantile": 0.3}, progress=False)
    with pytest.raises(ConfigError, match="outside 1..3"):
        explain_network(net, dm, target={"leads": [4]}, progress=False)
    with pytest.raises(ConfigError, match="not a target"):
        explain_network(net, dm, target={"variable": "o3"}, progress=False)
    with pytest.raises(ConfigError, match="unknown target key"):
        ExplainTarget.from_config({"lead": 1})


def test_grouped_ablation_and_station_coords():
    dm = make_dm(layout="station")
    torch.manual_seed(0)
    net = build_net("lstm", dm.dims, hidden_size=8)
    by_var = explain_network(
        net, dm, method="feature_ablation", ablation="variable", max_samples=5, progress=False
    )
    assert by_var["attribution"].dims == ("sample", "lead_time", "input_variable")
    assert by_var["station"].dtype.kind == "U"
    by_lag = explain_network(
        net, dm, method="feature_ablation", ablation="lag", max_samples=5, progress=False
    )
    assert by_lag["attribution"].dims == ("sample", "lead_time", "lag")
    station = str(dm.ds.station.values[1])
    ds = explain_network(
        net,
        dm,
        target={"stations": [station]},
        method="gradient_shap",
        progress=False,
        max_samples=3,
    )
    assert set(ds["station"].values) == {station}
    with pytest.raises(ConfigError, match="not in the data"):
        explain_network(net, dm, target={"stations": ["nowhere"]}, progress=False)


class ShiftEast(torch.nn.Module):
    """Forecast = last no2 of the western neighbour cell (a known advection operator)."""

    def __init__(self, horizon):
        super().__init__()
        self.horizon = horizon
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, batch):
        last = batch["past"][:, -1, 0]  # (B, H, W)
        shifted = torch.zeros_like(last)
        shifted[:, :, 1:] = last[:, :, :-1] * self.w
        return {"prediction": shifted[:, None, None].expand(-1, self.horizon, 1, -1, -1)}


def test_occlusion_finds_the_upwind_cell_of_a_known_operator():
    dm = make_dm(patch=None)
    lat, lon = dm.ds.latitude.values, dm.ds.longitude.values
    region = {"latitude": [lat[1], lat[1]], "longitude": [lon[2], lon[2]]}  # cell (1, 2)
    ds = explain_network(
        ShiftEast(3),
        dm,
        method="occlusion",
        block=1,
        target={"region": region},
        max_samples=3,
        progress=False,
    )
    assert ds["attribution"].dims == (
        "sample",
        "lead_time",
        "input_variable",
        "latitude",
        "longitude",
    )
    amap = ds["attribution"].sel(input_variable="no2")
    # the only input cell that matters is the western neighbour (1, 1)
    others = amap.where(~((amap.latitude == lat[1]) & (amap.longitude == lon[1])), 0.0)
    assert float(abs(others).max()) == 0.0
    # occluding it (to the train mean, 0) removes the whole forecast of the target cell
    np.testing.assert_allclose(
        amap.sel(latitude=lat[1], longitude=lon[1]), ds["prediction"], rtol=1e-5
    )
    assert float(abs(ds["attribution"].sel(input_variable="t2m")).max()) == 0.0
    with pytest.raises(ConfigError, match="needs a spatial model"):
        explain_network(ShiftEast(3), make_dm(), method="occlusion", progress=False)


@pytest.mark.parametrize("method", ["integrated_gradients", "gradient_shap"])
def test_gradient_maps_put_a_known_operator_on_its_upwind_cell_at_lag_0(method):
    dm = make_dm(patch=None)
    lat, lon = dm.ds.latitude.values, dm.ds.longitude.values
    region = {"latitude": [lat[1], lat[1]], "longitude": [lon[2], lon[2]]}  # cell (1, 2)
    ds = explain_network(
        ShiftEast(3), dm, method=method, maps=True, target={"region": region},
        max_samples=3, progress=False, n_steps=8, stdevs=0.0,  # noise-free: exact when linear
    )  # fmt: skip
    assert ds["attribution"].dims == (
        "sample", "lead_time", "input_variable", "lag", "latitude", "longitude"
    )  # fmt: skip
    amap = ds["attribution"].sel(input_variable="no2")
    upwind = amap.sel(lag=0, latitude=lat[1], longitude=lon[1])
    # linear operator, zero baseline: the whole forecast sits on the western neighbour at lag 0
    np.testing.assert_allclose(upwind, ds["prediction"], rtol=1e-4)
    assert float(abs(ds["attribution"]).sum()) == pytest.approx(float(abs(upwind).sum()), rel=1e-4)
    assert ds.attrs["option_maps"] == 1


def test_maps_need_a_gradient_method_on_a_spatial_model(grid_dm, lstm):
    with pytest.raises(ConfigError, match="maps=True keeps the input cells"):
        explain_network(ShiftEast(3), make_dm(patch=None), method="feature_ablation", maps=True)
    with pytest.raises(ConfigError, match="maps=True needs a spatial model"):
        explain_network(lstm, grid_dm, maps=True, max_samples=2, progress=False)


def test_baselines_are_explicit():
    layout = InputLayout.from_task(TASK)
    dm = make_dm()
    batch = dm.dataset("test")[np.arange(4)]
    clim = make_baseline(batch, "climatology", layout)
    assert all(float(abs(v).max()) == 0 for v in clim.values())
    zeros = make_baseline(batch, "zeros", layout, dm.normalizer)
    expect = dm.normalizer.encode(np.zeros(1, np.float32), "t2m")[0]
    np.testing.assert_allclose(zeros["past"][:, :, 1], expect)
    assert float(abs(zeros["known_future"][:, :, 0]).max()) == 0  # hour_sin: no statistics
    blur = make_baseline(batch, "blur", layout, sigma=50.0)  # wide blur ~ the window mean
    np.testing.assert_allclose(blur["past"].std(1), 0, atol=0.05 * float(batch["past"].std()))
    with pytest.raises(ConfigError, match="needs the fitted normaliser"):
        make_baseline(batch, "zeros", layout)
    with pytest.raises(ConfigError, match="unknown baseline"):
        make_baseline(batch, "mean", layout)


def test_cudnn_is_switched_off_only_for_recurrent_nets_on_cuda(lstm):
    assert torch.backends.cudnn.enabled
    with gradient_context(lstm, torch.device("cuda")):
        assert not torch.backends.cudnn.enabled
    assert torch.backends.cudnn.enabled
    with gradient_context(ShiftEast(1), torch.device("cuda")):
        assert torch.backends.cudnn.enabled
    with gradient_context(lstm, torch.device("cpu")):
        assert torch.backends.cudnn.enabled


class ReadsPosition(torch.nn.Module):
    """Forecast = last no2 x (1 + lat_idx): a net that reads a batch field Captum never sees."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(()))

    def forward(self, batch):
        y = batch["past"][:, -1, 0, 0, 0] * (1 + batch["lat_idx"].float()) * self.w  # (B,)
        return {"prediction": y[:, None, None, None, None].expand(-1, 3, 1, 1, 1)}


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation", "gradient_shap"])
def test_fields_outside_the_attribution_follow_captums_expanded_batches(method):
    from geoclim.explain.captum import attribute_batch

    dm = make_dm()
    batch = dm.dataset("test")[np.arange(4)]
    batch["lat_idx"] = torch.arange(4)
    target = ExplainTarget(leads=[1]).resolve(TASK)
    layout = InputLayout.from_task(TASK)
    out = attribute_batch(ReadsPosition(), batch, method, target, layout, n_steps=4, stdevs=0.0)
    lag0 = out["cube"][:, 0, 0, layout.horizon]  # no2 at lag 0, lead 1
    expected = batch["past"][:, -1, 0, 0, 0].numpy() * (1 + np.arange(4))
    np.testing.assert_allclose(lag0, expected, rtol=1e-5)


@pytest.mark.parametrize("ablation", ["cell", "variable", "lag"])
@pytest.mark.parametrize(("model", "patch"), [("lstm", 1), ("cnn", None)])
def test_batched_ablation_equals_one_pass_per_group(model, patch, ablation, monkeypatch):
    """Several perturbed copies per pass give each group the attribution it gets alone."""
    import geoclim.explain.captum as explain_captum
    from geoclim.explain.captum import attribute_batch

    dm = make_dm(patch=patch)
    torch.manual_seed(0)
    net = build_net(model, dm.dims, **({"hidden_size": 8} if model == "lstm" else {}))
    net.eval()
    batch = dm.dataset("test")[np.arange(5)]
    target = ExplainTarget().resolve(TASK)
    layout = InputLayout.from_task(TASK)
    fields = tuple(batch[f] for f in ("past", "known_future", "static"))
    assert explain_captum._per_eval(fields) > 1  # the batched path is the one under test

    passes = []
    net.register_forward_hook(lambda module, args, out: passes.append(1))

    def run():
        passes.clear()
        out = attribute_batch(net, batch, "feature_ablation", target, layout, ablation=ablation)
        return out, len(passes)

    batched, batched_passes = run()
    monkeypatch.setattr(explain_captum, "_per_eval", lambda inputs: 1)
    alone, alone_passes = run()
    assert batched_passes < alone_passes  # the groups did share passes
    assert batched["cube"].shape == alone["cube"].shape
    np.testing.assert_allclose(batched["cube"], alone["cube"], rtol=1e-5, atol=1e-7)
    assert np.nanmax(np.abs(alone["cube"])) > 1e-4  # the nets' forecasts do depend on the inputs


def test_perturbed_copies_per_pass_are_bounded_by_copies_and_input_values():
    from geoclim.explain.captum import _per_eval

    def shaped(*shape):  # a view of one value: sizes without the memory
        return torch.zeros(()).expand(*shape)

    point = (shaped(64, 24, 7), shaped(64, 12, 3), shaped(64, 1))
    assert _per_eval(point) == 16  # 1024 samples a pass
    assert _per_eval(tuple(x[:4] for x in point)) == 64  # the copy cap
    grids = (shaped(16, 24, 7, 12, 12),)  # 0.39 M values per copy
    assert _per_eval(grids) == (1 << 22) // (16 * 24 * 7 * 144) == 10
    assert _per_eval((shaped(64, 24, 7, 256, 256),)) == 1  # never below one copy
    assert _per_eval((shaped(2048, 24, 7),)) == 1
