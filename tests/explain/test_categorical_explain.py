# Categorical (CF flag) inputs in explanations: one-hot channels reported under their
# variable, per-category breakdown by flag meaning, valid (one-hot) baselines.

import numpy as np
import pytest
import torch

from geoclim.baselines.trees import LightGBMBaseline
from geoclim.errors import ConfigError
from geoclim.explain.baselines import make_baseline, train_modes
from geoclim.explain.layout import InputLayout, importance
from geoclim.explain.network import explain_network
from geoclim.explain.target import ExplainTarget, select_samples
from geoclim.explain.tree_shap import explain_trees
from tests.explain.flags import FLAG_TASK, flag_dm, train_flag_net

CATS = {"wd": {"N": 0, "E": 1, "S": 2, "W": 3}, "sky": {"clear": 1, "cloudy": 2}}
LAYOUT = InputLayout(("no2", "wd", "sky"), ("wd",), (), 2, 1, CATS)


@pytest.fixture(scope="module")
def trained(one_thread):
    dm = flag_dm()
    return dm, train_flag_net(dm, epochs=8)


def test_layout_sums_one_hot_channels_under_their_variable():
    # past channels: no2, wd=N, wd=E, wd=S, wd=W, sky=clear, sky=cloudy; known: wd=N..W
    past = np.arange(14, dtype=np.float32).reshape(1, 2, 7)
    known = 100 + np.arange(4, dtype=np.float32).reshape(1, 1, 4)
    cube = LAYOUT.to_cube(past, known, np.zeros((1, 0), np.float32))[0]  # (V, lag -1..1)
    assert LAYOUT.variables == ("no2", "wd", "sky")
    np.testing.assert_array_equal(cube[1], [406, 8 + 9 + 10 + 11, 1 + 2 + 3 + 4])
    np.testing.assert_array_equal(cube[2], [np.nan, 12 + 13, 5 + 6])
    mean = LAYOUT.to_cube(past, known, np.zeros((1, 0)), reduce="mean")[0]
    np.testing.assert_array_equal(mean[1], [101.5, 9.5, 2.5])
    cats = LAYOUT.to_category_cube(past, known, np.zeros((1, 0)))[0]  # (K, lag)
    assert LAYOUT.category_channels == ("wd=N", "wd=E", "wd=S", "wd=W", "sky=clear", "sky=cloudy")
    np.testing.assert_array_equal(cats[1], [101, 9, 2])  # wd=E
    np.testing.assert_array_equal(cats[5], [np.nan, 13, 6])  # sky=cloudy: past only
    coords = LAYOUT.category_coords()
    assert coords["category_meaning"][1] == ["N", "E", "S", "W", "clear", "cloudy"]
    np.testing.assert_array_equal(coords["category_value"][1], [0, 1, 2, 3, 1, 2])


def test_baselines_of_categorical_channels_are_valid_one_hots():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, (3, 2))
    past = np.zeros((3, 2, 7, 1, 1), np.float32)
    past[:, :, 0] = rng.normal(size=(3, 2, 1, 1))
    past[np.arange(3)[:, None], np.arange(2), 1 + codes] = 1.0
    past[:, :, 5] = 1.0  # sky=clear
    batch = {
        "past": torch.from_numpy(past),
        "known_future": torch.zeros(3, 1, 4, 1, 1),
        "static": torch.zeros(3, 0, 1, 1),
    }
    base = make_baseline(batch, "climatology", LAYOUT, category_baseline={"wd": "S"})
    np.testing.assert_array_equal(base["past"][:, :, 1:5, 0, 0], np.tile([0, 0, 1, 0], (3, 2, 1)))
    np.testing.assert_array_equal(base["past"][:, :, 5:7], 0.0)  # sky: the missing state
    np.testing.assert_array_equal(base["known_future"][:, :, 2], 1.0)
    blur = make_baseline(batch, "blur", LAYOUT, sigma=1.0)["past"][:, :, 1:5]
    np.testing.assert_array_equal(blur.sum(2), 1.0)  # the prevailing category, never a mix
    assert set(np.unique(blur.numpy())) <= {0.0, 1.0}
    with pytest.raises(ConfigError, match=r"category_baseline\['wd'\] = 'NE' is not a category"):
        make_baseline(batch, "climatology", LAYOUT, category_baseline={"wd": "NE"})
    with pytest.raises(ConfigError, match="'no2' is not a categorical input"):
        make_baseline(batch, "climatology", LAYOUT, category_baseline={"no2": "N"})


def test_train_modes_are_the_most_frequent_categories(trained):
    dm, _ = trained
    modes = train_modes(dm)
    ds = dm.ds
    for name in ("wd", "sky"):
        codes = ds[name].values[: int(0.6 * ds.sizes["time"])]
        values, counts = np.unique(codes[np.isfinite(codes)], return_counts=True)
        meanings = {v: m for m, v in dm.task.categories[name].items()}
        # a sub-sample of train windows: the mode, or a category within 5 % of its count
        close = values[counts >= 0.95 * counts.max()]
        assert modes[name] in [meanings[int(v)] for v in close]


@pytest.mark.parametrize("method", ["integrated_gradients", "feature_ablation", "gradient_shap"])
def test_network_attributions_group_one_hot_channels_and_rank_the_driver_first(trained, method):
    dm, net = trained
    ds = explain_network(net, dm, method=method, max_samples=48, progress=False, n_steps=16)
    assert list(ds["input_variable"].values) == ["no2", "wd", "sky", "noise", "site"]
    assert list(ds["category"].values) == [
        "wd=N", "wd=E", "wd=S", "wd=W", "sky=clear", "sky=cloudy", "site=urban", "site=rural"
    ]  # fmt: skip
    assert ds["category_attribution"].dims == ("sample", "lead_time", "category", "lag")
    assert ds.attrs["category_baseline"] == ", ".join(
        f"{k}={v}" for k, v in train_modes(dm).items()
    )
    # the breakdown adds up to the variable's attribution at every lag; ablation credits a
    # group's value to the category present, so a missing code (2 % of wd) is credited none
    for name in ("wd", "sky", "site"):
        parts = ds["category_attribution"].where(ds["category_variable"] == name, 0.0)
        parts = parts.sum("category").fillna(0.0)
        whole = ds["attribution"].sel(input_variable=name).fillna(0.0)
        same = abs(parts - whole) < 1e-5
        if method == "feature_ablation":
            assert float(same.mean()) > 0.95 and bool((same | (parts == 0)).all())
        else:
            assert bool(same.all())
    lead1 = importance(ds).isel(lead_time=0)
    ranked = [str(v) for v in lead1.sortby(lead1, ascending=False)["input_variable"].values]
    assert ranked[0] == "wd"  # wd at the init time sets no2 one step later
    assert float(lead1.sel(input_variable="wd")) > 10 * float(lead1.sel(input_variable="sky"))
    assert float(lead1.sel(input_variable="wd")) > 10 * float(lead1.sel(input_variable="noise"))
    wd0 = abs(ds["category_attribution"].isel(lead_time=0).sel(lag=0)).mean("sample")
    # E (+6 ppb) and W (-4 ppb) drive, N has no effect; S is the baseline (the train mode),
    # which integrated gradients debit when a sample leaves it (x - b = -1 on wd=S)
    assert train_modes(dm)["wd"] == "S"
    assert min(wd0.sel(category=["wd=E", "wd=W"])) > 3 * float(wd0.sel(category="wd=N"))


def test_integrated_gradients_stay_complete_after_grouping(trained):
    dm, net = trained
    ds = explain_network(net, dm, method="integrated_gradients", max_samples=32, progress=False)
    total = ds["attribution"].sum(["input_variable", "lag"])
    change = ds["prediction"] - ds["baseline_prediction"]
    # within 1 % of the mean output change (32 steps)
    assert float(abs(total - change).max()) < 0.01 * float(abs(change).mean())
    by_category = ds["category_attribution"].sum(["category", "lag"])
    continuous = (
        ds["attribution"].sel(input_variable=["no2", "noise"]).sum(["input_variable", "lag"])
    )
    np.testing.assert_allclose(by_category + continuous, total, rtol=1e-4, atol=1e-4)


def test_ablation_of_a_categorical_moves_all_its_channels_together(trained):
    dm, net = trained
    ds = explain_network(
        net, dm, method="feature_ablation", max_samples=16, progress=False,
        category_baseline={"wd": "N", "sky": "clear", "site": "urban"},
    )  # fmt: skip
    batch = dm.dataset("test")[select_samples(dm, "test", ExplainTarget(), 16, 0)]
    # by hand: wd at lag 0 (the last input step) set to N, every other input kept
    with torch.no_grad():
        full = net(batch)["prediction"][:, 0, 0, 0, 0]
        ablated = {k: v.clone() for k, v in batch.items()}
        ablated["past"][:, -1, 1:5] = torch.tensor([1.0, 0, 0, 0])[:, None, None]
        drop = full - net(ablated)["prediction"][:, 0, 0, 0, 0]
    rows = ds.sizes["sample"]
    assert rows == 16
    stats = dm.normalizer.stats["no2"]
    scale = 1.0 if stats.log else stats.std  # log-transformed targets: normalised units
    got = ds["attribution"].isel(lead_time=0).sel(input_variable="wd", lag=0).values
    np.testing.assert_allclose(got, drop.numpy() * scale, rtol=1e-4, atol=1e-5)
    assert ds.attrs["category_baseline"] == "wd=N, sky=clear, site=urban"


def test_tree_shap_of_one_hot_columns_sums_under_the_variable(trained):
    dm, _ = trained
    features = {"lags": [0, 1], "rolling": [], "calendar": []}
    model = LightGBMBaseline(
        params={"n_estimators": 30, "min_child_samples": 5, "n_jobs": 1}, features=features
    ).fit(dm)
    ds = explain_trees(model, dm, max_samples=40, progress=False).dataset
    names = list(ds["feature"].values)
    assert "wd=E_lag0" in names and "site=rural" in names
    lead1 = ds.isel(lead_time=0)
    wd0 = [n for n in names if n.startswith("wd=") and n.endswith("_lag0")]
    np.testing.assert_allclose(
        lead1["attribution"].sel(input_variable="wd", lag=0),
        lead1["shap_values"].sel(feature=wd0).sum("feature"),
        rtol=1e-5,
        atol=1e-6,
    )
    np.testing.assert_allclose(
        lead1["category_attribution"].sel(category="wd=E", lag=0),
        lead1["shap_values"].sel(feature="wd=E_lag0"),
        rtol=1e-6,
    )
    total = ds["offset"] + ds["expected_value"] + ds["attribution"].sum(["input_variable", "lag"])
    np.testing.assert_allclose(total, ds["prediction"], rtol=1e-4, atol=1e-4)
    imp = importance(ds).isel(lead_time=0)
    assert float(imp.sel(input_variable="wd")) > 5 * float(imp.sel(input_variable="sky"))
    assert float(imp.sel(input_variable="wd")) > 5 * float(imp.sel(input_variable="noise"))


def test_flag_task_is_the_documented_one():
    assert FLAG_TASK.past_inputs == ("wd", "sky", "noise")


def test_occlusion_tiles_cover_every_one_hot_channel_of_a_variable(one_thread):
    from geoclim.data.datamodule import GeoDataModule
    from geoclim.data.synthetic import make_dataset
    from geoclim.data.task import ForecastTask
    from tests.support.demo_export import build_net

    ds = make_dataset(["no2"], nlat=4, nlon=4, days=4, seed=0)
    codes = np.random.default_rng(0).integers(0, 2, ds["no2"].shape).astype(np.int8)
    flags = {"flag_values": np.array([0, 1], np.int8), "flag_meanings": "calm windy"}
    ds["gust"] = (ds["no2"].dims, codes, dict(flags, long_name="gust flag"))
    task = ForecastTask(targets=("no2",), past_inputs=("gust",), input_steps=3, horizon=1)
    dm = GeoDataModule(ds, task, window={"patch": None}, batch_size=8)
    dm.setup()
    torch.manual_seed(0)
    net = build_net("cnn", dm.dims, base_channels=4, depth=1)
    modes = {"gust": "calm"}
    occ = explain_network(
        net, dm, method="occlusion", block=2, max_samples=4, progress=False,
        category_baseline=modes,
    )  # fmt: skip
    assert occ["attribution"].dims == (
        "sample",
        "lead_time",
        "input_variable",
        "latitude",
        "longitude",
    )
    assert "category_attribution" not in occ
    batch = dm.dataset("test")[select_samples(dm, "test", ExplainTarget(), 4, 0)]
    with torch.no_grad():
        full = net(batch)["prediction"][:, 0, 0].mean((-2, -1))
        tile = {k: v.clone() for k, v in batch.items()}
        tile["past"][:, :, 1:3, 2:4, 0:2] = torch.tensor([1.0, 0.0])[:, None, None]  # calm
        drop = full - net(tile)["prediction"][:, 0, 0].mean((-2, -1))
    stats = dm.normalizer.stats["no2"]
    scale = 1.0 if stats.log else stats.std
    got = occ["attribution"].isel(lead_time=0).sel(input_variable="gust").values  # (S, H, W)
    for r, c in [(2, 0), (2, 1), (3, 0), (3, 1)]:  # every cell of the tile holds its value
        np.testing.assert_allclose(got[:, r, c], drop.numpy() * scale, rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="stride must equal block"):
        explain_network(
            net, dm, method="occlusion", block=2, stride=1, max_samples=2, progress=False
        )
