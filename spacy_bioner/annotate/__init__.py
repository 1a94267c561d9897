"""Corpus-scale annotation with a trained pipeline (``spacy-bioner annotate``): document
formats in :mod:`.formats`, the streaming, resumable job in :mod:`.job`."""
