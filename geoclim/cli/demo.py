"""``make demo``: the main job on the embedded real data, end to end.

1. data: load the NAPS hourly NO2 network (196 Canadian stations, 2023), validate it, fill
   short gaps (linear in time, at most 3 h, fitted on the train block only), grid it onto
   0.5 degree cells over the Windsor-Quebec corridor with a coverage mask, and summarise.
"""

from __future__ import annotations

import argparse
import logging
import sys

from geoclim.cli.errors import friendly_errors

log = logging.getLogger("geoclim.demo")


def banner(text: str) -> None:
    """Print a section title."""
    print(f"\n== {text} " + "=" * max(0, 76 - len(text)), flush=True)


def data_stage() -> None:
    """Load, validate, impute and grid the embedded NO2 network; print summaries."""
    from geoclim.data import grid, samples, schema
    from geoclim.data.impute import Imputer
    from geoclim.data.impute import report as impute_report
    from geoclim.data.summary import format_summary

    banner("1. Embedded real data: validate, impute, grid")
    stations = schema.validate(samples.load("naps_no2"), ["no2"], source="naps_no2")
    print(format_summary("naps_no2 (as measured)", stations))

    train_end = stations.time.values[int(stations.sizes["time"] * 0.7)]
    imputer = Imputer(method="interpolate", max_gap=3, variables=["no2"])
    filled = imputer.fit(stations, period=slice(None, train_end)).transform(stations)
    rep = impute_report(filled, ["no2"])
    print(
        "imputation (linear in time, gaps <= 3 h): "
        f"{float(rep.missing_before.sel(variable='no2')):.2f} % missing -> "
        f"{float(rep.imputed.sel(variable='no2')):.2f} % imputed, "
        f"{float(rep.missing_after.sel(variable='no2')):.2f} % still missing"
    )

    lat, lon = grid.regular_grid(**samples.NAPS_GRID_BOX)
    gridded = grid.stations_to_grid(filled, lat, lon, **samples.NAPS_GRID_OPTIONS)
    schema.validate(gridded, ["no2", "coverage"], source="gridded NO2")
    print(format_summary("NO2 network on a 0.5 deg grid (IDW, 75 km)", gridded))

    london = samples.load("london")
    print(format_summary("london (Marylebone Road)", london))


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    """Run the demo stages."""
    parser = argparse.ArgumentParser(prog="geoclim demo", description=__doc__.split("\n\n")[0])
    parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    data_stage()
    return 0


if __name__ == "__main__":
    sys.exit(main())
