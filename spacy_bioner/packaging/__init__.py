"""Packaging: a trained pipeline as a wheel with its model card."""
