"""Example request bodies built from an export's embedded metadata.

:func:`example_request` is what the OpenAPI document shows for ``POST /v1/forecast``, what
``geoclim demo`` sends, and what a user can start from: the model's own variables with their
training means, at its training locations.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from geoclim.export.metadata import ExportMetadata


def example_request(meta: ExportMetadata, n_locations: int = 1) -> dict:
    """A valid ``POST /v1/forecast`` body: train-mean values at training locations.

    Args:
        meta: the export's metadata.
        n_locations: locations in the body (training stations / cells, cycled).

    Returns:
        The JSON body as a dict: ``init_time`` and one entry per location with its
        ``past`` (and ``future``, when the model reads known future inputs) values.
    """
    task = meta.task
    d = meta.domain
    if d.layout == "station":
        points = [
            (
                d.station[i % len(d.station)],
                float(d.latitude[i % d.latitude.size]),
                float(d.longitude[i % d.longitude.size]),
            )
            for i in range(n_locations)
        ]
    else:
        points = [
            (
                f"cell-{i}",
                float(d.latitude[i % d.latitude.size]),
                float(d.longitude[(i // d.latitude.size) % d.longitude.size]),
            )
            for i in range(n_locations)
        ]

    def mean(name: str, n: int) -> list[float]:
        if name in task.categories:  # a flag code, not a quantity: the first category
            return [float(next(iter(task.categories[name].values())))] * n
        value = float(meta.normalizer.decode(np.zeros(1), name)[0])
        return [round(value, 3)] * n

    init = (
        pd.Timestamp("2024-06-01T12:00:00")
        if meta.step.is_sub_daily
        else pd.Timestamp("2024-06-01")
    )
    locations = []
    for station, lat, lon in points:
        loc: dict = {
            "station": station,
            "latitude": lat,
            "longitude": lon,
            "past": {v: mean(v, task.input_steps) for v in task.past_variables},
        }
        if task.future_variables:
            loc["future"] = {v: mean(v, task.horizon) for v in task.future_variables}
        locations.append(loc)
    return {"init_time": init.isoformat() + "Z", "locations": locations}
