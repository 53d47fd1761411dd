"""The data path: raw files -> canonical Dataset -> windows -> batches -> predictions."""
