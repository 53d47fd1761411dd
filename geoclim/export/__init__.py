"""ONNX export of geoclim models: bare-network export, parity, quantisation, metadata, registry.

Submodules are imported explicitly; ``metadata`` and ``registry`` are torch-free so serving can
read them.
"""
