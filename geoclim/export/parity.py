"""torch vs onnxruntime parity of an exported network, on real batches.

Every export is checked on held-out (test) batches of the run's own datamodule. An element
passes when ``|ort - torch| <= atol + rtol * |torch|`` (``numpy.isclose``); the report gives the
largest absolute error and the largest relative error ``|ort - torch| / |torch|`` over
elements with ``|torch| > atol`` (near-zero values make relative errors meaningless). Errors
are measured in normalised space, where every variable has unit spread, so one tolerance
fits every target. :func:`check_parity` raises :class:`ParityError` when any element fails.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import Tensor, nn

from geoclim.errors import GeoclimError

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


class ParityError(GeoclimError, RuntimeError):
    """onnxruntime and torch disagree beyond the stated tolerance."""


@dataclass(frozen=True)
class ParityReport:
    """Outcome of a parity check.

    Attributes:
        n_batches: batches compared.
        n_samples: samples compared.
        batch_sizes: sizes of the compared batches.
        max_abs: largest ``|ort - torch|``.
        max_rel: largest ``|ort - torch| / |torch|`` where ``|torch| > atol``.
        atol, rtol: the tolerance.
        passed: every element within ``atol + rtol * |torch|``.
        worst: ``{"batch", "index", "torch", "ort"}`` of the worst element (by tolerance ratio).

    """

    n_batches: int
    n_samples: int
    batch_sizes: tuple[int, ...]
    max_abs: float
    max_rel: float
    atol: float
    rtol: float
    passed: bool
    worst: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        d = asdict(self)
        d["batch_sizes"] = list(self.batch_sizes)
        return d

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"parity {verdict} on {self.n_samples} samples ({self.n_batches} batches): "
            f"max abs error {self.max_abs:.3g}, max rel error {self.max_rel:.3g} "
            f"(tolerance atol={self.atol:g}, rtol={self.rtol:g})"
        )


def check_parity(
    net: nn.Module,
    onnx_path: str | os.PathLike | ort.InferenceSession,
    batches: Iterable[dict[str, Tensor]],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    max_batches: int | None = 4,
    raise_on_failure: bool = True,
) -> ParityReport:
    """Compare ``net`` (torch, eval mode) with its export on ``batches``.

    Args:
        net: the bare network.
        onnx_path: the exported file, or an open session.
        batches: Batch dicts of tensors (e.g. ``datamodule.test_dataloader()``).
        atol: absolute tolerance (normalised units).
        rtol: relative tolerance.
        max_batches: compare at most this many batches (``None``: all).
        raise_on_failure: raise :class:`ParityError` when an element fails.

    Returns:
        The report.

    """
    session = (
        onnx_path
        if isinstance(onnx_path, ort.InferenceSession)
        else ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    )
    names = [i.name for i in session.get_inputs()]
    net = net.eval()
    max_abs = max_rel = worst_ratio = 0.0
    worst: dict[str, Any] = {}
    sizes: list[int] = []
    passed = True
    for i, batch in enumerate(batches):
        if max_batches is not None and i >= max_batches:
            break
        with torch.no_grad():
            want = net(batch)["prediction"].numpy().astype(np.float64)
        got = session.run(None, {k: batch[k].numpy() for k in names})[0].astype(np.float64)
        if got.shape != want.shape:
            raise ParityError(f"onnxruntime output has shape {got.shape}, torch {want.shape}")
        sizes.append(int(want.shape[0]))
        err = np.abs(got - want)
        if not np.isfinite(got).all() or not np.isfinite(want).all():
            passed = False
        max_abs = max(max_abs, float(np.nanmax(err)) if err.size else 0.0)
        big = np.abs(want) > atol
        if big.any():
            max_rel = max(max_rel, float(np.nanmax(err[big] / np.abs(want[big]))))
        ratio = err / (atol + rtol * np.abs(want))
        if ratio.size and float(np.nanmax(ratio)) > worst_ratio:
            j = np.unravel_index(int(np.nanargmax(ratio)), ratio.shape)
            worst_ratio = float(ratio[j])
            worst = {
                "batch": i,
                "index": [int(x) for x in j],
                "torch": float(want[j]),
                "ort": float(got[j]),
            }
        passed &= bool(np.all(ratio <= 1.0))
    if not sizes:
        raise ParityError("parity check got no batches to compare (empty test split?)")
    report = ParityReport(
        len(sizes), sum(sizes), tuple(sizes), max_abs, max_rel, atol, rtol, passed, worst
    )
    if raise_on_failure and not passed:
        raise ParityError(
            f"{report}; worst element {worst}. The export is not faithful: do not "
            "serve it (check for ops that differ between torch and onnxruntime, "
            "or relax --atol/--rtol knowingly)"
        )
    return report
