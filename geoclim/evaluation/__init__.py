"""Scoring: metrics on Datasets, run scoring, bootstrap intervals, leaderboards and plots."""
