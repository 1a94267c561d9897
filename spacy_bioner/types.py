"""Type aliases and small record types shared across spacy_bioner."""
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Counter, Dict, Iterable, Iterator, List, Optional, Tuple, Union

if TYPE_CHECKING:  # spaCy stays unimported until a command needs it
    from spacy.language import Language
    from spacy.training import Example

#: A span of tokens ``(start, end, label)`` with ``end`` exclusive.
EntitySpan = Tuple[int, int, str]
#: A parsed tag: ``(prefix, label)`` where prefix is one of ``O B I E S``.
ParsedTag = Tuple[str, Optional[str]]
#: What a registered spaCy corpus reader returns.
CorpusReader = Callable[["Language"], Iterable["Example"]]
#: A batch size: a number, or a schedule / sequence of numbers.
Sizing = Union[int, Iterable[int]]
#: Token offsets ``(start, end)`` of one sentence in a Doc, end exclusive.
SentenceBounds = Tuple[int, int]


@dataclass
class Sentence:
    """One sentence read from a token-per-line file.

    words (List[str]): the tokens.
    tags (List[str]): the tag column, exactly as written in the file.
    lines (List[int]): 1-based line number of each token.
    spaces (Optional[List[bool]]): trailing whitespace per token, when the file
        carries character offsets; None otherwise.
    """

    words: List[str] = field(default_factory=list)
    tags: List[str] = field(default_factory=list)
    lines: List[int] = field(default_factory=list)
    spaces: Optional[List[bool]] = None
    entities: List[EntitySpan] = field(default_factory=list)


@dataclass
class RawDocument:
    """A document: sentences, and whether a ``-DOCSTART-`` line opened it."""

    sentences: List[Sentence] = field(default_factory=list)
    docstart: bool = False


@dataclass
class ConversionStats:
    """What a conversion saw: printed as the summary after ``convert``."""

    scheme: str = "auto"
    documents: int = 0
    sentences: int = 0
    tokens: int = 0
    entities: Counter = field(default_factory=Counter)
    repairs: Counter = field(default_factory=Counter)
    empty_documents: int = 0
    untyped_label: Optional[str] = None

    def merge(self, other: "ConversionStats") -> None:
        self.documents += other.documents
        self.sentences += other.sentences
        self.tokens += other.tokens
        self.entities.update(other.entities)
        self.repairs.update(other.repairs)
        self.empty_documents += other.empty_documents
        self.untyped_label = self.untyped_label or other.untyped_label

    def to_dict(self) -> Dict[str, object]:
        return {
            "scheme": self.scheme,
            "documents": self.documents,
            "sentences": self.sentences,
            "tokens": self.tokens,
            "entities": dict(sorted(self.entities.items())),
            "n_entities": sum(self.entities.values()),
            "repairs": dict(sorted(self.repairs.items())),
            "empty_documents": self.empty_documents,
            "untyped_label": self.untyped_label,
        }


@dataclass
class Passage:
    """A passage of a document to annotate: its text and its offset in the document.

    offset (int): character offset of the passage in the document (PubTator, BioC).
    text (str): the passage, exactly as read.
    infons (Dict[str, str]): BioC infons / PubTator kind (``{"type": "t"}``), written back unchanged.
    """

    offset: int
    text: str
    infons: Dict[str, str] = field(default_factory=dict)


@dataclass
class Record:
    """A document read for ``annotate``.

    id (str): the document id (JSONL ``--id-field``, PubTator/BioC id, a text file's name).
    source (str): where it was read, ``file:line`` (BioC: ``file#id``).
    passages (List[Passage]): one for plain text and JSONL.
    """

    id: str
    source: str
    passages: List[Passage]


@dataclass
class BadRecord:
    """A record that cannot be annotated: written to the error file, the job goes on.

    source (str): ``file:line`` of the record.
    id (Optional[str]): its id when it could be read.
    error (str): why, in one line.
    """

    source: str
    id: Optional[str]
    error: str


#: An entity found by ``annotate``: document character offsets ``(start, end)``, label, text.
CharEntity = Tuple[int, int, str, str]


@dataclass
class AnnotatedRecord:
    """A record with its entities (document offsets), ready to be written.

    scores (Optional[List[Optional[float]]]): each entity's confidence (aligned with ``entities``; None
        for an entity without one), or None when the pipeline sets no scores.
    """

    id: str
    source: str
    passages: List[Passage]
    entities: List[CharEntity]
    scores: Optional[List[Optional[float]]] = None


__all__ = [
    "AnnotatedRecord",
    "BadRecord",
    "CharEntity",
    "Passage",
    "Record",
    "ConversionStats",
    "CorpusReader",
    "EntitySpan",
    "Iterator",
    "List",
    "ParsedTag",
    "RawDocument",
    "Sentence",
    "SentenceBounds",
    "Sizing",
]
