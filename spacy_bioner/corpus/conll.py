"""Token-per-line corpora (2-column TSV, CoNLL, ``token start end tag``) ↔ spaCy Docs.

Reading is two steps so each can be tested alone: :func:`read_documents` turns
the file into :class:`~spacy_bioner.types.RawDocument` objects (columns,
sentences, ``-DOCSTART-``; every error names ``file:line``), and
:func:`build_docs` decodes the tags with :mod:`spacy_bioner.corpus.schemes` and
makes ``Doc`` objects. :func:`write_docs` is the way back.
"""
from pathlib import Path
from typing import IO, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from ..errors import CorpusFormatError
from ..types import ConversionStats, EntitySpan, RawDocument, Sentence
from .schemes import DEFAULT_UNTYPED_LABEL, SCHEMES, TagError, TagParser, decode, detect_scheme, encode
from .sentences import sentences

DOCSTART = "-DOCSTART-"
#: Keys under which conversion facts are kept in ``doc.user_data``.
USER_DATA_DOCSTART = "spacy_bioner.docstart"
USER_DATA_UNTYPED = "spacy_bioner.untyped_label"
CORPUS_SUFFIXES = (".tsv", ".txt", ".conll", ".iob", ".iob2", ".bio", ".bioes", ".tag")


def _decode_text(data: bytes, path: Union[str, Path]) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        line_end = data.find(b"\n", err.start)
        raw = data[line_start : line_end if line_end >= 0 else len(data)]
        raise CorpusFormatError(
            f"invalid UTF-8 (byte 0x{data[err.start]:02x} at column "
            f"{err.start - line_start + 1}); re-encode the file as UTF-8",
            path=path,
            line=line,
            text=raw.decode("utf-8", errors="replace"),
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _split_columns(line: str, tab: bool) -> List[str]:
    return line.split("\t") if tab else line.split()


def read_documents(path: Union[str, Path], *, text: Optional[str] = None) -> List[RawDocument]:
    """Read a token-per-line file into documents and sentences.

    Token is the first column, tag the last; every token line must have as
    many columns as the first one. Columns are split on TABs when the first
    token line has one, else on whitespace. With 4 columns whose middle two are
    integers (``token start end tag``) they are read as character offsets and
    give each token's trailing whitespace. ``-DOCSTART-`` lines end a document,
    whatever their column count (a bare ``-DOCSTART-``, ``-DOCSTART- -X- O O``);
    lines starting with ``#`` are ordinary tokens.

    path (Union[str, Path]): the file (used for reading and in errors).
    text (Optional[str]): the file's content, if already in memory.
    RETURNS (List[RawDocument]): documents in file order (empty ones kept).
    """
    if text is None:
        text = _decode_text(Path(path).read_bytes(), path)
    docs: List[RawDocument] = [RawDocument()]
    sent = Sentence()
    ncols = 0
    tab = True
    offsets = False
    ends: List[int] = []
    starts: List[int] = []

    def end_sentence() -> None:
        nonlocal sent, ends, starts
        if sent.words:
            if offsets:
                sent.spaces = [starts[k + 1] > ends[k] for k in range(len(ends) - 1)] + [True]
            docs[-1].sentences.append(sent)
        sent = Sentence()
        ends, starts = [], []

    for lineno, line in enumerate(text.split("\n"), start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not line.strip():
            end_sentence()
            continue
        if line.split(None, 1)[0] == DOCSTART:
            end_sentence()
            docs.append(RawDocument(docstart=True))
            continue
        if ncols == 0:
            tab = "\t" in line
            ncols = len(_split_columns(line, tab))
            if ncols < 2:
                raise CorpusFormatError(
                    "expected at least 2 columns (token ... tag), found 1",
                    path=path, line=lineno, text=line,
                )
            if ncols == 4:
                cols = _split_columns(line, tab)
                offsets = cols[1].isdigit() and cols[2].isdigit()
        cols = _split_columns(line, tab)
        if len(cols) != ncols:
            sep = "TAB" if tab else "whitespace"
            raise CorpusFormatError(
                f"expected {ncols} {sep}-separated columns like the first token line, "
                f"found {len(cols)}",
                path=path, line=lineno, text=line,
            )
        word = cols[0]
        if not word.strip():
            raise CorpusFormatError("empty token in the first column", path=path, line=lineno, text=line)
        if offsets:
            if not (cols[1].isdigit() and cols[2].isdigit()):
                raise CorpusFormatError(
                    "expected integer character offsets in columns 2 and 3",
                    path=path, line=lineno, text=line,
                )
            starts.append(int(cols[1]))
            ends.append(int(cols[2]))
        sent.words.append(word)
        sent.tags.append(cols[-1].strip())
        sent.lines.append(lineno)
    end_sentence()
    if not docs[0].sentences and len(docs) > 1:
        docs.pop(0)
    return docs


def _chunks(raw_docs: Sequence[RawDocument], n_sents: int) -> Iterator[RawDocument]:
    """Group sentences into documents: by ``-DOCSTART-``, then ``n_sents``.

    With ``n_sents=0`` a file with ``-DOCSTART-`` lines keeps its documents and
    a file without them gives one document per sentence.
    """
    for raw in raw_docs:
        size = n_sents or (0 if raw.docstart else 1)
        if size <= 0 or len(raw.sentences) <= size:
            yield raw
            continue
        for k in range(0, len(raw.sentences), size):
            yield RawDocument(sentences=raw.sentences[k : k + size], docstart=raw.docstart and k == 0)


def build_docs(
    raw_docs: Sequence[RawDocument],
    *,
    path: Union[str, Path] = "<input>",
    vocab: Optional[Vocab] = None,
    scheme: str = "auto",
    untyped_label: str = DEFAULT_UNTYPED_LABEL,
    n_sents: int = 0,
    strict: bool = False,
    stats: Optional[ConversionStats] = None,
) -> List[Doc]:
    """Decode tags and build ``Doc`` objects with entities and sentence starts.

    raw_docs (Sequence[RawDocument]): output of :func:`read_documents`.
    path (Union[str, Path]): the source, for error messages.
    vocab (Optional[Vocab]): vocab for the Docs (a new one if None).
    scheme (str): one of ``auto iob1 iob2 bioes bilou``.
    untyped_label (str): label for bare ``B``/``I`` tags.
    n_sents (int): sentences per Doc (0: by ``-DOCSTART-``, else per sentence).
    strict (bool): make every repair an error instead of counting it.
    stats (Optional[ConversionStats]): filled in with counts and repairs.
    RETURNS (List[Doc]): one Doc per document; empty documents are counted, not built.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    vocab = vocab if vocab is not None else Vocab()
    stats = stats if stats is not None else ConversionStats()
    parser = TagParser(untyped_label=untyped_label)
    parsed: List[List[List[Tuple[str, Optional[str]]]]] = []
    for raw in raw_docs:
        doc_parsed = []
        for sent in raw.sentences:
            try:
                doc_parsed.append([parser(t) for t in sent.tags])
            except TagError as err:
                bad = next(k for k, t in enumerate(sent.tags) if _bad_tag(parser, t))
                raise CorpusFormatError(str(err), path=path, line=sent.lines[bad], text=sent.tags[bad]) from None
        parsed.append(doc_parsed)
    if scheme == "auto":
        scheme = detect_scheme([s for d in parsed for s in d])
    stats.scheme = scheme
    if parser.saw_untyped:
        stats.untyped_label = untyped_label
    docs: List[Doc] = []
    for raw, doc_parsed in zip(raw_docs, parsed):
        for sent, tags in zip(raw.sentences, doc_parsed):
            sent.entities = _decode_sentence(sent, tags, scheme=scheme, strict=strict, path=path, stats=stats)
    for raw in _chunks(raw_docs, n_sents):
        if not raw.sentences:
            stats.empty_documents += 1
            continue
        docs.append(_make_doc(vocab, raw, stats, stats.untyped_label))
    return docs


def _bad_tag(parser: TagParser, tag: str) -> bool:
    try:
        parser(tag)
    except TagError:
        return True
    return False


def _decode_sentence(
    sent: Sentence,
    tags: Sequence[Tuple[str, Optional[str]]],
    *,
    scheme: str,
    strict: bool,
    path: Union[str, Path],
    stats: ConversionStats,
) -> List[EntitySpan]:
    def on_repair(index: int, kind: str, detail: str) -> None:
        if strict:
            raise CorpusFormatError(
                f"{detail}: {kind} violates scheme {scheme} (--strict); drop --strict to repair it",
                path=path, line=sent.lines[index], text=f"{sent.words[index]}\t{sent.tags[index]}",
            )
        stats.repairs[kind] += 1

    try:
        return decode(tags, scheme=scheme, on_repair=on_repair)
    except TagError as err:
        index = err.index or 0
        raise CorpusFormatError(str(err), path=path, line=sent.lines[index], text=sent.tags[index]) from None


def _make_doc(vocab: Vocab, raw: RawDocument, stats: ConversionStats, untyped: Optional[str]) -> Doc:
    words: List[str] = []
    spaces: List[bool] = []
    sent_starts: List[bool] = []
    ents: List[str] = []
    for sent in raw.sentences:
        words.extend(sent.words)
        spaces.extend(sent.spaces if sent.spaces is not None else [True] * len(sent.words))
        sent_starts.append(True)
        sent_starts.extend([False] * (len(sent.words) - 1))
        ents.extend(encode(sent.entities, len(sent.words), scheme="iob2"))
        stats.entities.update(label for _, _, label in sent.entities)
        stats.sentences += 1
        stats.tokens += len(sent.words)
    spaces[-1] = False
    doc = Doc(vocab, words=words, spaces=spaces, sent_starts=sent_starts, ents=ents)
    if raw.docstart:
        doc.user_data[USER_DATA_DOCSTART] = True
    if untyped:
        doc.user_data[USER_DATA_UNTYPED] = untyped
    stats.documents += 1
    return doc


def read_docs(
    path: Union[str, Path],
    *,
    vocab: Optional[Vocab] = None,
    scheme: str = "auto",
    untyped_label: str = DEFAULT_UNTYPED_LABEL,
    n_sents: int = 0,
    strict: bool = False,
    stats: Optional[ConversionStats] = None,
) -> List[Doc]:
    """Read a token-per-line file into Docs (see :func:`build_docs` for args)."""
    raw = read_documents(path)
    return build_docs(
        raw, path=path, vocab=vocab, scheme=scheme, untyped_label=untyped_label,
        n_sents=n_sents, strict=strict, stats=stats,
    )


def corpus_files(path: Path) -> List[Path]:
    """The corpus files in a directory (or the path itself if it is a file)."""
    if path.is_file():
        return [path]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: no corpus files ({', '.join(CORPUS_SUFFIXES)}) in this directory")
    return files


def doc_tags(doc: Doc, *, scheme: str = "iob2", bare_label: Optional[str] = None) -> List[List[str]]:
    """The tags of each sentence of a Doc, in a scheme.

    doc (Doc): a Doc with entities (sentence starts optional).
    scheme (str): ``iob1``, ``iob2``, ``bioes`` or ``bilou``.
    bare_label (Optional[str]): write this label as bare ``B``/``I`` tags.
    RETURNS (List[List[str]]): one list of tags per sentence.
    """
    out = []
    for sent in sentences(doc):
        spans = [
            (max(e.start, sent.start) - sent.start, min(e.end, sent.end) - sent.start, e.label_)
            for e in doc.ents
            if e.start < sent.end and e.end > sent.start
        ]
        out.append(encode(spans, len(sent), scheme=scheme, bare_label=bare_label))
    return out


def write_docs(
    docs: Iterable[Doc],
    out: IO[str],
    *,
    scheme: str = "iob2",
    untyped: Optional[bool] = None,
) -> int:
    """Write Docs as a 2-column TSV: token, TAB, tag; a blank line after each sentence.

    docs (Iterable[Doc]): the documents.
    out (IO[str]): a text stream.
    scheme (str): ``iob1``, ``iob2``, ``bioes`` or ``bilou``.
    untyped (Optional[bool]): write the untyped label as bare tags; None: as
        the Doc was read (``doc.user_data``).
    RETURNS (int): number of tokens written.
    """
    n = 0
    for doc in docs:
        bare = doc.user_data.get(USER_DATA_UNTYPED) if untyped is not False else None
        if doc.user_data.get(USER_DATA_DOCSTART):
            out.write(f"{DOCSTART}\tO\n\n")
        for sent, tags in zip(sentences(doc), doc_tags(doc, scheme=scheme, bare_label=bare)):
            out.write("".join(f"{tok.text}\t{tag}\n" for tok, tag in zip(sent, tags)))
            out.write("\n")
            n += len(sent)
    return n
