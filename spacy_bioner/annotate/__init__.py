"""Corpus-scale annotation with a trained pipeline (``spacy-bioner annotate``): document
formats in :mod:`.formats`, what every backend runs on a buffer (and what stops a job) in
:mod:`.worker`, the streaming, resumable job in :mod:`.job`, Ray Data in :mod:`.ray_backend`."""
