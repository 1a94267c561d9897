"""Evaluation: spaCy scorer + seqeval metrics, reports and plots, predicting, cross-validation."""
