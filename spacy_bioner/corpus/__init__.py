"""Corpora: IOB/CoNLL token-per-line files ↔ spaCy Docs and DocBins, tag schemes, spaCy readers."""
