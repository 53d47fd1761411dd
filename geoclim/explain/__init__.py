"""Attributions of geoclim forecasts as ``xr.Dataset`` on ``(input_variable, lag)``.

* :mod:`geoclim.explain.captum` -- Captum on the bare network (integrated gradients, feature
  ablation, occlusion, gradient SHAP) of an explicit
  :class:`~geoclim.explain.target.ExplainTarget`;
* :mod:`geoclim.explain.tft` -- the TFT's own variable-selection weights and attention;
* :mod:`geoclim.explain.tree_shap` -- SHAP TreeExplainer on the tree baselines;
* :mod:`geoclim.explain.benchmark` -- the exact-truth benchmark the methods are tested on;
* :mod:`geoclim.explain.plots` -- importance bars, lag x variable heat maps, maps, beeswarms.

The ONNX-side, model-agnostic methods live in :mod:`geoclim.serving.explain` (no torch);
both build their Datasets with :mod:`geoclim.explain.layout`. Importing this package imports
neither torch nor SHAP.
"""
