"""Hand-made EPA AirData daily CSV files for the ingest tests (one ozone site by default)."""

import os
from pathlib import Path

COLUMNS = [
    "Date",
    "Source",
    "Site ID",
    "POC",
    "Daily Max 8-hour Ozone Concentration",
    "Units",
    "Daily AQI Value",
    "Local Site Name",
    "Daily Obs Count",
    "Percent Complete",
    "AQS Parameter Code",
    "AQS Parameter Description",
    "Method Code",
    "CBSA Code",
    "CBSA Name",
    "State FIPS Code",
    "State",
    "County FIPS Code",
    "County",
    "Site Latitude",
    "Site Longitude",
]
GOOD = {
    "Date": "06/01/2024",
    "Source": "AQS",
    "Site ID": "060371103",
    "POC": "1",
    "Daily Max 8-hour Ozone Concentration": "0.041",
    "Units": "ppm",
    "Daily AQI Value": "38",
    "Local Site Name": "Los Angeles-N. Main Street",
    "Daily Obs Count": "17",
    "Percent Complete": "100.0",
    "AQS Parameter Code": "44201",
    "AQS Parameter Description": "Ozone",
    "Method Code": "087",
    "CBSA Code": "31080",
    "CBSA Name": "Los Angeles-Long Beach-Anaheim, CA",
    "State FIPS Code": "06",
    "State": "California",
    "County FIPS Code": "037",
    "County": "Los Angeles",
    "Site Latitude": "34.06659",
    "Site Longitude": "-118.22688",
}


def write_csv(path: Path, rows: list[dict], columns: list[str] = COLUMNS) -> Path:
    lines = [",".join(f'"{c}"' for c in columns)]
    lines += [",".join(f'"{row.get(c, GOOD.get(c, ""))}"' for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def days(n: int, start: int = 1) -> list[dict]:
    return [{"Date": f"06/{d:02d}/2024"} for d in range(start, start + n)]


def set_mtime(path: Path, seconds: int) -> Path:
    os.utime(path, ns=(seconds * 10**9, seconds * 10**9))
    return path
