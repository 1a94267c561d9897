"""Documents in a standoff format: PubTator, BioC XML, brat (gzip too) and ``annotate``'s JSONL.

The one module that reads and writes "documents with character-offset mentions".
A :class:`StandoffDocument` holds the document's text exactly as the format
defines it (PubTator: title, one space, abstract; BioC: each passage at its
offset, gaps as spaces; brat: the ``.txt``) and its mentions at character (not
byte) offsets into that text. Readers check every mention's text against the
document text (a mismatch is a :class:`~spacy_bioner.errors.CorpusFormatError`
naming ``file:line``) and count what they do not read (relation lines, notes…)
in :attr:`StandoffDocument.ignored`.
"""
import gzip
import io
import json
import re
import xml.sax
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, Optional, TextIO, Tuple, Union
from xml.sax.saxutils import escape as _escape
from xml.sax.saxutils import quoteattr

from ..errors import CorpusFormatError
from ..types import Passage

#: Formats :func:`read_documents` reads, and those the writers write.
READ_FORMATS = ("pubtator", "bioc", "brat", "jsonl")
WRITE_FORMATS = ("pubtator", "bioc", "brat")
#: File suffixes (before ``.gz``) and the format they imply.
SUFFIXES = {".pubtator": "pubtator", ".txt": "pubtator", ".xml": "bioc", ".bioc": "bioc",
            ".jsonl": "jsonl", ".ndjson": "jsonl", ".ann": "brat", ".a1": "brat"}
#: brat annotation files, in the order they are looked for beside a ``.txt``.
BRAT_SUFFIXES = (".ann", ".a1")
#: A PubTator text line, ``id|kind|text`` (the id holds no ``|`` or TAB).
PUBTATOR_TEXT = re.compile(r"^([^|\t]+)\|([a-zA-Z]+)\|(.*)$")
_BOM = b"\xef\xbb\xbf"


class DocumentFormatError(CorpusFormatError):
    """One document (PubTator block, BioC document) or a whole XML file could not be read.

    doc_id (Optional[str]): the document's id when it was read before the problem.
    column (Optional[int]): the column of an XML syntax error.
    xml_error (Optional[str]): the XML parser's message alone.
    """

    def __init__(self, message: str, *, path: Union[str, Path, None] = None, line: Optional[int] = None,
                 text: Optional[str] = None, doc_id: Optional[str] = None, column: Optional[int] = None,
                 xml_error: Optional[str] = None) -> None:
        super().__init__(message, path=path, line=line, text=text)
        self.doc_id, self.column, self.xml_error = doc_id, column, xml_error


@dataclass
class Mention:
    """A mention at document character offsets.

    start (int): offset of the first character.
    end (int): offset after the last character.
    type (str): the entity type as written in the source.
    text (str): the mention's text as written in the source.
    source (str): where it was read, ``file:line``.
    id (Optional[str]): its id in the source (brat ``T1``, BioC annotation id), if any.
    concept (Optional[str]): normalisation id(s) (PubTator's sixth column, BioC ``identifier``).
    segments (Tuple[Tuple[int, int], ...]): the fragments of a discontinuous mention (empty otherwise);
        ``start``/``end`` then span them all.
    composite (bool): a PubTator composite mention (concept ids joined by ``|``).
    """

    start: int
    end: int
    type: str
    text: str
    source: str = ""
    id: Optional[str] = None
    concept: Optional[str] = None
    segments: Tuple[Tuple[int, int], ...] = ()
    composite: bool = False

    @property
    def discontinuous(self) -> bool:
        """More than one fragment."""
        return len(self.segments) > 1


@dataclass
class StandoffDocument:
    """A document with its mentions.

    id (str): the document id (PMID, BioC ``<id>``, brat file name).
    text (Optional[str]): the document text; None where the format has none (annotate's JSONL output).
    mentions (List[Mention]): in source order.
    passages (List[Passage]): the passages at their document offsets (one for brat).
    source (str): where the document was read, ``file:line``.
    ignored (Counter): lines/elements not read as mentions, by kind (``relation lines``…).
    """

    id: str
    text: Optional[str]
    mentions: List[Mention] = field(default_factory=list)
    passages: List[Passage] = field(default_factory=list)
    source: str = ""
    ignored: Counter = field(default_factory=Counter)

    @property
    def file(self) -> str:
        """The file the document was read from (``source`` without ``:line``)."""
        return re.sub(r":\d+$", "", self.source)


# ---------------------------------------------------------------- formats and files
def open_binary(path: Path) -> IO[bytes]:
    """A file for reading bytes, gunzipped when it ends in ``.gz``."""
    return gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")


def _open_text(path: Path) -> TextIO:
    """A file as UTF-8 text (BOM dropped), gunzipped for ``.gz``, line ends left as they are."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig", newline="")


def _read_text(path: Path) -> str:
    with _open_text(path) as f:
        try:
            return f.read()
        except UnicodeDecodeError as err:
            raise CorpusFormatError(f"not UTF-8 (byte {err.start})", path=path) from None


def suffix_of(path: Path) -> str:
    """The last suffix before ``.gz``, lower-cased (``x.JSONL.gz`` → ``.jsonl``); "" when none."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _strip_suffix(path: Path) -> Path:
    """``a/b.txt.gz`` → ``a/b``."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    return path.with_name(name.rsplit(".", 1)[0] if "." in name else name)


def _brat_annotation(txt: Path) -> Optional[Path]:
    base = _strip_suffix(txt)
    for suffix in BRAT_SUFFIXES:
        for gz in ("", ".gz"):
            candidate = base.with_name(base.name + suffix + gz)
            if candidate.is_file():
                return candidate
    return None


def _looks_like_pubtator(path: Path) -> bool:
    try:
        with _open_text(path) as f:
            for _ in range(50):
                line = f.readline()
                if not line:
                    return False
                if line.strip():
                    return bool(PUBTATOR_TEXT.match(line.rstrip("\r\n")))
    except (OSError, UnicodeDecodeError):
        return False
    return False


def detect_format(path: Path) -> Optional[str]:
    """The standoff format of a file or folder, or None when it is none of them.

    A folder holding ``.ann``/``.a1`` files is brat; a ``.txt`` beside a ``.ann`` is
    brat, a ``.txt`` whose first line is ``id|t|…`` PubTator.
    path (Path): file or folder.
    RETURNS (Optional[str]): pubtator, bioc, brat, jsonl or None.
    """
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
        if any(suffix_of(p) in BRAT_SUFFIXES for p in files):
            return "brat"
        found = {detect_format(p) for p in files} - {None}
        return found.pop() if len(found) == 1 else None
    suffix = suffix_of(path)
    if suffix in BRAT_SUFFIXES:
        return "brat"
    if suffix == ".txt":
        if _brat_annotation(path) is not None:
            return "brat"
        return "pubtator" if _looks_like_pubtator(path) else None
    return SUFFIXES.get(suffix)


def standoff_files(path: Path, fmt: str) -> List[Path]:
    """The files of ``path`` to read as ``fmt`` (for brat: the ``.txt`` files that have annotations).

    path (Path): file or folder.
    fmt (str): the format.
    RETURNS (List[Path]): sorted; FileNotFoundError when there are none.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if fmt == "brat" and suffix_of(path) in BRAT_SUFFIXES:
            txt = _strip_suffix(path)
            for gz in ("", ".gz"):
                if txt.with_name(txt.name + ".txt" + gz).is_file():
                    return [txt.with_name(txt.name + ".txt" + gz)]
            raise FileNotFoundError(f"{path}: no .txt beside this brat annotation file")
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    if fmt == "brat":
        found = [p for p in files if suffix_of(p) == ".txt" and _brat_annotation(p) is not None]
    else:
        found = [p for p in files if detect_format(p) == fmt]
    if not found:
        raise FileNotFoundError(f"{path}: a folder with no {fmt} files")
    return found


def read_documents(path: Union[str, Path], fmt: Optional[str] = None, *,
                   root: Optional[Path] = None) -> Iterator[StandoffDocument]:
    """Every document of a standoff file or folder, in order.

    path (Union[str, Path]): a PubTator/BioC/JSONL file (``.gz`` too), a brat ``.txt``/``.ann``,
        or a folder of such files.
    fmt (Optional[str]): pubtator, bioc, brat or jsonl; None: from the suffixes (see :func:`detect_format`).
    root (Optional[Path]): sources are shown relative to this folder (default: the input's folder).
    RETURNS (Iterator[StandoffDocument]): read lazily; a bad mention is a CorpusFormatError ``file:line``.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if fmt is None:
        fmt = detect_format(path)
        if fmt is None:
            raise ValueError(f"{path}: cannot tell the standoff format from the file names; "
                             f"pass the format ({', '.join(READ_FORMATS)})")
    if fmt not in READ_FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(READ_FORMATS)}")
    files = standoff_files(path, fmt)
    base = root or (path if path.is_dir() else path.parent)
    return _documents(files, fmt, base)


def _documents(files: List[Path], fmt: str, base: Path) -> Iterator[StandoffDocument]:
    readers = {"pubtator": read_pubtator, "bioc": read_bioc, "brat": read_brat, "jsonl": read_jsonl}
    for file in files:
        name = str(file.relative_to(base)) if file.is_relative_to(base) else str(file)
        yield from readers[fmt](file, name=name)


def _check_mention(mention: Mention, text: str, *, path: str, line: Optional[int]) -> None:
    """The mention's offsets lie in the text and its text is ``text[start:end]`` (fragments joined by a space)."""
    if not 0 <= mention.start < mention.end <= len(text):
        raise CorpusFormatError(f"offsets {mention.start}-{mention.end} outside the document text "
                                f"(0-{len(text)})", path=path, line=line)
    parts = mention.segments or ((mention.start, mention.end),)
    for s, e in parts:
        if not 0 <= s < e <= len(text):
            raise CorpusFormatError(f"fragment {s}-{e} outside the document text (0-{len(text)})",
                                    path=path, line=line)
    found = " ".join(text[s:e] for s, e in parts)
    if found != mention.text and not (mention.discontinuous and found.replace(" ", "") ==
                                      mention.text.replace(" ", "")):
        raise CorpusFormatError(f"mention text {mention.text!r} is not the document's text at "
                                f"{mention.start}-{mention.end}, {found!r}", path=path, line=line)


# ---------------------------------------------------------------- PubTator
def pubtator_blocks(f: IO[bytes]) -> Iterator[List[Tuple[int, bytes]]]:
    """The blank-line separated blocks of a PubTator file, as bytes (each block decodes on its own,
    so one bad block spoils nothing else).

    f (IO[bytes]): the open file.
    RETURNS (Iterator[List[Tuple[int, bytes]]]): each block's lines as (line number, line without its end).
    """
    block: List[Tuple[int, bytes]] = []
    for n, raw in enumerate(f, start=1):
        line = raw.rstrip(b"\r\n")
        if line.strip():
            block.append((n, line))
        elif block:
            yield block
            block = []
    if block:
        yield block


@dataclass
class PubTatorBlock:
    """A PubTator block split into its text and annotation lines (nothing checked beyond that).

    id (Optional[str]): the id of its text lines (None: it has none).
    texts (List[Tuple[int, str, str]]): ``(line, kind, text)`` of each ``id|kind|text`` line.
    annotations (List[Tuple[int, str]]): ``(line, line)`` of each other line (they all hold a TAB).
    """

    id: Optional[str]
    texts: List[Tuple[int, str, str]] = field(default_factory=list)
    annotations: List[Tuple[int, str]] = field(default_factory=list)

    def passages(self, *, keep_empty: bool) -> List[Passage]:
        """The text lines as passages at their document offsets (each text, then one space).

        keep_empty (bool): keep an empty text after the first (else it adds nothing, not even the space).
        """
        passages: List[Passage] = []
        offset = 0
        for _, kind, text in self.texts:
            if passages and not text and not keep_empty:
                continue
            passages.append(Passage(offset=offset, text=text, infons={"type": kind}))
            offset += len(text) + 1
        return passages


def parse_pubtator_block(block: List[Tuple[int, bytes]], name: str) -> PubTatorBlock:
    """Split a PubTator block into text and annotation lines.

    block (List[Tuple[int, bytes]]): from :func:`pubtator_blocks`.
    name (str): the file name shown in errors.
    RETURNS (PubTatorBlock): a DocumentFormatError (``file:line``, the id read so far) for a line that is
        not UTF-8, a text line of another id, or a line that is neither text nor annotation.
    """
    parsed = PubTatorBlock(id=None)
    for n, raw in block:
        try:
            line = raw.decode("utf8")
        except UnicodeDecodeError as err:
            raise DocumentFormatError(f"invalid UTF-8 at byte {err.start}", path=name, line=n,
                                      doc_id=parsed.id) from None
        match = PUBTATOR_TEXT.match(line)
        if match:
            pid, kind, text = match.groups()
            if parsed.id is not None and pid != parsed.id:
                raise DocumentFormatError(f"id {pid} inside the block of {parsed.id} (a blank line must separate "
                                          "documents)", path=name, line=n, doc_id=parsed.id)
            parsed.id = pid
            parsed.texts.append((n, kind, text))
        elif "\t" in line:
            parsed.annotations.append((n, line))
        else:
            raise DocumentFormatError("neither `id|t|text` nor an annotation line", path=name, line=n, text=line,
                                      doc_id=parsed.id)
    return parsed


def read_pubtator(path: Path, *, name: Optional[str] = None) -> Iterator[StandoffDocument]:
    """PubTator: ``id|t|title``, ``id|a|abstract``, ``id<TAB>start<TAB>end<TAB>text<TAB>type[<TAB>ids]``.

    The text is the title, one space and the abstract (the title alone when the
    abstract is missing or empty). Composite mentions (ids joined by ``|``) are
    read with ``composite=True``; relation lines (``id<TAB>CID<TAB>…``) are counted
    in ``ignored``.
    path (Path): the file (``.gz`` too).
    name (Optional[str]): the name shown in sources and errors.
    RETURNS (Iterator[StandoffDocument]): one per blank-line separated block.
    """
    name = name or str(path)
    with open_binary(path) as f:
        if f.read(len(_BOM)) != _BOM:
            f.seek(0)
        for block in pubtator_blocks(f):
            yield _pubtator_block(block, name)


def _pubtator_block(block: List[Tuple[int, bytes]], name: str) -> StandoffDocument:
    parsed = parse_pubtator_block(block, name)
    doc_id = parsed.id
    first_annotation = parsed.annotations[0][0] if parsed.annotations else None
    for n, _, _ in parsed.texts:
        if first_annotation is not None and n > first_annotation:
            raise CorpusFormatError("a text line after annotation lines", path=name, line=n)
    passages = parsed.passages(keep_empty=False)
    mentions: List[Tuple[int, Mention]] = []
    ignored: Counter = Counter()
    for n, line in parsed.annotations:
        cols = line.split("\t")
        if doc_id is not None and cols[0] != doc_id:
            raise CorpusFormatError(f"id {cols[0]} inside the block of {doc_id}", path=name, line=n)
        doc_id = cols[0]
        if len(cols) >= 5 and cols[1].isdigit() and cols[2].isdigit():
            concept = cols[5] if len(cols) > 5 and cols[5] not in ("", "-") else None
            composite = concept is not None and "|" in concept
            mentions.append((n, Mention(start=int(cols[1]), end=int(cols[2]), text=cols[3], type=cols[4],
                                        concept=concept, composite=composite, source=f"{name}:{n}")))
        elif len(cols) >= 3 and not cols[1].isdigit():
            ignored["relation lines"] += 1
        else:
            raise CorpusFormatError("an annotation line needs id, start, end, text and type, TAB-separated",
                                    path=name, line=n, text=line)
    text = " ".join(p.text for p in passages)
    for n, mention in mentions:
        _check_mention(mention, text, path=name, line=n)
    assert doc_id is not None
    return StandoffDocument(id=doc_id, text=text, mentions=[m for _, m in mentions], passages=passages,
                            source=f"{name}:{block[0][0]}", ignored=ignored)


def _one_line(text: str) -> str:
    """PubTator is line-based: a newline or tab becomes a space (offsets unchanged)."""
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


def pubtator_text_line(doc_id: str, kind: str, text: str) -> str:
    """``id|kind|text`` and a newline (``kind``: ``t`` title, ``a`` abstract)."""
    return f"{doc_id}|{kind}|{_one_line(text)}\n"


def pubtator_mention_line(doc_id: str, start: int, end: int, text: str, type: str, *,
                          concept: Optional[str] = None) -> str:
    """A mention line: id, start, end, text, type and concept id(s) (``-`` when none), TAB-separated."""
    return f"{doc_id}\t{start}\t{end}\t{_one_line(text)}\t{type}\t{concept or '-'}\n"


def pubtator_document(doc: StandoffDocument) -> str:
    """A document as PubTator: its passages as ``|t|``/``|a|`` lines (one ``|t|`` line holding the whole
    text when the passages are not PubTator's title + space + abstract), then one line per mention."""
    text = doc.text or ""
    out = io.StringIO()
    parts = doc.passages
    fits = (len(parts) in (1, 2) and " ".join(p.text for p in parts) == text
            and (len(parts) == 1 or parts[1].offset == len(parts[0].text) + 1))
    if fits:
        out.write(pubtator_text_line(doc.id, "t", parts[0].text))
        out.write(pubtator_text_line(doc.id, "a", parts[1].text if len(parts) == 2 else ""))
    else:
        out.write(pubtator_text_line(doc.id, "t", text) + pubtator_text_line(doc.id, "a", ""))
    for m in doc.mentions:
        out.write(pubtator_mention_line(doc.id, m.start, m.end, m.text, m.type, concept=m.concept))
    out.write("\n")
    return out.getvalue()


# ---------------------------------------------------------------- BioC
@dataclass
class BioCUnit:
    """A ``<passage>`` or ``<sentence>`` as written (nothing checked).

    kind (str): passage or sentence.
    line (int): where it starts.
    top (bool): a passage directly inside the ``<document>``.
    offset (Optional[str]): its ``<offset>`` text (None: no ``<offset>``); offset_line, where that was.
    text (Optional[str]): its ``<text>`` (None: no ``<text>``).
    infons (Dict[str, str]): its infons.
    """

    kind: str
    line: int
    top: bool = False
    offset: Optional[str] = None
    offset_line: int = 0
    text: Optional[str] = None
    infons: Dict[str, str] = field(default_factory=dict)


@dataclass
class BioCAnnotation:
    """An ``<annotation>`` as written: id, infons, locations (``offset``, ``length`` attributes and line)
    and text."""

    id: Optional[str]
    line: int
    infons: Dict[str, str] = field(default_factory=dict)
    locations: List[Tuple[Optional[str], Optional[str], int]] = field(default_factory=list)
    text: str = ""


@dataclass
class BioCElement:
    """A ``<document>`` as written: id, passages and sentences (in the order they end), annotations.

    ignored (Counter): relations, by kind.
    """

    id: str
    line: int
    units: List[BioCUnit] = field(default_factory=list)
    annotations: List[BioCAnnotation] = field(default_factory=list)
    ignored: Counter = field(default_factory=Counter)


class _BioCHandler(xml.sax.ContentHandler):
    """Streams BioC documents as :class:`BioCElement` (structure only: what they mean is checked later)."""

    def __init__(self) -> None:
        super().__init__()
        self.locator: Optional[xml.sax.xmlreader.Locator] = None
        self.done: List[BioCElement] = []
        self.stack: List[str] = []
        self.chars: List[str] = []
        self.doc: Optional[BioCElement] = None
        self.units: List[BioCUnit] = []  # passage / sentence being read, innermost last
        self.ann: Optional[BioCAnnotation] = None
        self.infon_key: Optional[str] = None

    def setDocumentLocator(self, locator) -> None:  # noqa: N802 (SAX API)
        self.locator = locator

    def _line(self) -> int:
        return self.locator.getLineNumber() if self.locator is not None else 0

    def skippedEntity(self, name) -> None:  # noqa: N802
        # an entity the (unread) DTD might define: an error, as a parser without a DTD says
        column = self.locator.getColumnNumber() if self.locator is not None else 0
        raise xml.sax.SAXParseException(f"undefined entity &{name};", None, _Where(self._line(), column))

    def startElement(self, tag, attrs) -> None:  # noqa: N802
        parent = self.stack[-1] if self.stack else ""
        self.stack.append(tag)
        self.chars = []
        if tag == "document":
            self.doc = BioCElement(id="", line=self._line())
        elif self.doc is None:
            return
        elif tag in ("passage", "sentence"):
            self.units.append(BioCUnit(kind=tag, line=self._line(), top=tag == "passage" and parent == "document"))
        elif tag == "annotation":
            self.ann = BioCAnnotation(id=attrs.get("id"), line=self._line())
        elif tag == "location" and self.ann is not None:
            self.ann.locations.append((attrs.get("offset"), attrs.get("length"), self._line()))
        elif tag == "relation":
            self.doc.ignored["relations"] += 1
        elif tag == "infon":
            self.infon_key = attrs.get("key", "")

    def characters(self, content) -> None:
        self.chars.append(content)

    def endElement(self, tag) -> None:  # noqa: N802
        self.stack.pop()
        content = "".join(self.chars)
        self.chars = []
        if self.doc is None:
            return
        parent = self.stack[-1] if self.stack else ""
        unit = self.units[-1] if self.units else None
        if tag == "id" and parent == "document":
            self.doc.id = content.strip()
        elif tag == "offset" and unit is not None and parent == unit.kind:
            unit.offset, unit.offset_line = content, self._line()
        elif tag == "text" and parent == "annotation" and self.ann is not None:
            self.ann.text = content
        elif tag == "text" and unit is not None and parent == unit.kind:
            unit.text = content
        elif tag == "infon":
            target = (self.ann.infons if parent == "annotation" and self.ann is not None
                      else unit.infons if unit is not None and parent in ("passage", "sentence") else None)
            if target is not None:
                target[self.infon_key or ""] = content
        elif tag in ("passage", "sentence") and unit is not None:
            self.doc.units.append(self.units.pop())
        elif tag == "annotation" and self.ann is not None:
            self.doc.annotations.append(self.ann)
            self.ann = None
        elif tag == "document":
            self.done.append(self.doc)
            self.doc = None


class _Where:
    """A locator at a fixed place (for errors raised by the handler)."""

    def __init__(self, line: int, column: int) -> None:
        self.line, self.column = line, column

    def getLineNumber(self) -> int:  # noqa: N802
        return self.line

    def getColumnNumber(self) -> int:  # noqa: N802
        return self.column

    def getSystemId(self) -> None:  # noqa: N802
        return None

    def getPublicId(self) -> None:  # noqa: N802
        return None


def bioc_elements(path: Path, *, name: Optional[str] = None) -> Iterator[BioCElement]:
    """The ``<document>`` elements of a BioC XML file (``.gz`` too), streamed, as written.

    path (Path): the file.
    name (Optional[str]): the name shown in errors.
    RETURNS (Iterator[BioCElement]): invalid XML is a DocumentFormatError (``file:line``, ``column``,
        ``xml_error``) raised after the documents before it.
    """
    name = name or str(path)
    handler = _BioCHandler()
    parser = xml.sax.make_parser()
    parser.setFeature(xml.sax.handler.feature_external_ges, False)
    parser.setContentHandler(handler)
    from xml.sax.expatreader import ExpatLocator

    handler.setDocumentLocator(ExpatLocator(parser))  # feed() does not set it (parse() does)
    with open_binary(path) as raw:
        try:
            parser.feed(b"")  # starts the parser: an empty file is then "no element found", as it should be
            while True:
                chunk = raw.read(1 << 16)
                if not chunk:
                    break
                parser.feed(chunk)
                yield from handler.done
                handler.done = []
            parser.close()
        except xml.sax.SAXParseException as err:
            yield from handler.done
            raise DocumentFormatError(f"invalid XML ({err.getMessage()})", path=name, line=err.getLineNumber(),
                                      column=err.getColumnNumber(), xml_error=err.getMessage()) from None
    yield from handler.done


def _bioc_mention(ann: BioCAnnotation, doc: BioCElement, name: str) -> Optional[Mention]:
    """The mention an annotation stands for (None, counted in ``ignored``, when it has no location)."""
    locations = []
    for offset, length, line in ann.locations:
        try:
            locations.append((int(offset), int(length)))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise CorpusFormatError("a <location> needs integer offset and length", path=name, line=line) from None
    if not locations:
        doc.ignored["annotations without location"] += 1
        return None
    infons = ann.infons
    kind = infons.get("type") or infons.get("Type") or infons.get("category")
    if not kind:
        raise CorpusFormatError("an annotation without a type infon", path=name, line=ann.line)
    segments = tuple(sorted((o, o + n) for o, n in locations))
    concept = infons.get("identifier") or infons.get("Identifier") or infons.get("MESH") or None
    return Mention(start=segments[0][0], end=max(e for _, e in segments), type=kind, text=ann.text,
                   source=f"{name}:{ann.line}", id=ann.id, concept=concept,
                   segments=segments if len(segments) > 1 else ())


def _bioc_document(doc: BioCElement, name: str) -> StandoffDocument:
    units = []
    for unit in doc.units:
        if unit.offset is not None:
            try:
                int(unit.offset.strip())
            except ValueError:
                raise CorpusFormatError(f"{unit.kind} offset {unit.offset.strip()!r} is not a number",
                                        path=name, line=unit.offset_line) from None
        if unit.text is None:
            continue
        if unit.offset is None:
            raise CorpusFormatError(f"a <{unit.kind}> without <offset>", path=name, line=unit.line)
        units.append(unit)
    mentions = [(ann.line, m) for ann in doc.annotations if (m := _bioc_mention(ann, doc, name)) is not None]
    if not doc.id:
        raise CorpusFormatError("a document without an <id>", path=name, line=doc.line)
    # sentences inside a passage that has its own text are part of that text: keep outermost units
    # (a passage before the sentences at its offset: they end, and so are listed, before it)
    units.sort(key=lambda u: (int(u.offset.strip()), u.kind == "sentence"))  # type: ignore[union-attr]
    pieces: List[str] = []
    passages: List[Passage] = []
    end = 0
    for unit in units:
        offset, text = int(unit.offset.strip()), unit.text  # type: ignore[union-attr]
        assert text is not None
        if offset < end:
            if offset + len(text) <= end and unit.kind == "sentence":
                continue
            raise CorpusFormatError(f"{unit.kind} at offset {offset} overlaps the text before it "
                                    f"(which ends at {end})", path=name, line=unit.line)
        pieces.append(" " * (offset - end))
        pieces.append(text)
        end = offset + len(text)
        if unit.kind == "passage":
            passages.append(Passage(offset=offset, text=text, infons=dict(unit.infons)))
    text = "".join(pieces)
    for line, mention in mentions:
        _check_mention(mention, text, path=name, line=line)
    return StandoffDocument(id=doc.id, text=text, mentions=[m for _, m in mentions],
                            passages=passages, source=f"{name}:{doc.line}", ignored=doc.ignored)


def read_bioc(path: Path, *, name: Optional[str] = None) -> Iterator[StandoffDocument]:
    """BioC XML, streamed: each passage (or sentence) text at its offset, gaps filled with spaces.

    Annotations anywhere in a document, with their ``location``s (several
    locations: a discontinuous mention, kept as such); relations are counted in
    ``ignored``. Offsets are characters.
    path (Path): the file (``.gz`` too).
    name (Optional[str]): the name shown in sources and errors.
    RETURNS (Iterator[StandoffDocument]): one per ``<document>``.
    """
    name = name or str(path)
    for doc in bioc_elements(path, name=name):
        yield _bioc_document(doc, name)


def escape(text: str) -> str:
    """XML text with ``\\r`` kept as a character reference (parsers turn a raw CR LF into LF)."""
    return _escape(text, {"\r": "&#13;"})


BIOC_HEAD = ("<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n"
             "<collection><source>spacy-bioner</source><date></date><key></key>\n")
BIOC_TAIL = "</collection>\n"


def bioc_annotation(*, id: str, type: str, spans: Iterable[Tuple[int, int]], text: str,
                    infons: Optional[Dict[str, str]] = None) -> str:
    """An ``<annotation>`` line: its type infon, other infons, one location per span, its text.

    id (str): the annotation id.
    type (str): the entity type.
    spans (Iterable[Tuple[int, int]]): document offsets (several: a discontinuous mention).
    text (str): the mention text.
    infons (Optional[Dict[str, str]]): infons after the type (``identifier``, ``score``…).
    """
    more = "".join(f"<infon key={quoteattr(k)}>{escape(v)}</infon>" for k, v in (infons or {}).items())
    locations = "".join(f'<location offset="{s}" length="{e - s}"/>' for s, e in spans)
    return (f'<annotation id="{escape(id)}"><infon key="type">{escape(type)}</infon>{more}{locations}'
            f'<text>{escape(text)}</text></annotation>\n')


def bioc_passage(passage: Passage, annotations: Iterable[str]) -> str:
    """A ``<passage>``: its infons, offset and text, then the given ``<annotation>`` lines."""
    infons = "".join(f"<infon key={quoteattr(k)}>{escape(v)}</infon>" for k, v in passage.infons.items())
    return (f"<passage>{infons}<offset>{passage.offset}</offset><text>{escape(passage.text)}</text>\n"
            + "".join(annotations) + "</passage>\n")


def bioc_document_xml(doc_id: str, passages: Iterable[str]) -> str:
    """A ``<document>``: its id and the given ``<passage>`` elements."""
    return f"<document><id>{escape(doc_id)}</id>\n" + "".join(passages) + "</document>\n"


def bioc_document(doc: StandoffDocument) -> str:
    """A BioC ``<document>``: its passages (one at offset 0 holding the whole text when it has none)
    and each mention, with its location(s), in the passage that holds it."""
    text = doc.text or ""
    passages = doc.passages or [Passage(offset=0, text=text)]
    placed = set()
    out = []
    for p in passages:
        end = p.offset + len(p.text)
        annotations = []
        for i, m in enumerate(doc.mentions):
            if i in placed or not (p.offset <= m.start and m.end <= end or p is passages[-1]):
                continue
            placed.add(i)
            annotations.append(bioc_annotation(id=m.id or f"T{i + 1}", type=m.type,
                                               spans=m.segments or ((m.start, m.end),), text=m.text,
                                               infons={"identifier": m.concept} if m.concept else None))
        out.append(bioc_passage(p, annotations))
    return bioc_document_xml(doc.id, out)


# ---------------------------------------------------------------- brat
def read_brat(path: Path, *, name: Optional[str] = None) -> Iterator[StandoffDocument]:
    """brat standoff: the ``.txt`` and its ``.ann`` (or ``.a1``); ``T`` lines are mentions.

    Other lines (relations, events, attributes, notes…) are counted in ``ignored``
    by their first letter. The document id is the file name without suffix.
    path (Path): the ``.txt`` file (``.gz`` too).
    name (Optional[str]): the name shown for the ``.txt`` (the ``.ann`` is shown beside it).
    RETURNS (Iterator[StandoffDocument]): one document.
    """
    ann = _brat_annotation(path)
    if ann is None:
        raise FileNotFoundError(f"{path}: no .ann or .a1 beside it")
    name = name or str(path)
    ann_name = str(Path(name).parent / ann.name) if name != str(path) else str(ann)
    text = _read_text(path)
    mentions: List[Mention] = []
    ignored: Counter = Counter()
    with _open_text(ann) as f:
        for n, raw in enumerate(f, start=1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            if not line.startswith("T"):
                ignored[f"{line[0]} lines"] += 1
                continue
            cols = line.split("\t")
            if len(cols) < 3:
                raise CorpusFormatError("a T line needs id<TAB>type start end<TAB>text", path=ann_name, line=n,
                                        text=line)
            head = cols[1].split(" ", 1)
            try:
                segments = tuple(sorted((int(s), int(e)) for s, e in
                                        (part.split() for part in head[1].split(";"))))
            except (IndexError, ValueError):
                raise CorpusFormatError("a T line needs `type start end[;start end…]`", path=ann_name, line=n,
                                        text=line) from None
            mention = Mention(start=segments[0][0], end=max(e for _, e in segments), type=head[0],
                              text="\t".join(cols[2:]), source=f"{ann_name}:{n}", id=cols[0],
                              segments=segments if len(segments) > 1 else ())
            _check_mention(mention, text, path=ann_name, line=n)
            mentions.append(mention)
    doc_id = _strip_suffix(Path(name)).name
    yield StandoffDocument(id=doc_id, text=text, mentions=mentions, passages=[Passage(offset=0, text=text)],
                           source=f"{ann_name}:1", ignored=ignored)


def brat_annotations(doc: StandoffDocument) -> str:
    """The ``.ann`` of a document: one ``T`` line per mention (fragments joined by ``;``)."""
    out = io.StringIO()
    for i, m in enumerate(doc.mentions, start=1):
        spans = ";".join(f"{s} {e}" for s, e in (m.segments or ((m.start, m.end),)))
        out.write(f"T{i}\t{m.type} {spans}\t{_one_line(m.text)}\n")
    return out.getvalue()


# ---------------------------------------------------------------- annotate's JSONL
def read_jsonl(path: Path, *, name: Optional[str] = None) -> Iterator[StandoffDocument]:
    """``annotate``'s JSONL output: ``{"id", "entities": [{"start", "end", "label", "text"}]}`` a line
    (a ``text`` field, when present, is the document text and mentions are checked against it).

    path (Path): the file (``.gz`` too).
    name (Optional[str]): the name shown in sources and errors.
    RETURNS (Iterator[StandoffDocument]): one per line; ``text`` is None when the line has none.
    """
    name = name or str(path)
    with _open_text(path) as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as err:
                raise CorpusFormatError(f"invalid JSON: {err.msg} (column {err.colno})", path=name, line=n) from None
            if not isinstance(obj, dict) or "id" not in obj:
                raise CorpusFormatError('not an annotate record (a JSON object with "id" and "entities")',
                                        path=name, line=n)
            text = obj.get("text") if isinstance(obj.get("text"), str) else None
            mentions = []
            for ent in obj.get("entities") or []:
                try:
                    mention = Mention(start=int(ent["start"]), end=int(ent["end"]), type=str(ent["label"]),
                                      text=str(ent.get("text", "")), source=f"{name}:{n}")
                except (KeyError, TypeError, ValueError):
                    raise CorpusFormatError("an entity needs start, end and label", path=name, line=n) from None
                if text is not None:
                    _check_mention(mention, text, path=name, line=n)
                mentions.append(mention)
            yield StandoffDocument(id=str(obj["id"]), text=text, mentions=mentions,
                                   passages=[Passage(offset=0, text=text)] if text is not None else [],
                                   source=f"{name}:{n}")


# ---------------------------------------------------------------- writing
def write_documents(docs: Iterable[StandoffDocument], path: Union[str, Path], fmt: str) -> int:
    """Write documents as PubTator or BioC (one file; ``.gz`` compresses) or brat (a folder of
    ``ID.txt`` + ``ID.ann``).

    docs (Iterable[StandoffDocument]): the documents.
    path (Union[str, Path]): output file, or folder for brat.
    fmt (str): pubtator, bioc or brat.
    RETURNS (int): the number of documents written.
    """
    path = Path(path)
    if fmt not in WRITE_FORMATS:
        raise ValueError(f"format {fmt!r}: choose one of {', '.join(WRITE_FORMATS)}")
    n = 0
    if fmt == "brat":
        path.mkdir(parents=True, exist_ok=True)
        seen = set()
        for doc in docs:
            stem = re.sub(r"[^\w.-]", "_", doc.id) or "doc"
            if stem in seen:
                raise ValueError(f"two documents with the id {doc.id!r}: brat needs one file pair each")
            seen.add(stem)
            (path / f"{stem}.txt").write_text(doc.text or "", encoding="utf8", newline="")
            (path / f"{stem}.ann").write_text(brat_annotations(doc), encoding="utf8", newline="")
            n += 1
        return n
    path.parent.mkdir(parents=True, exist_ok=True)
    raw: IO[bytes] = gzip.open(path, "wb") if path.suffix.lower() == ".gz" else open(path, "wb")
    with io.TextIOWrapper(raw, encoding="utf8", newline="") as out:
        if fmt == "bioc":
            out.write(BIOC_HEAD)
        for doc in docs:
            out.write(pubtator_document(doc) if fmt == "pubtator" else bioc_document(doc))
            n += 1
        if fmt == "bioc":
            out.write(BIOC_TAIL)
    return n
