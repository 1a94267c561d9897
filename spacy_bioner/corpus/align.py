"""Standoff documents → spaCy Docs (and back), accounting for every mention.

:func:`standoff_to_doc` tokenises a :class:`~spacy_bioner.corpus.standoff.StandoffDocument`'s
text, aligns its mentions to tokens and sets ``doc.ents``, sentence starts and the
document id (``doc.user_data["spacy_bioner.document"]``, which
:func:`~spacy_bioner.corpus.splits.document_groups` reads). What happens to each
mention is counted in an :class:`AlignmentSummary`: kept as-is, kept by splitting a
token at its boundary, boundary-adjusted, or dropped (overlapping, composite,
discontinuous, mapped to nothing, no token inside), so the counts add up to the
mentions read.
"""
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span

from ..errors import CorpusFormatError
from .splits import USER_DATA_DOCUMENT
from .standoff import Mention, StandoffDocument

ALIGNMENTS = ("split", "expand", "contract", "strict")
OVERLAPS = ("longest", "shortest", "error")
#: What can happen to a mention; ``kept``, ``split`` and ``adjusted`` end up in ``doc.ents``.
OUTCOMES = ("kept", "split", "adjusted", "dropped_overlap", "dropped_composite", "dropped_discontinuous",
            "dropped_label", "dropped_no_token")
#: Examples kept per outcome and file.
N_EXAMPLES = 5
Tokenizer = Callable[[str], Doc]


def default_tokenizer() -> Tokenizer:
    """The tokenizer standoff text is split with when none is given: the biomedical English tokenizer
    (``spacy_bioner.BioTokenizer.v1``), built without a ``Language`` (see :func:`language_tokenizer`)."""
    from types import SimpleNamespace

    from spacy.lang.en import English
    from spacy.vocab import Vocab

    from .tokenizer import create_bio_tokenizer

    return create_bio_tokenizer(SimpleNamespace(vocab=Vocab(strings=[]), Defaults=English.Defaults))


def language_tokenizer(code: str) -> Tokenizer:
    """spaCy's rule-based tokenizer of a language (as ``spacy.blank(code).tokenizer``), built without a
    ``Language``, whose construction loads every installed pipeline plugin (torch included).

    code (str): a language code spaCy knows (``en``, ``es``…).
    RETURNS (Tokenizer): the tokenizer.
    """
    from spacy.tokenizer import Tokenizer as SpacyTokenizer
    from spacy.util import compile_infix_regex, compile_prefix_regex, compile_suffix_regex, get_lang_class
    from spacy.vocab import Vocab

    try:
        defaults = get_lang_class(code).Defaults
    except (ImportError, KeyError):
        raise ValueError(f"--tokenizer {code}: not a language code spaCy knows") from None
    return SpacyTokenizer(
        Vocab(strings=[]), rules=defaults.tokenizer_exceptions,
        prefix_search=compile_prefix_regex(defaults.prefixes).search if defaults.prefixes else None,
        suffix_search=compile_suffix_regex(defaults.suffixes).search if defaults.suffixes else None,
        infix_finditer=compile_infix_regex(defaults.infixes).finditer if defaults.infixes else None,
        token_match=defaults.token_match, url_match=defaults.url_match)


def load_tokenizer(name: Optional[str]) -> Tokenizer:
    """A tokenizer from a spaCy pipeline folder or package name, or a language code (``en``, ``es``…).

    A pipeline's tokenizer is read from its ``tokenizer`` file (its rules and patterns), so no
    pipeline component is loaded.
    name (Optional[str]): None for :func:`default_tokenizer`.
    RETURNS (Tokenizer): a callable text → Doc.
    """
    from pathlib import Path

    if not name:
        return default_tokenizer()
    if len(name) <= 3 and name.isalpha() and not Path(name).exists():
        return language_tokenizer(name)
    import spacy.util
    from spacy.tokenizer import Tokenizer as SpacyTokenizer
    from spacy.vocab import Vocab

    path = Path(name)
    if not path.exists() and spacy.util.is_package(name):
        path = spacy.util.get_package_path(name)
    folders = [path] + sorted(p.parent for p in path.glob("*/config.cfg")) if path.is_dir() else []
    folder = next((f for f in folders if (f / "config.cfg").is_file() and (f / "tokenizer").is_file()), None)
    if folder is None:
        raise ValueError(f"--tokenizer {name}: neither a language code nor a spaCy pipeline (folder or package "
                         "with config.cfg and tokenizer)")
    import srsly

    lang = srsly.read_json(folder / "meta.json").get("lang", "en") if (folder / "meta.json").is_file() else "en"
    try:
        return language_tokenizer(lang).from_disk(folder / "tokenizer")
    except ValueError:
        return SpacyTokenizer(Vocab(strings=[])).from_disk(folder / "tokenizer")


@dataclass
class TypeCounts:
    """What happened to the mentions of one type (one file)."""

    read: int = 0
    counts: Counter = field(default_factory=Counter)
    max_change: int = 0  # largest boundary change in characters (start and end moves added)

    def to_dict(self) -> Dict[str, int]:
        out = {"read": self.read}
        out.update({k: self.counts.get(k, 0) for k in OUTCOMES})
        out["max_change_chars"] = self.max_change
        return out


@dataclass
class AlignmentSummary:
    """Per file and per type: mentions read and what became of each, with the first few examples.

    label_map (Dict[str, Optional[str]]): the label map applied (source type → target, None drops).
    """

    files: Dict[str, Dict[str, TypeCounts]] = field(default_factory=lambda: defaultdict(dict))
    examples: Dict[str, Dict[str, List[str]]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    ignored: Dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    documents: Counter = field(default_factory=Counter)
    label_map: Dict[str, Optional[str]] = field(default_factory=dict)

    def note(self, file: str, mention: Mention, outcome: str, *, change: int = 0, detail: str = "") -> None:
        counts = self.files[file].setdefault(mention.type, TypeCounts())
        counts.counts[outcome] += 1
        counts.max_change = max(counts.max_change, change)
        shown = self.examples[file][outcome]
        if outcome != "kept" and len(shown) < N_EXAMPLES:
            shown.append(f"{mention.source} offset {mention.start}-{mention.end} {mention.type} "
                         f"{mention.text[:60]!r}{': ' + detail if detail else ''}")

    def per_type(self) -> Dict[str, TypeCounts]:
        """Counts per type over all files."""
        total: Dict[str, TypeCounts] = {}
        for types in self.files.values():
            for kind, counts in types.items():
                t = total.setdefault(kind, TypeCounts())
                t.read += counts.read
                t.counts.update(counts.counts)
                t.max_change = max(t.max_change, counts.max_change)
        return total

    def check(self) -> None:
        """Every mention read has exactly one outcome (AssertionError otherwise)."""
        for file, types in self.files.items():
            for kind, counts in types.items():
                assert counts.read == sum(counts.counts.values()), (file, kind, counts)

    def to_dict(self) -> Dict[str, object]:
        total = {k: v.to_dict() for k, v in sorted(self.per_type().items())}
        return {
            "label_map": self.label_map,
            "total": {"documents": sum(self.documents.values()),
                      **{k: sum(v[k] for v in total.values()) for k in ("read",) + OUTCOMES},
                      "max_change_chars": max((v["max_change_chars"] for v in total.values()), default=0)},
            "per_type": total,
            "files": {file: {"documents": self.documents[file],
                             "per_type": {k: v.to_dict() for k, v in sorted(types.items())},
                             "ignored": dict(self.ignored[file]),
                             "examples": {k: list(v) for k, v in self.examples[file].items()}}
                      for file, types in self.files.items()},
        }


def _select(mentions: List[Mention], overlaps: str) -> Tuple[List[Mention], List[Tuple[Mention, Mention]]]:
    """Non-overlapping mentions (longest or shortest first, then leftmost) and the dropped ones with
    the mention each overlaps."""
    if overlaps == "longest":
        order = sorted(mentions, key=lambda m: (-(m.end - m.start), m.start, m.end))
    else:
        order = sorted(mentions, key=lambda m: (m.end - m.start, m.start, m.end))
    chosen: List[Mention] = []
    dropped: List[Tuple[Mention, Mention]] = []
    for m in order:
        clash = next((c for c in chosen if m.start < c.end and c.start < m.end), None)
        if clash is None:
            chosen.append(m)
        elif overlaps == "error":
            raise CorpusFormatError(f"mention {m.start}-{m.end} {m.type} {m.text!r} overlaps "
                                    f"{clash.start}-{clash.end} {clash.type} {clash.text!r} (--overlaps error)",
                                    path=m.source.rsplit(":", 1)[0], line=_line(m))
        else:
            dropped.append((m, clash))
    chosen.sort(key=lambda m: (m.start, m.end))
    return chosen, dropped


def _line(mention: Mention) -> Optional[int]:
    tail = mention.source.rsplit(":", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def _split_tokens(doc: Doc, cuts: Iterable[int]) -> Tuple[Doc, set]:
    """``doc`` with tokens cut at the character offsets ``cuts`` that fall inside a token (the text
    unchanged), and the offsets where a token was cut."""
    from bisect import bisect_right

    starts = [t.idx for t in doc]
    inside: Dict[int, List[int]] = defaultdict(list)
    made = set()
    for cut in sorted(set(cuts)):
        i = bisect_right(starts, cut) - 1
        if i < 0:
            continue
        token = doc[i]
        if token.idx < cut < token.idx + len(token.text):
            inside[i].append(cut)
            made.add(cut)
    if not inside:
        return doc, made
    words: List[str] = []
    spaces: List[bool] = []
    text = doc.text
    for token in doc:
        edges = [token.idx] + inside.get(token.i, []) + [token.idx + len(token.text)]
        for a, b in zip(edges, edges[1:]):
            words.append(text[a:b])
            spaces.append(False)
        spaces[-1] = bool(token.whitespace_)
    return Doc(doc.vocab, words=words, spaces=spaces), made


def set_sentences(doc: Doc, spans: Sequence[Span] = (), *, starts: Iterable[int] = ()) -> None:
    """Sentence starts from :func:`~spacy_bioner.corpus.sentences.set_sentence_starts` (sentencizer rule,
    abbreviations, line breaks, ``starts``), never inside one of ``spans``.

    doc (Doc): the Doc (changed in place).
    spans (Sequence[Span]): spans that must lie inside one sentence.
    starts (Iterable[int]): character offsets where a sentence starts (passage starts).
    """
    from .sentences import set_sentence_starts

    if not len(doc):
        return
    set_sentence_starts(doc, mentions=[(s.start_char, s.end_char) for s in spans], starts=starts)
    for span in spans:
        for token in span[1:]:
            token.is_sent_start = False


def standoff_to_doc(document: StandoffDocument, tokenizer: Tokenizer, *, alignment: str = "split",
                    overlaps: str = "longest", label_map: Optional[Mapping[str, Optional[str]]] = None,
                    summary: Optional[AlignmentSummary] = None) -> Doc:
    """A Doc of the document's text, with its mentions as ``doc.ents`` and sentence starts.

    document (StandoffDocument): the document (its ``text`` must be known).
    tokenizer (Tokenizer): text → Doc (a spaCy ``Language`` or tokenizer).
    alignment (str): a mention boundary inside a token: ``split`` the token, ``expand`` or
        ``contract`` the mention to token boundaries, or ``strict`` (an error).
    overlaps (str): nested/crossing mentions: keep the ``longest`` or the ``shortest``, or ``error``.
    label_map (Optional[Mapping[str, Optional[str]]]): source type → type in the Doc (None drops it);
        types not in the map are kept.
    summary (Optional[AlignmentSummary]): counts every mention's outcome here.
    RETURNS (Doc): the Doc, ``user_data["spacy_bioner.document"]`` the document id.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment {alignment!r}: choose one of {', '.join(ALIGNMENTS)}")
    if overlaps not in OVERLAPS:
        raise ValueError(f"overlaps {overlaps!r}: choose one of {', '.join(OVERLAPS)}")
    if document.text is None:
        raise CorpusFormatError("the document has no text (annotate's JSONL output holds offsets only)",
                                path=document.file)
    summary = summary if summary is not None else AlignmentSummary()
    file = document.file
    summary.documents[file] += 1
    summary.ignored[file].update(document.ignored)
    label_map = label_map or {}
    candidates: List[Mention] = []
    for m in document.mentions:
        summary.files[file].setdefault(m.type, TypeCounts()).read += 1
        if m.composite:
            summary.note(file, m, "dropped_composite")
        elif m.discontinuous:
            summary.note(file, m, "dropped_discontinuous",
                         detail="fragments " + ";".join(f"{s}-{e}" for s, e in m.segments))
        elif m.type in label_map and label_map[m.type] is None:
            summary.note(file, m, "dropped_label")
        else:
            candidates.append(m)
    chosen, dropped = _select(candidates, overlaps)
    for m, clash in dropped:
        summary.note(file, m, "dropped_overlap", detail=f"overlaps {clash.start}-{clash.end} {clash.type}")
    doc = tokenizer(document.text)
    cuts: set = set()
    if alignment == "split":
        doc, cuts = _split_tokens(doc, [x for m in chosen for x in (m.start, m.end)])
    spans: List[Tuple[Span, Mention, str, int]] = []
    for m in chosen:
        label = label_map.get(m.type) or m.type
        span = doc.char_span(m.start, m.end, label=label)
        if span is not None:
            spans.append((span, m, "split" if m.start in cuts or m.end in cuts else "kept", 0))
            continue
        if alignment == "strict":
            raise CorpusFormatError(f"mention {m.start}-{m.end} {m.text!r} does not start and end at token "
                                    "boundaries (--alignment strict)", path=file, line=_line(m))
        mode = "contract" if alignment in ("split", "contract") else "expand"
        span = doc.char_span(m.start, m.end, label=label, alignment_mode=mode)
        if span is None or not len(span):
            summary.note(file, m, "dropped_no_token", detail=f"no whole token inside ({mode})")
            continue
        change = abs(span.start_char - m.start) + abs(span.end_char - m.end)
        spans.append((span, m, "adjusted", change))
    # expanded spans may now overlap: resolve again, in the same order
    taken = set()
    order = sorted(spans, key=lambda s: ((-1 if overlaps == "longest" else 1) * len(s[0]), s[0].start))
    ents: List[Span] = []
    for span, m, outcome, change in order:
        if any(i in taken for i in range(span.start, span.end)):
            summary.note(file, m, "dropped_overlap", detail=f"overlaps another mention after {alignment}")
            continue
        taken.update(range(span.start, span.end))
        ents.append(span)
        detail = "" if outcome != "adjusted" else f"now {span.start_char}-{span.end_char} {span.text[:60]!r}"
        summary.note(file, m, outcome, change=change, detail=detail)
    ents.sort(key=lambda s: s.start)
    doc.ents = ents
    set_sentences(doc, ents, starts=[p.offset for p in document.passages[1:]])
    doc.user_data[USER_DATA_DOCUMENT] = document.id
    return doc


def doc_to_standoff(doc: Doc, *, default_id: str) -> StandoffDocument:
    """A Doc's text and entities as a standoff document (id from ``user_data``, else ``default_id``).

    doc (Doc): the Doc.
    default_id (str): the id when the Doc has none.
    RETURNS (StandoffDocument): mentions at ``doc.ents``' character offsets.
    """
    from ..types import Passage

    doc_id = str(doc.user_data.get(USER_DATA_DOCUMENT) or default_id)
    mentions = [Mention(start=e.start_char, end=e.end_char, type=e.label_, text=e.text) for e in doc.ents]
    return StandoffDocument(id=doc_id, text=doc.text, mentions=mentions, passages=[Passage(offset=0, text=doc.text)])


def standoff_docs(documents: Iterable[StandoffDocument], tokenizer: Tokenizer, *, alignment: str = "split",
                  overlaps: str = "longest", label_map: Optional[Mapping[str, Optional[str]]] = None,
                  summary: Optional[AlignmentSummary] = None) -> Iterable[Doc]:
    """:func:`standoff_to_doc` for each document, lazily (arguments as there)."""
    for document in documents:
        yield standoff_to_doc(document, tokenizer, alignment=alignment, overlaps=overlaps, label_map=label_map,
                              summary=summary)


def read_label_map(path) -> Dict[str, Optional[str]]:
    """A label map file: a YAML or JSON mapping of source type → target type (null drops the type).

    path (Union[str, Path]): ``.json``, ``.yml`` or ``.yaml``.
    RETURNS (Dict[str, Optional[str]]): the map; ValueError naming the file when it is not one.
    """
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such label map file")
    text = path.read_text(encoding="utf8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import srsly

            data = srsly.yaml_loads(text)
    except Exception as err:  # JSON and YAML parsers raise many kinds
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                         f"({' '.join(str(err).split())[:160]})") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                             for k, v in data.items()):
        raise ValueError(f"{path}: a label map is a mapping of type → type (or null to drop)")
    return dict(data)


def convert_standoff(path, *, fmt: Optional[str] = None, tokenizer: Optional[Tokenizer] = None,
                     alignment: str = "split", overlaps: str = "longest",
                     label_map: Optional[Mapping[str, Optional[str]]] = None) -> Tuple[List[Doc], AlignmentSummary]:
    """Every document of a standoff file or folder as a Doc, with the summary of what became of each mention.

    path (Union[str, Path]): input file or folder (see :func:`~spacy_bioner.corpus.standoff.read_documents`).
    fmt (Optional[str]): pubtator, bioc, brat or jsonl (with text); None: from the suffixes.
    tokenizer (Optional[Tokenizer]): None for :func:`default_tokenizer`.
    alignment (str): see :func:`standoff_to_doc`.
    overlaps (str): see :func:`standoff_to_doc`.
    label_map (Optional[Mapping[str, Optional[str]]]): see :func:`standoff_to_doc`.
    RETURNS (Tuple[List[Doc], AlignmentSummary]): the Docs and the summary (its counts add up).
    """
    from .standoff import read_documents

    summary = AlignmentSummary(label_map=dict(label_map or {}))
    tokenizer = tokenizer or default_tokenizer()
    docs = list(standoff_docs(read_documents(path, fmt), tokenizer, alignment=alignment, overlaps=overlaps,
                              label_map=label_map, summary=summary))
    summary.check()
    return docs, summary
