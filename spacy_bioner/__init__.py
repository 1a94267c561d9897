"""spacy-bioner: train, evaluate and ship biomedical NER with spaCy.

The package is laid out in layers, each importing only from those below it
(``tests/test_layers.py``): ``corpus`` (IOB/CoNLL ↔ DocBin, schemes, spaCy
readers, noise) → ``models`` (transformer and decoder architectures, windows,
buckets, backbones, optimizer and adversarial machinery) → ``pipeline``
(components) → ``training`` (configs, batchers, schedules, augmenters, the run
builder) and ``evaluation`` (scoring, reports, predicting) → ``packaging``
(wheels) → ``experiments`` (sweeps, cross-validation, package-best) and
``annotate`` (annotation at scale) → a thin ``cli``.
Importing it is instant: registered functions are found by spaCy through the
entry points in setup.cfg, and the names below load on first use.
"""
import importlib
from typing import Any

__version__ = "0.2.0"

#: Public names and the module that owns each.
_EXPORTS = {
    "CorpusFormatError": "spacy_bioner.errors",
    "build_docs": "spacy_bioner.corpus.conll",
    "read_docs": "spacy_bioner.corpus.conll",
    "read_documents": "spacy_bioner.corpus.conll",
    "write_docs": "spacy_bioner.corpus.conll",
    "load_docbin": "spacy_bioner.corpus.docbin",
    "save_docbin": "spacy_bioner.corpus.docbin",
    "create_iob_corpus": "spacy_bioner.corpus.readers",
    "build_config": "spacy_bioner.training.config",
    "run_training": "spacy_bioner.training.run",
    "evaluate_model": "spacy_bioner.evaluation.predict",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'spacy_bioner' has no attribute {name!r}")
