"""geoclim's Hydra configs, installed as the package ``geoclim.conf`` (``pkg://geoclim.conf``).

Hydra's package config source only accepts a package with an ``__init__.py``; this file is
that marker and holds no code. The configs are the YAML files of this folder and its groups.
"""
