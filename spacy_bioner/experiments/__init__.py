"""Experiments built on training and evaluation: sweeps (local and Ray Tune), their reports,
cross-validation, and packaging a sweep's best run."""
