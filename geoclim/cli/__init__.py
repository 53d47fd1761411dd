"""Command-line entry points: Hydra ones (train, evaluate, export) and the plain ``geoclim``."""
