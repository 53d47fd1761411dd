"""Tree baselines (XGBoost, LightGBM, random forest) as ONNX graphs over the Batch arrays.

So that serving is the same for every model, a tree export takes the Batch fields, not a
feature table: the lag-feature flattening of :mod:`geoclim.baselines.features` is built
into the graph in front of the converted trees (``onnxmltools`` for XGBoost and LightGBM,
``skl2onnx`` for scikit-learn's random forest)::

    past (B, T_in, C_in, 1, 1) --Gather lags / NaN-mean windows--+
    known_future (B, L, C_known, 1, 1) --future variables--------+
    calendar (B, L, C_cal, 1, 1) (valid-time encodings) ---------+--> (B * L, F) --> trees
    static (B, C_static, 1, 1), coordinates (B, 2, 1, 1) --------+    --> (B, L, C_out[, Q], 1, 1)
    lead 1..L (constant) ----------------------------------------+       physical units

Columns come in exactly the order of ``LagFeatures.names``; NaN is kept (the adapter does
not fill it for trees) and routed by the trees as in training. Two extra inputs beyond the
Batch keys exist because the features need them: ``calendar`` (the tree's calendar
encodings at the valid times, computed by the adapter from the clock) and ``coordinates``
(the point's latitude / longitude). Trees predict physical units (``output_space``).
:mod:`geoclim.export.trees` checks a graph against the baseline and writes it with its
metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from geoclim.errors import ConfigError

OPSET = 15  # the highest default-domain opset onnxmltools' converters accept
TREE_INPUTS = ("past", "known_future", "static", "calendar", "coordinates")


def estimators(baseline: Any) -> dict[tuple[int, int | None], list[Any]]:
    """The fitted estimators of a :class:`~geoclim.baselines.trees.TreeBaseline`.

    Returns:
        ``{(target index, lead or None): [estimator per output column group]}``.

    Raises:
        ConfigError: if the baseline holds no fitted estimators.

    """
    found = getattr(baseline, "estimators", None)
    if not isinstance(found, dict) or not found:
        raise ConfigError(f"{getattr(baseline, 'name', baseline)!r} holds no fitted trees")
    return found


def convert_estimator(est: Any, n_features: int) -> onnx.ModelProto:
    """One fitted regressor -> ONNX ``input (N, F) -> variable (N, Q)``."""
    kind = type(est).__module__.split(".")[0]
    if kind == "xgboost":
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        return convert_xgboost(
            est, initial_types=[("input", FloatTensorType([None, n_features]))], target_opset=OPSET
        )
    if kind == "lightgbm":
        from onnxmltools import convert_lightgbm
        from onnxmltools.convert.common.data_types import FloatTensorType

        return convert_lightgbm(
            est,
            initial_types=[("input", FloatTensorType([None, n_features]))],
            target_opset=OPSET,
            zipmap=False,
        )
    if kind == "sklearn":
        from skl2onnx import convert_sklearn
        from skl2onnx.common.data_types import FloatTensorType as SkFloat

        return convert_sklearn(
            est,
            initial_types=[("input", SkFloat([None, n_features]))],
            target_opset={"": OPSET, "ai.onnx.ml": 3},
        )
    raise ConfigError(
        f"no ONNX converter for {type(est).__qualname__}; supported: XGBoost, "
        "LightGBM, scikit-learn random forest"
    )


class _Graph:
    """A tiny node/initializer builder with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def const(self, values: Any, dtype: Any = np.int64) -> str:
        name = f"c{self.n}"
        self.n += 1
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs: Any) -> str:
        name = f"v{self.n}"
        self.n += 1
        self.nodes.append(helper.make_node(op_type, inputs, [name], **attrs))
        return name


def _features(g: _Graph, baseline: Any, task: Any) -> tuple[str, list[str]]:
    """Nodes computing the ``(B, L, F)`` feature tensor; returns its name and the inputs used."""
    feats, n_in, horizon = baseline.features, task.input_steps, task.horizon
    used = ["past"]
    past = g.op("Reshape", ["past", g.const([0, n_in, -1])])  # (B, T_in, C_in)
    per_sample = []  # (B, F_i) blocks, later repeated over leads
    if feats.lags:
        lagged = g.op("Gather", [past, g.const([n_in - 1 - lag for lag in feats.lags])], axis=1)
        per_sample.append(g.op("Flatten", [lagged], axis=1))  # lag-major, then variable
    for w in feats.windows:
        window = g.op("Slice", [past, g.const([n_in - w]), g.const([n_in]), g.const([1])])
        nan = g.op("IsNaN", [window])
        zero = g.const(0.0, np.float32)
        total = g.op("ReduceSum", [g.op("Where", [nan, zero, window]), g.const([1])], keepdims=0)
        count = g.op(
            "ReduceSum",
            [g.op("Cast", [g.op("Not", [nan])], to=TensorProto.FLOAT), g.const([1])],
            keepdims=0,
        )
        per_sample.append(g.op("Div", [total, count]))  # all-NaN window -> 0/0 = NaN
    blocks = []
    if per_sample:
        sample = g.op("Concat", per_sample, axis=1) if len(per_sample) > 1 else per_sample[0]
        sample = g.op("Unsqueeze", [sample, g.const([1])])  # (B, 1, F1)
        blocks.append(sample)
    if feats.future_channels:
        used.append("known_future")
        known_channels = task.known_channels
        channels = [
            known_channels.index(c) for v in task.future_variables for c in task.channel_names(v)
        ]
        known = g.op("Reshape", ["known_future", g.const([0, horizon, -1])])
        blocks.append(g.op("Gather", [known, g.const(channels)], axis=2))  # (B, L, n_fut)
    if feats.calendar.shape[1]:
        used.append("calendar")
        blocks.append(g.op("Reshape", ["calendar", g.const([0, horizon, -1])]))
    if feats.static.shape[-1]:
        used.append("static")
        static = g.op("Reshape", ["static", g.const([0, -1])])
        blocks.append(g.op("Unsqueeze", [static, g.const([1])]))  # (B, 1, C_static)
    if feats.coords is not None:
        used.append("coordinates")
        coords = g.op("Reshape", ["coordinates", g.const([0, 2])])
        blocks.append(g.op("Unsqueeze", [coords, g.const([1])]))
    if feats.with_lead:
        blocks.append(
            g.const(np.arange(1, horizon + 1, dtype=np.float32).reshape(1, -1, 1), np.float32)
        )
    # broadcast every block to (B, L, F_i): multiply a ones tensor of shape (B, L, 1)
    batch = g.op("Slice", [g.op("Shape", ["past"]), g.const([0]), g.const([1])])
    ones = g.op(
        "ConstantOfShape",
        [g.op("Concat", [batch, g.const([horizon, 1])], axis=0)],
        value=numpy_helper.from_array(np.ones(1, np.float32)),
    )
    full = [g.op("Mul", [b, ones]) for b in blocks]
    return g.op("Concat", full, axis=2), [k for k in TREE_INPUTS if k in used]


def _persistence(g: _Graph, task: Any, normalizer: Any, c: int) -> str:
    """``(B, 1, 1)`` last finite value of target ``c`` in the input window, physical units.

    The graph's ``past`` is normalised, so the value is decoded in the graph with the
    normaliser's statistics (``z * std + mean``, then ``expm1`` for log variables).
    """
    name, n_in = task.targets[c], task.input_steps
    stats = normalizer.stats[name]
    past = g.op("Reshape", ["past", g.const([0, n_in, -1])])
    z = g.op("Gather", [past, g.const(c)], axis=2)  # (B, T_in)
    x = g.op(
        "Add", [g.op("Mul", [z, g.const(stats.std, np.float32)]), g.const(stats.mean, np.float32)]
    )
    if stats.log:
        x = g.op("Sub", [g.op("Exp", [x]), g.const(1.0, np.float32)])
    steps = g.const(np.arange(n_in), np.int64)
    last = g.op(
        "ReduceMax",
        [g.op("Where", [g.op("Not", [g.op("IsNaN", [x])]), steps, g.const(-1)])],
        axes=[1],
        keepdims=1,
    )
    value = g.op("GatherElements", [x, g.op("Max", [last, g.const(0)])], axis=1)  # (B, 1)
    found = g.op("GreaterOrEqual", [last, g.const(0)])
    value = g.op("Where", [found, value, g.const(np.nan, np.float32)])
    return g.op("Unsqueeze", [value, g.const([2])])  # (B, 1, 1)


def tree_model(
    baseline: Any, task: Any, normalizer: Any
) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """The ONNX graph of a fitted tree baseline over the Batch arrays (module docstring).

    The trees' raw output is post-processed as the baseline's ``predict`` does: multiplied
    by the per-lead scale (``lead_scale``) and, for residual models, added to persistence.

    Args:
        baseline: a fitted :class:`~geoclim.baselines.trees.TreeBaseline`.
        task: its :class:`~geoclim.data.task.ForecastTask`.
        normalizer: the datamodule's normaliser (to decode persistence in the graph).

    Returns:
        The model, output ``prediction (B, L, C_out[, Q], 1, 1)`` physical, and its inputs.

    """
    g = _Graph()
    features, used = _features(g, baseline, task)
    horizon, n_feat = task.horizon, len(baseline.features.names)
    rows = g.op("Reshape", [features, g.const([-1, n_feat])])  # (B * L, F), lead fastest
    models = estimators(baseline)
    n_q = len(baseline.quantiles)
    opsets = {"": OPSET, "ai.onnx.ml": 1}
    per_target = []
    for c in range(len(task.targets)):
        leads = [None] if (c, None) in models else list(range(1, horizon + 1))
        lead_outputs = []
        for lead in leads:
            x = (
                rows if lead is None else g.op("Gather", [features, g.const(lead - 1)], axis=1)
            )  # (B, F)
            columns = []
            for i, est in enumerate(models[(c, lead)]):
                sub = onnx.compose.add_prefix(convert_estimator(est, n_feat), f"t{c}_{lead}_{i}_")
                for imp in sub.opset_import:
                    if imp.domain == "ai.onnx.ml":
                        opsets["ai.onnx.ml"] = max(opsets["ai.onnx.ml"], imp.version)
                g.nodes.append(helper.make_node("Identity", [x], [sub.graph.input[0].name]))
                g.nodes.extend(sub.graph.node)
                g.inits.extend(sub.graph.initializer)
                columns.append(sub.graph.output[0].name)
            out = g.op("Concat", columns, axis=1) if len(columns) > 1 else columns[0]
            lead_outputs.append(out if lead is None else g.op("Unsqueeze", [out, g.const([1])]))
        if leads == [None]:
            y = g.op("Reshape", [lead_outputs[0], g.const([-1, horizon, max(n_q, 1)])])
        else:
            y = g.op("Concat", lead_outputs, axis=1)  # (B, L, Q)
        scale = np.asarray(getattr(baseline, "lead_scale", np.ones((0, 0))), np.float32)
        if scale.size:
            y = g.op("Mul", [y, g.const(scale[c].reshape(1, horizon, 1), np.float32)])
        if getattr(baseline, "residual", False):
            y = g.op("Add", [y, _persistence(g, task, normalizer, c)])
        per_target.append(g.op("Unsqueeze", [y, g.const([2])]))  # (B, L, 1, Q)
    y = g.op("Concat", per_target, axis=2) if len(per_target) > 1 else per_target[0]
    if n_q > 1:  # monotone rearrangement: quantiles never cross (as in predict)
        y = _sort_last(g, y, n_q)
    shape = [0, horizon, len(task.targets)] + ([n_q] if n_q else []) + [1, 1]
    if not n_q:
        y = g.op("Squeeze", [y, g.const([3])])
    g.nodes.append(helper.make_node("Reshape", [y, g.const(shape)], ["prediction"]))
    inputs = [_input_info(name, task, baseline) for name in used]
    output = helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", *shape[1:]])
    graph = helper.make_graph(g.nodes, "geoclim_tree", inputs, [output], g.inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets.items()]
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, tuple(used)


def _sort_last(g: _Graph, y: str, k: int) -> str:
    """Sort ``y`` ascending along its last axis (TopK with ``largest=0``)."""
    values = f"v{g.n}"
    g.n += 2
    g.nodes.append(
        helper.make_node(
            "TopK", [y, g.const([k])], [values, f"v{g.n - 1}"], axis=-1, largest=0, sorted=1
        )
    )
    return values


def _input_info(name: str, task: Any, baseline: Any) -> onnx.ValueInfoProto:
    n_cal = baseline.features.calendar.shape[1]
    shapes = {
        "past": ["batch", task.input_steps, len(task.past_channels), 1, 1],
        "known_future": ["batch", task.horizon, len(task.known_channels), 1, 1],
        "static": ["batch", len(task.static_channels), 1, 1],
        "calendar": ["batch", task.horizon, n_cal, 1, 1],
        "coordinates": ["batch", 2, 1, 1],
    }
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shapes[name])
