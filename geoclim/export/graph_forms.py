"""Graph forms: equivalent rewrites of an exported ONNX graph that onnxruntime runs faster.

:func:`segment_lstm_nodes` is applied by :func:`~geoclim.export.onnx.export_net` to every
export before its shape and parity checks, which compare the rewritten graph with the torch
network; ``export.json`` lists each rewrite under ``graph_rewrites``. (Rewrites of the torch
network before tracing live in :mod:`geoclim.export.forms`.)

* **LSTM nodes run in time segments.** onnxruntime's CPU ``LSTM`` first computes the input
  projection of every step into one ``(T, N, 4 D)`` buffer, then reads it back step by step.
  For 24 steps of 128 samples at ``D = 32`` that buffer is 1.5 MB, past the 1 MB L2 cache of
  the benchmark machine, and the step loop waits on memory. The node becomes a ``Split`` of
  its input in time, one ``LSTM`` per segment of :func:`segment_steps` steps (the buffer of
  one stays under :data:`LSTM_SEGMENT_BYTES`), each started from the ``(h, c)`` the previous
  one ended in, and a ``Concat`` of the outputs: the same recurrence, step by step.
* **Per-step constant input channels folded into the weights.** When part of an LSTM's input
  is a constant broadcast over the batch (``Expand`` of a ``(T, 1, L)`` initializer, e.g.
  the LSTM forecaster's lead embedding concatenated to the decoder's known inputs), its
  product with the input weights is a constant per step. That part is replaced by a one-hot
  of the step within its segment (``S < L`` channels), and each segment gets its own input
  weights whose one-hot columns hold those products (computed in float64): the same gate
  pre-activations with a narrower input, ``5 + 8`` instead of ``5 + 32`` channels for the
  demo task's decoder. Only the rounding of the folded products differs.

For the demo LSTM forecaster (hidden 32, 24 + 24 steps) the two rewrites together took
onnxruntime from 0.94-1.02x to 1.07-1.16x torch eager at 256 samples (CPU time, paired);
at batch 1 the extra operator calls cost about 25 us (0.097 -> 0.12 ms, still 3.5x+
torch). Measured in ``experiments/bench_serving/README.md`` (``--plain`` pairs a graph
without these forms).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

LSTM_SEGMENT_BYTES = 512 * 1024
"""Largest input projection (steps x rows x 4 D float32) of one LSTM segment: half of a
1 MB L2 cache, which leaves room for the weights, gates and states of the step loop."""
LSTM_SEGMENT_ROWS = 128
"""Rows (samples) per onnxruntime call the segments are sized for: the service runs bulk
batches in chunks of 128 (``geoclim.serving.session.RUN_CHUNK``)."""
MIN_SEGMENT_STEPS = 2
"""Shortest segment: every segment is one more operator call."""


def segment_steps(hidden_size: int) -> int:
    """Steps per LSTM segment for ``hidden_size`` units.

    The input projection of :data:`LSTM_SEGMENT_ROWS` rows over that many steps stays under
    :data:`LSTM_SEGMENT_BYTES`: 8 steps at ``D = 32``, 4 at 64, 2 from 128 on.
    """
    per_step = LSTM_SEGMENT_ROWS * 4 * hidden_size * 4  # bytes: rows x 4 gates x D float32
    return max(MIN_SEGMENT_STEPS, LSTM_SEGMENT_BYTES // per_step)


@dataclass
class _Graph:
    """Look-ups over one graph: producers, consumer counts, initializers, inferred shapes."""

    model: onnx.ModelProto

    def __post_init__(self):
        graph = self.model.graph
        self.producers = {o: n for n in graph.node for o in n.output if o}
        self.consumers: dict[str, int] = {}
        for n in graph.node:
            for i in n.input:
                self.consumers[i] = self.consumers.get(i, 0) + 1
        for o in graph.output:
            self.consumers[o.name] = self.consumers.get(o.name, 0) + 1
        self.inits = {t.name: t for t in graph.initializer}
        inferred = onnx.shape_inference.infer_shapes(self.model).graph
        self.shapes = {
            v.name: [d.dim_value if d.HasField("dim_value") else 0 for d in dims]
            for v in (*inferred.value_info, *inferred.input, *inferred.output)
            if (dims := v.type.tensor_type.shape.dim) is not None
        }

    def array(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None


def _attr(node: onnx.NodeProto, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


def _module_name(node: onnx.NodeProto) -> str:
    """The torch module a node was traced from (dynamo name scopes), else the node name."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = ast.literal_eval(prop.value)  # ['', 'net', 'net.encoder', 'lstm']
            if len(scopes) >= 2 and scopes[-2]:
                return scopes[-2].removeprefix("net.")  # GraphModule holds the network as net
    return node.name or node.op_type


def _static_steps(node: onnx.NodeProto, g: _Graph) -> int:
    """Time steps of a forward, time-major LSTM node with a static sequence length (else 0)."""
    inputs = [*node.input, *[""] * 8]
    if node.op_type != "LSTM" or node.domain not in ("", "ai.onnx"):
        return 0
    if _attr(node, "direction", b"forward") != b"forward" or _attr(node, "layout", 0) != 0:
        return 0
    if inputs[4]:  # sequence_lens: samples end at different steps
        return 0
    dims = g.shapes.get(node.input[0], [])
    return dims[0] if len(dims) == 3 else 0


@dataclass
class _StepConstant:
    """A ``(T, 1, L)`` constant broadcast over the batch, at ``offset`` in an LSTM's input."""

    expand: onnx.NodeProto
    concat: onnx.NodeProto
    offset: int
    values: np.ndarray  # (T, 1, L)


def _broadcasts_last_axis(expand: onnx.NodeProto, g: _Graph) -> bool:
    """Whether the ``Expand``'s target shape ends in 1 (so any last-axis width passes)."""
    shape = g.array(expand.input[1])
    if shape is None and (concat := g.producers.get(expand.input[1])) is not None:
        shape = g.array(concat.input[-1]) if concat.op_type == "Concat" else None
    return shape is not None and shape.size > 0 and int(shape.reshape(-1)[-1]) == 1


def _step_constant(node: onnx.NodeProto, steps: int, g: _Graph) -> _StepConstant | None:
    """The per-step constant part of an LSTM node's input, if it has one."""
    concat = g.producers.get(node.input[0])
    if concat is None or concat.op_type != "Concat" or g.consumers.get(node.input[0]) != 1:
        return None
    if _attr(concat, "axis") not in (2, -1):
        return None
    offset = 0
    for name in concat.input:
        width = (g.shapes.get(name) or [0])[-1]
        if not width:
            return None
        expand = g.producers.get(name)
        values = g.array(expand.input[0]) if expand is not None else None
        if (
            expand is not None
            and expand.op_type == "Expand"
            and g.consumers.get(name) == 1
            and values is not None
            and values.shape == (steps, 1, width)
            and _broadcasts_last_axis(expand, g)
        ):
            return _StepConstant(expand, concat, offset, values)
        offset += width
    return None


def _fold(
    node: onnx.NodeProto, const: _StepConstant, sizes: list[int], base: str, g: _Graph
) -> tuple[list[str], list[onnx.TensorProto]]:
    """One-hot of the step within its segment in place of the constant; per-segment weights.

    Returns:
        The per-segment input weight names and the new initializers.

    """
    width = const.values.shape[2]
    longest = max(sizes)
    w = numpy_helper.to_array(g.inits[node.input[1]]).astype(np.float64)  # (1, 4 D, K)
    w_const = w[0, :, const.offset : const.offset + width]  # (4 D, L)
    steps = sum(sizes)
    one_hot = np.zeros((steps, 1, longest), np.float32)  # (T, 1, S)
    one_hot[np.arange(steps), 0, np.arange(steps) % longest] = 1.0
    inits = [numpy_helper.from_array(one_hot, f"{base}/step_one_hot")]
    names = []
    for i, size in enumerate(sizes):
        t0 = i * longest
        folded = np.zeros((1, w.shape[1], longest))  # (1, 4 D, S): constant x weights per step
        folded[0, :, :size] = w_const @ const.values[t0 : t0 + size, 0].astype(np.float64).T
        parts = [w[..., : const.offset], folded, w[..., const.offset + width :]]
        weights = np.concatenate(parts, axis=2).astype(np.float32)  # (1, 4 D, K - L + S)
        inits.append(numpy_helper.from_array(weights, f"{base}/W{i}"))
        names.append(inits[-1].name)
    const.expand.input[0] = inits[0].name
    stale = {const.expand.output[0], const.concat.output[0]}  # their widths changed
    kept = [v for v in g.model.graph.value_info if v.name not in stale]
    del g.model.graph.value_info[:]
    g.model.graph.value_info.extend(kept)
    return names, inits


def _segment_nodes(
    node: onnx.NodeProto, sizes: list[int], weights: list[str], y_used: bool, base: str
) -> tuple[list[onnx.NodeProto], onnx.TensorProto]:
    """``Split`` + one ``LSTM`` per segment (+ ``Concat`` of ``Y``) replacing ``node``."""
    split = numpy_helper.from_array(np.array(sizes, np.int64), f"{base}/segment_steps")
    xs = [f"{base}/X{i}" for i in range(len(sizes))]
    nodes = [helper.make_node("Split", [node.input[0], split.name], xs, f"{base}/split", axis=0)]
    inputs = [*node.input, *[""] * 8]
    outputs = [*node.output, "", "", ""]
    h, c = inputs[5], inputs[6]
    peepholes = [inputs[7]] if inputs[7] else []
    ys = []
    for i, (x, w) in enumerate(zip(xs, weights, strict=True)):
        last = i == len(xs) - 1
        y = f"{base}/Y{i}" if y_used else ""
        h_next = outputs[1] if last else f"{base}/Y_h{i}"
        c_next = outputs[2] if last else f"{base}/Y_c{i}"
        seg = helper.make_node(
            "LSTM", [x, w, *inputs[2:4], "", h, c, *peepholes], [y, h_next, c_next], f"{base}/{i}"
        )
        seg.attribute.extend(node.attribute)
        seg.metadata_props.extend(node.metadata_props)  # the torch module it came from
        nodes.append(seg)
        ys.append(y)
        h, c = h_next, c_next
    if y_used:
        nodes.append(helper.make_node("Concat", ys, [node.output[0]], f"{base}/concat", axis=0))
    return nodes, split


def _inputs_used(graph: onnx.GraphProto) -> set[str]:
    """Names read by ``graph``'s nodes, those of their subgraphs (If / Loop / Scan) included."""
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
    for node in graph.node:
        for attr in node.attribute:
            subgraphs = [attr.g] if attr.HasField("g") else list(attr.graphs)
            for sub in subgraphs:
                used |= _inputs_used(sub)
    return used


def _drop_unused_initializers(model: onnx.ModelProto) -> None:
    used = _inputs_used(model.graph)
    kept = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def segment_lstm_nodes(model: onnx.ModelProto) -> list[str]:
    """Run every forward LSTM node of ``model`` in time segments, folding step constants.

    Only nodes with a static sequence length longer than one segment, time-major layout and
    no ``sequence_lens`` are rewritten; a per-step constant part of their input is folded when
    it is wider than a segment is long (see the module docstring).

    Args:
        model: an exported model; its graph is changed in place.

    Returns:
        One line per rewrite (for ``export.json``'s ``graph_rewrites``).

    """
    g = _Graph(model)
    nodes, inits, rewrites = [], [], []
    for index, node in enumerate(model.graph.node):
        total = _static_steps(node, g)
        steps = segment_steps(_attr(node, "hidden_size", 0) or 1)
        if total <= steps or node.input[1] not in g.inits:
            nodes.append(node)
            continue
        sizes = [steps] * (total // steps) + [total % steps] * bool(total % steps)
        base = f"geoclim_segmented/{node.name or index}"
        name = _module_name(node)
        weights = [node.input[1]] * len(sizes)
        const = _step_constant(node, total, g)
        if const is not None and steps < const.values.shape[2]:
            weights, folded = _fold(node, const, sizes, base, g)
            inits += folded
            rewrites.append(
                f"{name}: {const.values.shape[2]} per-step constant input channels folded "
                f"into per-segment weights (a one-hot of the step, {steps} channels)"
            )
        y_used = bool(node.output) and g.consumers.get(node.output[0], 0) > 0
        replacement, split = _segment_nodes(node, sizes, weights, y_used, base)
        nodes += replacement
        inits.append(split)
        rewrites.append(
            f"{name}: LSTM over {total} steps run as {len(sizes)} segments of <= {steps} "
            "steps (input projection per call in L2)"
        )
    if rewrites:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend(inits)
        _drop_unused_initializers(model)
    return rewrites
