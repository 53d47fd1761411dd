"""Baselines that every model is scored next to: persistence, climatology and tree models.

All implement :class:`geoclim.baselines.base.Baseline` on the datamodule's own sample index,
so baselines and networks are compared on identical samples.
"""
