"""spaCy corpus reader for token-per-line files: ``spacy_bioner.IOBCorpus.v1``.

A training config can read IOB/CoNLL files directly::

    [corpora.train]
    @readers = "spacy_bioner.IOBCorpus.v1"
    path = ${paths.train}

``.spacy`` DocBins are read as well, so the same block serves converted data.
"""
import random
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..errors import CorpusConfigError
from ..types import CorpusReader
from .conll import DEFAULT_UNTYPED_LABEL, corpus_files, read_docs
from .docbin import load_docbin
from .sentences import input_copy


def load_corpus_docs(
    path: Union[str, Path],
    *,
    vocab,
    scheme: str = "auto",
    untyped_label: str = DEFAULT_UNTYPED_LABEL,
    n_sents: int = 0,
    strict: bool = False,
) -> List[Doc]:
    """Docs from a ``.spacy`` file, a token-per-line file, or a directory of them."""
    path = Path(path)
    if path.suffix == ".spacy":
        return load_docbin(path, vocab)
    docs: List[Doc] = []
    for file in corpus_files(path):
        if file.suffix == ".spacy":
            docs.extend(load_docbin(file, vocab))
        else:
            docs.extend(
                read_docs(file, vocab=vocab, scheme=scheme, untyped_label=untyped_label,
                          n_sents=n_sents, strict=strict)
            )
    return docs


def iob_examples(
    nlp: Language,
    *,
    path: Path,
    scheme: str = "auto",
    untyped_label: str = DEFAULT_UNTYPED_LABEL,
    n_sents: int = 0,
    strict: bool = False,
    limit: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    augmenter: Optional[Callable[[Language, Example], Iterable[Example]]] = None,
) -> Iterator[Example]:
    """Yield one Example per document, keeping the corpus tokenisation.

    The predicted side has the gold words and spaces (like spaCy's
    ``gold_preproc``), so training and evaluation see the corpus' own tokens.
    """
    docs = load_corpus_docs(path, vocab=nlp.vocab, scheme=scheme, untyped_label=untyped_label,
                            n_sents=n_sents, strict=strict)
    if shuffle:
        random.Random(seed).shuffle(docs)
    if limit:
        docs = docs[:limit]
    for doc in docs:
        example = Example(input_copy(doc, vocab=nlp.vocab), doc)
        if augmenter is None:
            yield example
        else:
            yield from augmenter(nlp, example)


@registry.readers("spacy_bioner.IOBCorpus.v1")
def create_iob_corpus(
    path: Optional[Path],
    scheme: str = "auto",
    untyped_label: str = DEFAULT_UNTYPED_LABEL,
    n_sents: int = 0,
    strict: bool = False,
    limit: int = 0,
    shuffle: bool = False,
    seed: int = 0,
    augmenter: Optional[Callable[[Language, Example], Iterable[Example]]] = None,
) -> CorpusReader:
    """Read IOB/CoNLL files (or DocBins) as training or evaluation Examples.

    path (Path): a file or a directory of corpus files.
    scheme (str): ``auto``, ``iob1``, ``iob2``, ``bioes`` or ``bilou``.
    untyped_label (str): label for bare ``B``/``I`` tags.
    n_sents (int): sentences per document (0: by ``-DOCSTART-``, else one).
    strict (bool): error on scheme violations instead of repairing them.
    limit (int): keep at most this many documents (0: all).
    shuffle (bool): shuffle documents (seeded) before ``limit``.
    seed (int): shuffle seed.
    augmenter (Callable): a spaCy augmenter (``[corpora.train.augmenter]``, e.g.
        ``spacy_bioner.entity_swap_augmenter.v1``), applied to every Example read.
    """
    if path is None:
        raise CorpusConfigError("spacy_bioner.IOBCorpus.v1: 'path' is not set (e.g. --paths.train corpus/train.spacy)")
    return partial(iob_examples, path=Path(path), scheme=scheme, untyped_label=untyped_label,
                   n_sents=n_sents, strict=strict, limit=limit, shuffle=shuffle, seed=seed,
                   augmenter=augmenter)
