"""The LSTM traced as one operator: the same ONNX ``LSTM`` node at a fraction of the cost.

``torch.onnx.export(..., dynamo=True)`` keeps ``aten.lstm`` as one node (torchlib writes it as
an ONNX ``LSTM``), but torch.export finds the node's output shapes by running the op's
Python decomposition, time step by time step, on fake tensors -- twice per LSTM (tracing,
then the exporter's decompositions). That cost 45 ms of CPU per step and LSTM: about 1 s of
the 3.2 s of tracing the smoke LSTM forecaster (12 + 6 steps), over 3 s for the demo's
48 + 24 steps, and it grows with the window.

:func:`traced_lstms` gives a copy of a network whose ``nn.LSTM`` modules call the custom op
``geoclim::lstm`` instead (:class:`TracedLSTM`: same parameters and names, same forward). The
op's shape function is a few lines (:func:`_lstm_shapes`), and :data:`TRANSLATIONS` hands
it to torchlib's own translation of ``aten.lstm``, so the graph holds the very ``LSTM`` node
(weights, gate order) the plain trace gives. Only the dynamo exporter sees the op; eager
calls run ``torch.lstm`` itself. Where torchlib's translation cannot be imported the table is
empty and :func:`traced_lstms` returns the network unchanged (the plain, slower trace).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn


@torch.library.custom_op("geoclim::lstm", mutates_args=())
def lstm(
    input: Tensor,
    hx: list[Tensor],
    params: list[Tensor],
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``aten.lstm.input`` (``torch.lstm``) as one opaque op: ``(output, h_n, c_n)``."""
    out, h_n, c_n = torch.lstm(
        input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
    )
    return out, h_n, c_n


@lstm.register_fake
def _lstm_shapes(
    input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first
):
    """``output (T, N, dirs * D)`` (``(N, T, ...)`` batch first), ``h_n`` / ``c_n`` as ``hx``."""
    width = (2 if bidirectional else 1) * hx[0].shape[2]
    if batch_first:  # torch.lstm computes time-major and returns the transposed view
        n, steps = input.shape[:2]
        output = input.new_empty((steps, n, width)).transpose(0, 1)
    else:
        output = input.new_empty((*input.shape[:2], width))
    return output, torch.empty_like(hx[0]), torch.empty_like(hx[1])


def _translations() -> dict[Any, Callable[..., Any]]:
    try:
        from onnxscript.function_libs.torch_lib.ops.core import aten_lstm
    except ImportError:  # another onnxscript layout: trace the plain LSTM
        return {}
    return {torch.ops.geoclim.lstm.default: aten_lstm}


TRANSLATIONS = _translations()
"""``custom_translation_table`` for ``torch.onnx.export``: ``geoclim::lstm`` as ``aten.lstm``."""


class TracedLSTM(nn.LSTM):
    """An ``nn.LSTM`` whose batched forward is the one op ``geoclim::lstm`` (export only).

    Same parameters and results as ``nn.LSTM``; packed sequences, unbatched inputs and
    projections (``proj_size``) take ``nn.LSTM``'s own forward.
    """

    def forward(self, input, hx=None):
        """``input (T, N, C)`` (``(N, T, C)`` batch first) -> ``output, (h_n, c_n)``."""
        if not isinstance(input, Tensor) or input.dim() != 3 or self.proj_size > 0:
            return super().forward(input, hx)
        self._update_flat_weights()
        if hx is None:  # zeros, as nn.LSTM makes them: (layers * dirs, N, D)
            n = input.size(0) if self.batch_first else input.size(1)
            rows = self.num_layers * (2 if self.bidirectional else 1)
            dtype, device = input.dtype, input.device
            hx = (
                torch.zeros(rows, n, self.hidden_size, dtype=dtype, device=device),
                torch.zeros(rows, n, self.hidden_size, dtype=dtype, device=device),
            )
        self.check_forward_args(input, hx, None)
        output, h_n, c_n = lstm(
            input,
            list(hx),
            list(self._flat_weights),
            self.bias,
            self.num_layers,
            float(self.dropout),
            self.training,
            self.bidirectional,
            self.batch_first,
        )
        return output, (h_n, c_n)


def traced_lstms(net: nn.Module) -> nn.Module:
    """A copy of ``net`` whose ``nn.LSTM`` modules are :class:`TracedLSTM` (else ``net``).

    The copy holds copies of the weights under the same names; ``net`` is not changed.
    """
    if not TRANSLATIONS or not any(type(m) is nn.LSTM for m in net.modules()):
        return net
    form = copy.deepcopy(net)
    for module in form.modules():
        if type(module) is nn.LSTM:
            module.__class__ = TracedLSTM  # same state, the op's forward
    return form
