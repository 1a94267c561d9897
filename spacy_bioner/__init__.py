"""spacy-bioner: train, evaluate and ship biomedical NER with spaCy."""
from . import architectures, batchers, spans  # noqa: F401  (registrations)
from .conll import build_docs, read_docs, read_documents, write_docs
from .errors import CorpusFormatError
from .readers import create_iob_corpus

__version__ = "0.1.0"

__all__ = [
    "CorpusFormatError",
    "__version__",
    "build_docs",
    "create_iob_corpus",
    "read_docs",
    "read_documents",
    "write_docs",
]
