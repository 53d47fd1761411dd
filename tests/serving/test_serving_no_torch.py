import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import sys
    import geoclim.serving, geoclim.serving.app, geoclim.serving.adapter, geoclim.cli.serve
    import geoclim.export.registry, geoclim.export.metadata
    from fastapi.testclient import TestClient
    from geoclim.serving.adapter import Forecaster
    from geoclim.serving.app import ServedModel, create_app

    f = Forecaster.from_onnx(sys.argv[1])
    import xarray as xr
    out = f.predict(xr.open_dataset(sys.argv[2]).load(), max_missing=1.0)
    assert out.sizes["station"] == 5
    with TestClient(create_app([ServedModel("m", f, sys.argv[1])])) as client:
        assert client.post("/v1/forecast", json=f.example_request()).status_code == 200
    heavy = sorted(m for m in ("torch", "lightning", "hydra", "omegaconf", "sklearn",
                                "xgboost", "lightgbm") if m in sys.modules)
    print("HEAVY", heavy)
""")


def test_serving_never_imports_torch_lightning_or_hydra(station_export, tmp_path):
    history = station_export.datamodule.ds.isel(time=slice(20, 32))
    history.to_netcdf(tmp_path / "history.nc")
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(station_export.path), str(tmp_path / "history.nc")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout, out.stdout
