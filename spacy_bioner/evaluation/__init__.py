"""Evaluation: spaCy scorer + seqeval metrics, reports and plots, predicting, noisy test sets."""
