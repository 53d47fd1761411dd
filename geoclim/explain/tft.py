"""The TFT's own interpretation: variable-selection weights and attention over past steps.

The network returns them with every forecast
(:class:`~geoclim.models.components.tft.net.TemporalFusionTransformer`), so no hooks are
needed: :func:`explain_tft` runs it over (a sub-sample of) a split and averages, over
samples and cells, as in Lim et al. (2021, section 7):

* ``selection_weight (input_variable, lag)`` -- encoder weights at the input steps
  (``lag >= 0``: the past inputs and the known inputs the encoder also reads, a variable
  that is both summed), decoder weights at the valid times of the leads (``lag = -k``),
  static weights at ``lag = 0``; the cube of :mod:`geoclim.explain.layout`. Weights at one
  step sum to 1 over the variables of that field.
* ``decoder_weight (lead_time, input_variable)`` -- the known-future selection per lead.
* ``attention (lead_time, lag)`` -- attention of each lead's decoder query over every
  position (mean over heads; causal: lead ``k`` sees the inputs and leads ``<= k``);
  ``attention_by_head (lead_time, head, lag)`` keeps the heads.

Per-place averages: pass ``target={"stations": [...]}`` or a ``region``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from geoclim.errors import ConfigError
from geoclim.explain.layout import INPUT_VARIABLE, LAG, LAG_ATTRS, InputLayout
from geoclim.explain.target import ExplainTarget, select_samples
from geoclim.types import LEAD_TIME, TIME

KEYS = (
    "encoder_weights",
    "encoder_known_weights",
    "decoder_weights",
    "static_weights",
    "attention",
)


def explain_tft(
    net: torch.nn.Module,
    dm: Any,
    *,
    split: str = "test",
    target: ExplainTarget | dict | None = None,
    max_samples: int | None = 2048,
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> xr.Dataset:
    """Average the TFT's selection weights and attention over a split.

    Args:
        net: a :class:`~geoclim.models.components.tft.net.TemporalFusionTransformer`.
        dm: the set-up datamodule it was trained on.
        split: ``train``, ``val`` or ``test``.
        target: only its places (``stations``, ``region``) matter: which samples count.
        max_samples: at most this many samples (seeded draw); ``None``: all.
        batch_size: samples per forward pass.
        seed: sub-sampling seed.
        progress: show a progress bar.

    Returns:
        The Dataset described in the module docstring.

    """
    dm.setup()
    net.eval()
    spec = ExplainTarget.from_config(target)
    rows = select_samples(dm, split, spec, max_samples, seed)
    dataset = dm.dataset(split)
    device = next(net.parameters()).device
    sums = {k: 0.0 for k in KEYS}
    with torch.no_grad():
        for s in tqdm(range(0, rows.size, batch_size), desc="tft", disable=not progress):
            batch = {k: v.to(device) for k, v in dataset[rows[s : s + batch_size]].items()}
            out = net(batch)
            missing = [k for k in KEYS if k not in out]
            if missing:
                raise ConfigError(
                    f"the network returns no {missing}: explain_tft needs the geoclim TFT "
                    "(model=tft); use geoclim.explain.captum for other networks"
                )
            for k in KEYS:  # sum over samples and cells
                v = out[k].double()
                sums[k] = sums[k] + v.sum(0).sum((-2, -1)).cpu().numpy()
    h, w = dm.spec.patch_shape(dm.arrays.grid_shape)
    n = rows.size * h * w
    means = {k: np.asarray(v) / n for k, v in sums.items()}
    return _dataset(dm, means, rows.size)


def attention_lags(input_steps: int, horizon: int) -> np.ndarray:
    """Lag of each attention position: inputs ``T_in - 1 .. 0``, then leads ``-1 .. -T_out``."""
    return np.concatenate([np.arange(input_steps - 1, -1, -1), -np.arange(1, horizon + 1)])


def _dataset(dm: Any, means: dict[str, np.ndarray], n_samples: int) -> xr.Dataset:
    task = dm.task
    layout = InputLayout.from_task(task)
    times = dm.ds[TIME].values
    lead_time = (np.arange(1, task.horizon + 1) * (times[1] - times[0])).astype("timedelta64[ns]")
    enc = means["encoder_weights"][None]  # (1, T_in, C_in)
    dec = means["decoder_weights"][None]  # (1, T_out, C_known)
    cube = layout.to_cube(enc, dec, means["static_weights"][None])[0]  # (V, lag)
    enc_known = means["encoder_known_weights"]  # (T_in, C_known or 0): the encoder's too
    lag0, t_in = task.horizon, task.input_steps
    known_channels = layout.field_channels("known_future")[: enc_known.shape[-1]]
    for c, (_, name) in enumerate(known_channels):  # one-hot channels summed per variable
        row = cube[layout.variables.index(name), lag0 : lag0 + t_in]  # lags T_in - 1 .. 0
        row[:] = np.nan_to_num(row) + np.flip(enc_known[:, c])
    att = means["attention"]  # (T_out, heads, T_in + T_out)
    order = np.argsort(attention_lags(task.input_steps, task.horizon))  # ascending lags
    att = att[..., order]
    lags = layout.lags
    decoder = np.full((task.horizon, len(layout.variables)), np.nan, np.float32)
    decoder[:] = np.nan
    for c, (_, name) in enumerate(layout.field_channels("known_future")):  # one-hot summed
        v = layout.variables.index(name)
        decoder[:, v] = np.nan_to_num(decoder[:, v]) + means["decoder_weights"][:, c]
    return xr.Dataset(
        {
            "selection_weight": ((INPUT_VARIABLE, LAG), cube.astype(np.float32)),
            "decoder_weight": ((LEAD_TIME, INPUT_VARIABLE), decoder),
            "attention": ((LEAD_TIME, LAG), att.mean(1).astype(np.float32)),
            "attention_by_head": ((LEAD_TIME, "head", LAG), att.astype(np.float32)),
        },
        coords={
            INPUT_VARIABLE: list(layout.variables),
            "input_kind": (INPUT_VARIABLE, layout.kinds()),
            LAG: (LAG, lags, LAG_ATTRS),
            LEAD_TIME: lead_time,
            "head": np.arange(att.shape[1]),
        },
        attrs={"method": "tft_interpretation", "n_samples": int(n_samples)},
    )
