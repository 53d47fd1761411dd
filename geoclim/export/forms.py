"""Export forms: equivalent rewrites of a network that onnxruntime runs faster.

:func:`export_form` returns a copy of the network to trace in place of the trained one; the
trained network is never changed, and the parity check compares the exported graph with it.
Every rewrite computes the same function with the same weights (only exact zeros are added).

* **Convolution input channels padded to a multiple of** :data:`CHANNEL_BLOCK`. onnxruntime's
  CPU convolutions run in the blocked NCHWc layout (blocks of 8 channels with AVX2, 16 with
  AVX-512) only when the input channels are a multiple of the block; any other count falls
  back to im2col + GEMM. The U-Net's stem reads every input frame stacked as channels
  (``T_in * C_in + T_out * C_known + C_static``, 267 for the demo task), so its two stem
  convolutions took the slow path: appending zero channels (267 -> 272) took the CNN on a
  32 x 32 grid from 1.6x to 2.1x torch eager at batch 1 (``scripts/bench_serving.py``).
  Only convolutions of at least :data:`MIN_PADDED_CHANNELS` channels are padded, where the
  zeros add under a quarter of the work. The U-Net appends the zeros in the concatenation
  that stacks its input (``UNetNet.input_padding``) and its stem convolutions get zero
  weights for them; any other convolution pads its own input
  (:class:`ChannelPaddedConv2d`; one more copy of the input: ~10 % slower on the U-Net).

Rewrites of the exported ONNX graph itself (LSTM nodes cut into time segments) live in
:mod:`geoclim.export.graph_forms`.
"""

from __future__ import annotations

import copy
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoclim.models.components.cnn import UNetNet

CHANNEL_BLOCK = 16
"""Channel multiple that suits onnxruntime's NCHWc kernels on AVX2 (8) and AVX-512 (16)."""
MIN_PADDED_CHANNELS = 64
"""Smallest input channel count that is padded (fewer channels: the zeros would cost more)."""


class ChannelPaddedConv2d(nn.Module):
    """``conv`` with ``extra`` zero input channels appended to its input and its weight.

    Args:
        conv: a ``groups=1`` :class:`torch.nn.Conv2d` with zero (``padding_mode="zeros"``)
            spatial padding.
        extra: zero channels to append.

    """

    def __init__(self, conv: nn.Conv2d, extra: int):
        super().__init__()
        w = conv.weight.detach()  # (C_out, C_in, kh, kw)
        zeros = w.new_zeros(w.shape[0], extra, *w.shape[2:])
        self.weight = nn.Parameter(torch.cat([w, zeros], dim=1))  # (C_out, C_in + extra, ...)
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        self.extra = extra
        self.stride, self.padding, self.dilation = conv.stride, conv.padding, conv.dilation

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C_in, H, W) -> (B, C_out, H', W')``, as the wrapped convolution."""
        x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # (B, C_in + extra, H, W), zeros appended
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)


def widened(conv: nn.Conv2d, extra: int) -> nn.Conv2d:
    """``conv`` reading ``extra`` more input channels, with zero weights for them."""
    wide = nn.Conv2d(
        conv.in_channels + extra,
        conv.out_channels,
        cast(tuple[int, int], conv.kernel_size),
        cast(tuple[int, int], conv.stride),
        cast("str | tuple[int, int]", conv.padding),
        cast(tuple[int, int], conv.dilation),
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        wide.weight.zero_()
        wide.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None and wide.bias is not None:
            wide.bias.copy_(conv.bias)
    return wide.eval()


def _pad_unet_input(form: nn.Module) -> list[str]:
    """Zero channels in a U-Net's input concatenation, zero weights in its stem."""
    if not isinstance(form, UNetNet) or form.input_padding:
        return []
    stem = cast(nn.Module, form.stem)
    first, skip = cast(nn.Sequential, stem.body)[0], stem.skip
    if not isinstance(first, nn.Conv2d) or not isinstance(skip, nn.Conv2d):
        return []  # a stem without a skip convolution reads x once: pad there
    if not (extra := _paddable(first)):
        return []
    form.input_padding = extra
    cast(nn.Sequential, stem.body)[0] = widened(first, extra)
    stem.skip = widened(skip, extra)
    c = first.in_channels
    return [
        f"{name}: Conv2d input channels {c} -> {c + extra} (zeros, NCHWc)"
        for name in ("stem.body.0", "stem.skip")
    ]


def _paddable(conv: nn.Conv2d) -> int:
    """Zero channels to append to ``conv``'s input (0: leave it as it is)."""
    c = conv.in_channels
    if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        return 0
    if c < MIN_PADDED_CHANNELS:
        return 0
    return -c % CHANNEL_BLOCK


def export_form(net: nn.Module) -> tuple[nn.Module, tuple[str, ...]]:
    """A copy of ``net`` (eval mode) rewritten for onnxruntime, and what was rewritten.

    Args:
        net: the bare network.

    Returns:
        ``(copy, rewrites)``: the network to trace, and one line per rewritten module
        (empty when nothing applied; ``copy`` is then ``net`` itself).

    """
    if not any(isinstance(m, nn.Conv2d) and _paddable(m) for m in net.modules()):
        return net, ()  # nothing to rewrite: no copy
    form = copy.deepcopy(net).eval()
    rewrites = _pad_unet_input(form)
    targets = {
        name: extra
        for name, module in form.named_modules()
        if isinstance(module, nn.Conv2d) and (extra := _paddable(module))
    }
    if not targets and not rewrites:
        return net, ()
    for name, extra in targets.items():
        parent_name, _, child = name.rpartition(".")
        parent = form.get_submodule(parent_name)
        conv = getattr(parent, child)
        setattr(parent, child, ChannelPaddedConv2d(conv, extra))
        c = conv.in_channels
        rewrites.append(f"{name}: Conv2d input channels {c} -> {c + extra} (zeros, NCHWc)")
    return form, tuple(rewrites)
