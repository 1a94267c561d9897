"""The sentences of a Doc: the one place that decides what they are.

A Doc read from a corpus has sentence starts (``token.is_sent_start``); a Doc
without them (or an empty one) is one sentence. Raw text (standoff documents) gets
its sentences from :func:`sentence_starts` / :func:`set_sentence_starts` /
:func:`sentence_offsets`: spaCy's ``sentencizer`` rule with guards for biomedical
abbreviations, and never a boundary inside a mention.
"""
from typing import TYPE_CHECKING, Iterable, List, Optional, Tuple, Union

from ..types import SentenceBounds

if TYPE_CHECKING:
    from spacy.language import Language
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


#: Abbreviations whose period does not end a sentence (compared lower-cased, after a non-letter or the start).
ABBREVIATIONS = frozenset({
    "e.g.", "i.e.", "et al.", "al.", "fig.", "figs.", "tab.", "ref.", "refs.", "eq.", "eqs.", "vs.", "cf.",
    "approx.", "ca.", "no.", "nos.", "vol.", "suppl.", "resp.", "dr.", "prof.", "mr.", "mrs.", "ms.", "st.",
    "sp.", "spp.", "subsp.", "var.", "ssp.", "pv.", "cv.", "str.", "min.", "max.", "wt.", "conc.",
})


def _ends_with_abbreviation(before: str, abbreviations: Iterable[str]) -> bool:
    low = before.lower()
    for abbr in abbreviations:
        if low.endswith(abbr) and (len(low) == len(abbr) or not low[-len(abbr) - 1].isalnum()):
            return True
    return False


def sentence_starts(doc: "Doc", *, mentions: Iterable[Tuple[int, int]] = (), starts: Iterable[int] = (),
                    abbreviations: Iterable[str] = ABBREVIATIONS, line_breaks: bool = True) -> List[bool]:
    """Where sentences start in a Doc of raw text: spaCy's ``sentencizer`` rule (a sentence ends after
    ``.`` ``!`` ``?`` and the punctuation that follows them), with guards for biomedical text. A candidate
    boundary is dropped when

    * no whitespace follows the punctuation (``0.05``, ``e.g.``, ``E.coli`` as one word);
    * the text before it ends with an abbreviation (``e.g.``, ``et al.``, ``Fig.``, ``vs.``, ``sp.`` …);
    * the next word starts with a lower-case letter (``E. coli``, ``S. cerevisiae``, ``approx. half``);
    * it falls inside a mention (a character span in ``mentions``), which therefore stays in one sentence.

    A token that follows a line break (``line_breaks``) or starts at (or first after) an offset in
    ``starts`` (passage starts, say) starts a sentence, unless that is inside a mention. Whitespace
    tokens never start a sentence.

    doc (Doc): the tokenised text.
    mentions (Iterable[Tuple[int, int]]): character spans ``(start, end)`` no sentence may cut.
    starts (Iterable[int]): character offsets where a sentence must start.
    abbreviations (Iterable[str]): lower-case abbreviations, period included.
    line_breaks (bool): whether a line break ends a sentence.
    RETURNS (List[bool]): per token, whether it starts a sentence (True for the first non-space token).
    """
    from spacy.pipeline import Sentencizer

    ends = set(Sentencizer.default_punct_chars)
    spans = [(int(s), int(e)) for s, e in mentions]
    abbreviations = tuple(abbreviations)
    text = doc.text

    def inside_mention(offset: int) -> bool:
        return any(s < offset < e for s, e in spans)

    forced = sorted(set(int(s) for s in starts))
    flags = [False] * len(doc)
    seen_end: Optional[int] = None  # character offset just after the last sentence-ending character
    first = True
    next_forced = 0
    for i, token in enumerate(doc):
        if token.is_space:
            continue
        start = token.idx
        # the text since the previous non-space token (whitespace tokens included)
        j = i - 1
        while j >= 0 and doc[j].is_space:
            j -= 1
        gap = text[doc[j].idx + len(doc[j].text):start] if j >= 0 else ""
        must = False
        while next_forced < len(forced) and forced[next_forced] <= start:
            must, next_forced = True, next_forced + 1
        if line_breaks and ("\n" in gap or "\r" in gap):
            must = True
        if first:
            flags[i], first, seen_end = True, False, None
        elif must and not inside_mention(start):
            flags[i], seen_end = True, None
        elif seen_end is not None and not token.is_punct and token.text not in ends:
            flags[i] = (
                any(c.isspace() for c in text[seen_end:start])
                and not _ends_with_abbreviation(text[:seen_end], abbreviations)
                and not token.text[0].islower()
                and not inside_mention(start)
            )
            seen_end = None
        if token.text in ends or (token.is_punct and token.text[-1:] in ends):
            seen_end = start + len(token.text)
    return flags


def set_sentence_starts(doc: "Doc", **kwargs) -> "Doc":
    """Set ``token.is_sent_start`` from :func:`sentence_starts` (same keyword arguments); returns the Doc."""
    for token, flag in zip(doc, sentence_starts(doc, **kwargs)):
        token.is_sent_start = flag
    return doc


def sentence_offsets(text: str, *, nlp: Optional["Language"] = None, **kwargs) -> List[Tuple[int, int]]:
    """Character spans ``(start, end)`` of the sentences of raw text (see :func:`sentence_starts`, whose
    keyword arguments it takes), trailing whitespace excluded.

    text (str): the text.
    nlp (Optional[Language]): whose tokenizer splits the text; default: English with the biomedical tokenizer.
    RETURNS (List[Tuple[int, int]]): in order.
    """
    if nlp is None:
        nlp = _default_nlp()
    doc = nlp.make_doc(text)
    out: List[Tuple[int, int]] = []
    for token, flag in zip(doc, sentence_starts(doc, **kwargs)):
        if token.is_space:
            continue
        if flag or not out:
            out.append((token.idx, token.idx + len(token.text)))
        else:
            out[-1] = (out[-1][0], token.idx + len(token.text))
    return out


_NLP: List["Language"] = []


def _default_nlp() -> "Language":
    if not _NLP:
        import spacy

        from .tokenizer import create_bio_tokenizer

        nlp = spacy.blank("en")
        nlp.tokenizer = create_bio_tokenizer(nlp)
        _NLP.append(nlp)
    return _NLP[0]
