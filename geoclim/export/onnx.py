"""Export a bare forecasting network (never the LightningModule) to a single .onnx file.

The graph's inputs are the :class:`~geoclim.types.Batch` keys the network actually reads
(found by running it once on a recording dict), in Batch order, so ``past``,
``known_future`` (the TFT also ``known_past``) and ``static`` for the nets in
:mod:`geoclim.models`; its first output is
``prediction`` ``(B, L, C_out[, Q], h, w)`` in normalised space (extra outputs such as the
TFT's attention are dropped: serving needs the forecast only). The batch axis is dynamic;
the spatial axes are made dynamic too when the example is spatial (``h`` or ``w`` > 1) and
the network accepts it (a CNN), which is verified by running onnxruntime at a second grid
size -- if that fails the export falls back to fixed ``h`` and ``w``.

The torch.export-based exporter (``dynamo=True``, the default since torch 2.9) is tried
first; the TorchScript exporter is the fallback. Weights are stored inside the .onnx file
(no external data), so one file is the whole bundle once :func:`write_metadata` has added
the metadata. The graph is traced from :func:`~geoclim.export.forms.export_form` of the network
(equivalent rewrites that onnxruntime runs faster, e.g. convolution channels padded for its
NCHWc kernels) with each ``nn.LSTM`` as one op (:mod:`geoclim.export.lstm_op`: tracing is
seconds faster), its LSTM nodes are cut into time segments
(:func:`~geoclim.export.graph_forms.segment_lstm_nodes`), and the result is checked against the
network itself.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import Tensor, nn

from geoclim import fileio
from geoclim.errors import GeoclimError
from geoclim.export.forms import export_form
from geoclim.export.graph_forms import segment_lstm_nodes
from geoclim.export.lstm_op import TRANSLATIONS, traced_lstms
from geoclim.export.metadata import ExportMetadata

log = logging.getLogger(__name__)

BATCH_KEYS = (
    "past",
    "known_future",
    "known_past",
    "static",
    "target",
    "target_mask",
    "time_idx",
    "lat_idx",
    "lon_idx",
)
SERVABLE_KEYS = ("past", "known_future", "known_past", "static", "lat_idx", "lon_idx")
"""Batch keys a serving request can provide (no targets, no training-time positions)."""
_SPATIAL_AXES = {"past": (3, 4), "known_future": (3, 4), "known_past": (3, 4), "static": (2, 3)}
DEFAULT_OPSET = 18


class ExportError(GeoclimError, RuntimeError):
    """The network cannot be exported as asked."""


class _RecordingBatch(dict):
    """A dict that remembers which keys were read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.read: list[str] = []

    def __getitem__(self, key):
        if key not in self.read:
            self.read.append(key)
        return super().__getitem__(key)

    def get(self, key, default=None):
        """Record, then ``dict.get``."""
        if key in self and key not in self.read:
            self.read.append(key)
        return super().get(key, default)


def batch_keys_read(net: nn.Module, batch: dict[str, Tensor]) -> tuple[str, ...]:
    """The Batch keys ``net`` reads in eval mode, in Batch order.

    Raises:
        ExportError: if the network reads a key a serving request cannot provide.

    """
    recording = _RecordingBatch(batch)
    with torch.no_grad():
        net(recording)
    read = [k for k in BATCH_KEYS if k in recording.read]
    bad = [k for k in read if k not in SERVABLE_KEYS]
    if bad:
        raise ExportError(
            f"the network reads {bad} in eval mode; an exported model may only read "
            f"{list(SERVABLE_KEYS)} (targets and time_idx do not exist when serving)"
        )
    if not read:
        raise ExportError(f"the network read none of the Batch keys {list(BATCH_KEYS)}")
    return tuple(read)


class GraphModule(nn.Module):
    """Positional-argument wrapper: ``forward(*inputs) -> prediction`` for the exporter.

    Args:
        net: the bare network, ``forward(batch: dict) -> {"prediction": ...}``.
        names: the Batch keys, in the order of the positional inputs.

    """

    def __init__(self, net: nn.Module, names: tuple[str, ...]):
        super().__init__()
        self.net, self.names = net, names

    def forward(self, *inputs: Tensor) -> Tensor:
        """Rebuild the batch dict and return its ``"prediction"``."""
        return self.net(dict(zip(self.names, inputs, strict=True)))["prediction"]


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_net` produced.

    Attributes:
        path: the .onnx file.
        inputs: graph input names.
        dynamic_spatial: whether ``h`` and ``w`` are dynamic.
        exporter: ``"dynamo"`` or ``"torchscript"``.
        opset: ONNX opset.
        rewrites: the export-form rewrites traced instead of the original modules
            (:func:`~geoclim.export.forms.export_form`).

    """

    path: Path
    inputs: tuple[str, ...]
    dynamic_spatial: bool
    exporter: str
    opset: int
    rewrites: tuple[str, ...] = ()


def _example(batch: dict[str, Tensor], names: tuple[str, ...]) -> tuple[Tensor, ...]:
    """Inputs of at least two samples (a batch of one would specialise the batch axis)."""
    args = [batch[k] for k in names]
    if args[0].shape[0] < 2:
        args = [torch.cat([a, a]) for a in args]
    return tuple(a.contiguous() for a in args)


def _export_once(
    module: GraphModule,
    args: tuple[Tensor, ...],
    path: Path,
    *,
    exporter: str,
    spatial: bool,
    opset: int,
) -> None:
    names = module.names
    if exporter == "dynamo":
        # each nn.LSTM traced as one op (geoclim.export.lstm_op): the same graph, no per-step
        # decomposition on fake tensors
        module = GraphModule(traced_lstms(module.net), names).eval()
        # Dim.DYNAMIC lets torch.export derive the relations (a CNN's padding to a multiple
        # of 2**depth makes h and w appear in guards that named Dims cannot express).
        batch = height = width = torch.export.Dim.DYNAMIC
        shapes = []
        for name in names:
            axes = {0: batch}
            if spatial and name in _SPATIAL_AXES:
                h_ax, w_ax = _SPATIAL_AXES[name]
                axes |= {h_ax: height, w_ax: width}
            shapes.append(axes)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                args,
                str(path),
                input_names=list(names),
                output_names=["prediction"],
                dynamo=True,
                external_data=False,
                dynamic_shapes={"inputs": tuple(shapes)},
                custom_translation_table=TRANSLATIONS,
                opset_version=opset,
                verbose=False,
            )
        return
    axes_names = {}
    for name in names:
        axes = {0: "batch"}
        if spatial and name in _SPATIAL_AXES:
            h_ax, w_ax = _SPATIAL_AXES[name]
            axes |= {h_ax: "height", w_ax: "width"}
        axes_names[name] = axes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=list(names),
            output_names=["prediction"],
            dynamo=False,
            dynamic_axes=axes_names,
            opset_version=min(opset, 17),
        )


@contextlib.contextmanager
def _quiet():
    """Silence the exporter's INFO chatter (graph rewrites) and optional-op warnings."""
    loggers = [logging.getLogger(n) for n in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _check_shapes(
    module: GraphModule, path: Path, args: tuple[Tensor, ...], spatial: bool, atol: float = 1e-3
) -> str | None:
    """Run onnxruntime at another batch size (and grid size); return a problem or None.

    ``module`` wraps the original network (not its export form): the graph is compared
    with what was trained.
    """
    import onnxruntime as ort

    variants = [tuple(torch.cat([a, a[:1]]) for a in args)]  # batch + 1
    if spatial:
        crop = []
        for name, a in zip(module.names, args, strict=True):
            if name in _SPATIAL_AXES:
                h_ax, w_ax = _SPATIAL_AXES[name]
                h, w = a.shape[h_ax], a.shape[w_ax]
                a = a.narrow(h_ax, 0, max(h - 1, 1)).narrow(w_ax, 0, max(w - 1, 1))
            crop.append(a.contiguous())
        variants.append(tuple(crop))
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for variant in variants:
            feed = {n: v.numpy() for n, v in zip(module.names, variant, strict=True)}
            got = session.run(None, feed)[0]
            with torch.no_grad():
                want = module(*variant).numpy()
            if got.shape != want.shape or not np.allclose(got, want, atol=atol, rtol=1e-2):
                return f"output differs at input shapes {[tuple(v.shape) for v in variant]}"
    except Exception as err:  # onnxruntime raises its own exception types
        return f"{type(err).__name__}: {err}"
    return None


def export_net(
    net: nn.Module,
    batch: dict[str, Tensor],
    path: str | os.PathLike,
    *,
    dynamic_spatial: bool | None = None,
    exporter: str = "auto",
    opset: int = DEFAULT_OPSET,
    graph_forms: bool = True,
) -> ExportResult:
    """Export ``net`` to ``path`` (no metadata yet; see :func:`write_metadata`).

    Args:
        net: the bare network (``ForecastModule.net``), put in eval mode here.
        batch: one real batch (``past (B, T_in, C_in, h, w)``, ...), used to trace.
        path: destination .onnx file.
        dynamic_spatial: make ``h``/``w`` dynamic; ``None``: try when the batch is spatial.
        exporter: ``"dynamo"``, ``"torchscript"`` or ``"auto"`` (dynamo, then torchscript).
        opset: ONNX opset (the TorchScript exporter caps it at 17).
        graph_forms: apply :func:`~geoclim.export.graph_forms.segment_lstm_nodes` to the
            exported graph (off: the graph as traced, for benchmarks of the rewrite).

    Returns:
        What was exported.

    Raises:
        ExportError: if no exporter produces a graph that onnxruntime runs at a second batch
            size with the torch results.

    """
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ExportError(f"unknown exporter {exporter!r}; valid are auto, dynamo, torchscript")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    names = batch_keys_read(net, batch)
    module = GraphModule(net, names).eval()
    form, rewrites = export_form(net)
    traced = GraphModule(form, names).eval()
    args = _example(batch, names)
    h, w = args[0].shape[-2:]
    spatial_example = h > 1 or w > 1
    tries = (
        [dynamic_spatial]
        if dynamic_spatial is not None
        else ([True, False] if spatial_example else [False])
    )
    exporters = ["dynamo", "torchscript"] if exporter == "auto" else [exporter]
    problems = []
    for spatial in tries:  # a dynamic grid matters more than which exporter made it
        for kind in exporters:
            try:
                _export_once(traced, args, path, exporter=kind, spatial=spatial, opset=opset)
            except Exception as err:  # exporters raise many exception types
                problems.append(f"{kind} (dynamic h/w={spatial}): {type(err).__name__}: {err}")
                continue
            plain = path.read_bytes()
            graph_rewrites = _rewrite_graph(path) if graph_forms else ()
            problem = _check_shapes(module, path, args, spatial)
            if problem is not None and graph_rewrites:  # the forms broke it: keep the plain one
                log.warning("graph forms undone for %s: %s", path.name, problem)
                fileio.write_bytes(path, plain)
                graph_rewrites = ()
                problem = _check_shapes(module, path, args, spatial)
            if problem is None:
                _finalise(path)
                model = onnx.load(str(path))
                opset_used = max(
                    o.version for o in model.opset_import if o.domain in ("", "ai.onnx")
                )
                log.info("exported %s with %s (dynamic h/w: %s)", path, kind, spatial)
                return ExportResult(
                    path, names, spatial, kind, opset_used, rewrites + graph_rewrites
                )
            problems.append(f"{kind} (dynamic h/w={spatial}): {problem}")
    raise ExportError("no exporter produced a usable graph:\n  " + "\n  ".join(problems))


def _rewrite_graph(path: Path) -> tuple[str, ...]:
    """Apply the graph-level export forms to the exported file; what changed.

    The forms only make onnxruntime faster: when one fails on a graph, the plain graph is
    kept (and the failure logged); :func:`export_net` also puts the plain graph back when the
    rewritten one fails its shape check. The file is replaced atomically, never half-written.
    """
    model = onnx.load(str(path))
    try:
        rewrites = segment_lstm_nodes(model)
        rewritten = model.SerializeToString() if rewrites else b""
    except Exception as err:  # noqa: BLE001 -- onnx/numpy raise many types; the plain graph stays
        log.warning("graph forms skipped for %s: %s: %s", path.name, type(err).__name__, err)
        return ()
    if rewrites:
        fileio.write_bytes(path, rewritten)
    return tuple(rewrites)


def _finalise(path: Path) -> None:
    """Inline external weights (one self-contained file); name the dynamic axes."""
    data = path.with_name(path.name + ".data")
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        dims = value.type.tensor_type.shape.dim
        labels = {0: "batch", len(dims) - 2: "height", len(dims) - 1: "width"}
        for axis, dim in enumerate(dims):
            if dim.HasField("dim_param") and axis in labels:
                dim.dim_param = labels[axis]
    onnx.save(model, str(path), save_as_external_data=False)
    if data.exists():
        data.unlink()


def write_metadata(
    path: str | os.PathLike, metadata: ExportMetadata, out: str | os.PathLike | None = None
) -> Path:
    """Embed ``metadata`` in the model's ``metadata_props`` (replacing geoclim keys).

    Args:
        path: the .onnx file.
        metadata: what to embed.
        out: where to write (default: in place).

    Returns:
        The written path.

    """
    model = onnx.load(str(path))
    props = metadata.to_props()
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "geoclim"
    model.doc_string = (
        f"geoclim forecast of {list(metadata.task.targets)}; inputs "
        f"{list(metadata.io.inputs)}; see metadata_props geoclim.*"
    )
    out = Path(out or path)
    onnx.save(model, str(out))
    return out


def read_metadata(path: str | os.PathLike) -> ExportMetadata:
    """The :class:`ExportMetadata` embedded in an exported .onnx file."""
    model = onnx.load(str(path), load_external_data=False)
    return ExportMetadata.from_props({p.key: p.value for p in model.metadata_props})
