"""Document formats for ``annotate``: read records from text / JSONL / PubTator / BioC
(gzip too), write annotated records as JSONL / PubTator / BioC.

A record is a document of one or more passages, each with its offset in the
document (PubTator: title at 0, abstract after the title and one space; BioC:
the passage's own ``offset``). Entities are found per passage and reported with
document offsets, so they index the original text exactly. A record that cannot
be read is a :class:`BadRecord` (its source ``file:line``, id when known, and
why); readers never stop at one.
"""
import io
import json
import re
from pathlib import Path
from typing import Any, Collection, Dict, Iterator, List, Optional, Tuple, Union
from xml.etree import ElementTree

from ..corpus.standoff import (BIOC_HEAD, BIOC_TAIL, PUBTATOR_TEXT, DocumentFormatError, bioc_annotation,
                               bioc_document_xml, bioc_elements, bioc_passage, open_binary,
                               parse_pubtator_block, pubtator_blocks, pubtator_mention_line, pubtator_text_line,
                               suffix_of)
from ..types import AnnotatedRecord, BadRecord, Passage, Record

INPUT_FORMATS = ("text", "jsonl", "pubtator", "bioc")
OUTPUT_FORMATS = ("jsonl", "pubtator", "bioc")
#: Suffixes (before ``.gz``) that pick the input format when ``--format`` is not given.
SUFFIXES = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".pubtator": "pubtator", ".xml": "bioc", ".bioc": "bioc"}


_PUBTATOR_TEXT_BYTES = re.compile(PUBTATOR_TEXT.pattern.encode())


def format_of(path: Path) -> Optional[str]:
    """The input format a file's suffix implies (``x.jsonl.gz`` → jsonl), or None."""
    return SUFFIXES.get(suffix_of(path))


def input_files(path: Path, fmt: Optional[str], *, exclude: Collection[Path] = ()) -> List[Path]:
    """The files to read: ``path`` itself, or a folder's files (recursively, sorted) of the format.

    path (Path): a file or folder.
    fmt (Optional[str]): the format; None infers it from the suffixes.
    exclude (Collection[Path]): files and folders never read (the job's own output, error file, shards).
    RETURNS (List[Path]): FileNotFoundError when there is nothing to read.
    """
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        return [path]
    skip = [p.resolve() for p in exclude]
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and not any(p.resolve() == s or s in p.resolve().parents for s in skip))
    if fmt is not None:
        files = [p for p in files if format_of(p) in (fmt, None) or fmt == "text"]
    else:
        files = [p for p in files if format_of(p) is not None]
    if not files:
        raise FileNotFoundError(f"{path}: a folder with no input files"
                                + (f" of format {fmt}" if fmt else " (.txt, .jsonl, .pubtator, .xml, optionally .gz)"))
    return files


def pick_format(files: List[Path], fmt: Optional[str]) -> str:
    """The one input format of ``files`` (``--format`` wins); ValueError when it cannot be told."""
    if fmt is not None:
        if fmt not in INPUT_FORMATS:
            raise ValueError(f"--format {fmt}: choose one of {', '.join(INPUT_FORMATS)}")
        return fmt
    found = {format_of(p) for p in files}
    if len(found) == 1 and None not in found:
        return found.pop()  # type: ignore[return-value]
    raise ValueError(f"cannot tell the input format from the file names ({', '.join(sorted(map(str, found)))}); "
                     f"pass --format ({', '.join(INPUT_FORMATS)})")


def read_records(path: Path, *, fmt: Optional[str] = None, id_field: str = "id", text_field: str = "text",
                 max_chars: int = 1_000_000, root: Optional[Path] = None,
                 exclude: Collection[Path] = ()) -> Iterator[Union[Record, BadRecord]]:
    """Every record of a file or folder, in order, as :class:`Record` or :class:`BadRecord`.

    path (Path): input file or folder.
    fmt (Optional[str]): text, jsonl, pubtator or bioc; None infers it from suffixes.
    id_field (str): JSONL key of the id (missing: the record's ``file:line``).
    text_field (str): JSONL key of the text.
    max_chars (int): longer documents are bad records (spaCy's ``nlp.max_length``).
    root (Optional[Path]): sources are shown relative to this folder.
    exclude (Collection[Path]): files and folders of a folder input that are never read.
    RETURNS (Iterator): records, read lazily; a missing input or an unknown format fails at once.
    """
    files = input_files(path, fmt, exclude=exclude)
    fmt = pick_format(files, fmt)
    base = root or (path if path.is_dir() else path.parent)
    return _records(files, fmt, base, id_field=id_field, text_field=text_field, max_chars=max_chars)


def _records(files: List[Path], fmt: str, base: Path, *, id_field: str, text_field: str,
             max_chars: int) -> Iterator[Union[Record, BadRecord]]:
    for file in files:
        name = str(file.relative_to(base)) if file.is_relative_to(base) else str(file)
        if fmt == "text":
            records = _read_text(file, name)
        elif fmt == "jsonl":
            records = _read_jsonl(file, name, id_field=id_field, text_field=text_field)
        elif fmt == "pubtator":
            records = _read_pubtator(file, name)
        else:
            records = _read_bioc(file, name)
        for record in records:
            yield _check(record, max_chars)


def _check(record: Union[Record, BadRecord], max_chars: int) -> Union[Record, BadRecord]:
    if isinstance(record, BadRecord):
        return record
    size = sum(len(p.text) for p in record.passages)
    if not any(p.text.strip() for p in record.passages):
        return BadRecord(source=record.source, id=record.id, error="empty text")
    if max(len(p.text) for p in record.passages) > max_chars:
        return BadRecord(source=record.source, id=record.id,
                         error=f"text of {size:,} characters is over the limit of {max_chars:,} "
                               "(raise it with --max-chars, or split the document)")
    return record


def _read_text(file: Path, name: str) -> Iterator[Union[Record, BadRecord]]:
    """One document per file; id = the file's path relative to the input folder, without suffixes."""
    doc_id = re.sub(r"(\.[A-Za-z]+)*(\.gz)?$", "", name) or name
    with open_binary(file) as f:
        data = f.read()
    try:
        text = data.decode("utf8")
    except UnicodeDecodeError as err:
        yield BadRecord(source=name, id=doc_id, error=f"invalid UTF-8 at byte {err.start}")
        return
    yield Record(id=doc_id, source=name, passages=[Passage(offset=0, text=text)])


def _read_jsonl(file: Path, name: str, *, id_field: str, text_field: str) -> Iterator[Union[Record, BadRecord]]:
    with open_binary(file) as f:
        for n, raw in enumerate(f, start=1):
            source = f"{name}:{n}"
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf8")
            except UnicodeDecodeError as err:
                yield BadRecord(source=source, id=None, error=f"invalid UTF-8 at byte {err.start}")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield BadRecord(source=source, id=None, error=f"invalid JSON: {err.msg} (column {err.colno})")
                continue
            if not isinstance(obj, dict):
                yield BadRecord(source=source, id=None, error=f"a JSON {type(obj).__name__}, not an object")
                continue
            doc_id = obj.get(id_field)
            doc_id = source if doc_id is None else str(doc_id)
            text = obj.get(text_field)
            if text is None:
                yield BadRecord(source=source, id=doc_id, error=f"no {text_field!r} field (set --text-field)")
            elif not isinstance(text, str):
                yield BadRecord(source=source, id=doc_id, error=f"{text_field!r} is not a string but "
                                                                 f"{type(text).__name__}")
            else:
                yield Record(id=doc_id, source=source, passages=[Passage(offset=0, text=text)])


def _read_pubtator(file: Path, name: str) -> Iterator[Union[Record, BadRecord]]:
    """PubTator: ``id|t|title``, ``id|a|abstract``, annotation lines (ignored), blank line."""
    with open_binary(file) as f:
        for block in pubtator_blocks(f):
            yield _pubtator_block(block, name)


def _pubtator_block(block: List[Tuple[int, bytes]], name: str) -> Union[Record, BadRecord]:
    source = f"{name}:{block[0][0]}"
    try:
        parsed = parse_pubtator_block(block, name)
    except DocumentFormatError as err:
        return BadRecord(source=f"{name}:{err.line}", id=err.doc_id, error=err.reason)
    if parsed.id is None:
        return BadRecord(source=source, id=None, error="annotation lines without a title or abstract line")
    return Record(id=parsed.id, source=source, passages=parsed.passages(keep_empty=True))


def _read_bioc(file: Path, name: str) -> Iterator[Union[Record, BadRecord]]:
    """BioC XML, streamed document by document: the document's own passages (offset 0 and empty text
    where they have none); annotations are not read."""
    try:
        for doc in bioc_elements(file, name=name):
            source = f"{name}#{doc.id or '?'}"
            passages = []
            for unit in doc.units:
                if not unit.top:
                    continue
                try:
                    offset = int((unit.offset or "0").strip())
                except ValueError:
                    yield BadRecord(source=source, id=doc.id or None, error="passage offset is not a number")
                    break
                passages.append(Passage(offset=offset, text=unit.text or "", infons=dict(unit.infons)))
            else:
                if not doc.id:
                    yield BadRecord(source=source, id=None, error="document without an <id>")
                else:
                    yield Record(id=doc.id, source=source, passages=passages)
    except DocumentFormatError as err:
        yield BadRecord(source=f"{name}:{err.line}", id=None,
                        error=f"invalid XML ({err.xml_error}: line {err.line}, column {err.column}); "
                              "the rest of this file is skipped")


# ---------------------------------------------------------------- writers
class Writer:
    """Appends annotated records to OUTPUT in one format; knows which ids OUTPUT already holds."""

    def __init__(self, path: Path, fmt: str, *, resume: bool) -> None:
        if fmt not in OUTPUT_FORMATS:
            raise ValueError(f"--output-format {fmt}: choose one of {', '.join(OUTPUT_FORMATS)}")
        self.path, self.fmt = path, fmt
        self.done: List[str] = []  # ids of the records OUTPUT holds, repeats included
        if resume and path.exists():
            self.done = self._recover()
        elif path.exists() and path.stat().st_size:
            raise FileExistsError(f"{path} exists: pass --resume to continue it, or choose a new OUTPUT")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "a", encoding="utf8", newline="")
        if fmt == "bioc" and self.file.tell() == 0:
            self.file.write(BIOC_HEAD)

    def _recover(self) -> List[str]:
        """Ids of the complete records in OUTPUT (repeats included); a record cut off by a kill is removed."""
        data = self.path.read_bytes()
        ids: List[str] = []
        if self.fmt == "jsonl":
            end = data.rfind(b"\n") + 1
            for n, line in enumerate(data[:end].splitlines(), start=1):
                if line.strip():
                    try:
                        ids.append(str(json.loads(line)["id"]))
                    except (ValueError, KeyError, TypeError):
                        raise ValueError(f"{self.path}:{n}: not a spacy-bioner JSONL record; --resume needs the "
                                         "OUTPUT of an earlier annotate run with the same --output-format") from None
        elif self.fmt == "pubtator":
            end = data.rfind(b"\n\n") + 2 if b"\n\n" in data else 0
            for block in data[:end].split(b"\n\n"):
                first = block.split(b"\n", 1)[0]
                match = _PUBTATOR_TEXT_BYTES.match(first)  # as the reader: the id holds no '|'
                if match:
                    ids.append(match.group(1).decode("utf8"))
        else:
            close = data.rfind(b"</document>")
            # no complete document yet: start again from an empty file (the head is rewritten)
            end = close + len(b"</document>\n") if close >= 0 else 0
            ids = [_xml_text(m.group(1)) for m in re.finditer(rb"<document><id>([^<]*)</id>", data[:end])]
        with open(self.path, "r+b") as f:
            f.truncate(end)
        return ids

    def write(self, record: AnnotatedRecord) -> None:
        if self.fmt == "jsonl":
            self.file.write(json.dumps(jsonl_record(record), ensure_ascii=False) + "\n")
        elif self.fmt == "pubtator":
            self.file.write(pubtator_record(record))
        else:
            self.file.write(bioc_document(record))

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        if self.fmt == "bioc":
            self.file.write(BIOC_TAIL)
        self.file.close()


def _xml_text(raw: bytes) -> str:
    """Text of an XML element's content as the BioC writer escapes it (entities and ``&#13;`` decoded)."""
    return ElementTree.fromstring(b"<x>" + raw + b"</x>").text or ""


def error_line(record: BadRecord) -> str:
    """One line of the error file: ``{"source", "id", "error"}``."""
    return json.dumps({"source": record.source, "id": record.id, "error": record.error}, ensure_ascii=False) + "\n"


def jsonl_record(record: AnnotatedRecord) -> Dict[str, Any]:
    """``{"id", "source", "entities": [{"start", "end", "label", "text"[, "score"]}]}`` (a score when the
    pipeline sets one)."""
    entities = []
    for (s, e, label, text), score in zip(record.entities, _scores(record)):
        entity: Dict[str, Any] = {"start": s, "end": e, "label": label, "text": text}
        if score is not None:
            entity["score"] = score
        entities.append(entity)
    return {"id": record.id, "source": record.source, "entities": entities}


def _scores(record: AnnotatedRecord) -> List[Optional[float]]:
    """Each entity's score, None where there is none."""
    return list(record.scores) if record.scores is not None else [None] * len(record.entities)


def pubtator_record(record: AnnotatedRecord) -> str:
    """Title/abstract lines as read (``|t|``/``|a|``; plain text as one ``|t|``), then one line per entity
    (PubTator's six columns: no place for a score)."""
    out = io.StringIO()
    for p in record.passages:
        kind = p.infons.get("type", "t") if p.infons.get("type") in ("t", "a") else ("t" if p.offset == 0 else "a")
        out.write(pubtator_text_line(record.id, kind, p.text))
    for s, e, label, text in record.entities:
        out.write(pubtator_mention_line(record.id, s, e, text, label))
    out.write("\n")
    return out.getvalue()


def bioc_document(record: AnnotatedRecord) -> str:
    """A BioC ``<document>``: passages with their infons, offsets and annotations (an entity's score, when
    the pipeline sets one, as the annotation's ``score`` infon)."""
    passages = []
    n = 0
    for p in record.passages:
        end = p.offset + len(p.text)
        annotations = []
        for (s, e, label, text), score in zip(record.entities, _scores(record)):
            if p.offset <= s and e <= end:
                annotations.append(bioc_annotation(id=f"T{n}", type=label, spans=[(s, e)], text=text,
                                                   infons=None if score is None else {"score": f"{score}"}))
                n += 1
        passages.append(bioc_passage(p, annotations))
    return bioc_document_xml(record.id, passages)
