"""The sentences of a Doc: the one place that decides what they are.

A Doc read from a corpus has sentence starts (``token.is_sent_start``); a Doc
without them (or an empty one) is one sentence.
"""
from typing import TYPE_CHECKING, List, Union

from ..types import SentenceBounds

if TYPE_CHECKING:
    from spacy.tokens import Doc, Span
    from spacy.training import Example
    from spacy.vocab import Vocab


def sentence_bounds(doc: "Doc") -> List[SentenceBounds]:
    """``(start, end)`` token offsets of each sentence (one for a Doc without sentence starts).

    doc (Doc): the Doc.
    RETURNS (List[SentenceBounds]): in order, covering every token; ``[(0, 0)]`` for an empty Doc.
    """
    if len(doc) and doc.has_annotation("SENT_START"):
        return [(s.start, s.end) for s in doc.sents]
    return [(0, len(doc))]


def sentences(doc: "Doc") -> List["Span"]:
    """The sentences as Spans (the whole Doc when it has no sentence starts)."""
    return [doc[start:end] for start, end in sentence_bounds(doc)]


def n_sentences(item: Union["Doc", "Example"]) -> int:
    """Sentences in a Doc, or in an Example's reference Doc (at least 1)."""
    doc = getattr(item, "reference", item)
    if not len(doc) or not doc.has_annotation("SENT_START"):
        return 1
    return sum(1 for t in doc if t.is_sent_start)


def input_copy(doc: "Doc", *, vocab: "Vocab") -> "Doc":
    """An unannotated copy of a gold Doc for a pipeline to predict on: its words, spaces and
    sentence starts (so heads that respect sentences see the gold sentences), nothing else.

    doc (Doc): the gold Doc.
    vocab (Vocab): the pipeline's vocab.
    RETURNS (Doc): the copy.
    """
    from spacy.tokens import Doc

    starts = [bool(t.is_sent_start) for t in doc] if len(doc) and doc.has_annotation("SENT_START") else None
    return Doc(vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc], sent_starts=starts)
