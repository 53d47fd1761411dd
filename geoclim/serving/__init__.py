"""Serving: the ``Forecaster`` adapter (ONNX -> xarray) and the HTTP app. Never imports torch."""
