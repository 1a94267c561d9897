"""Tagging schemes (IOB1, IOB2, BIOES/IOBES, BILOU): parse, decode, encode.

One decoder serves every scheme: ``B``/``S`` always open an entity, ``I``/``E``
continue an open entity of the same type, ``E``/``S`` close it. The scheme
only decides which departures from that grammar are *repairs* (counted, or an
error under ``strict``): an ``I-X`` that opens an entity is legal in IOB1 but
a repair in IOB2 and BIOES; an entity that is not closed by ``E``/``S`` is a
repair in BIOES/BILOU.
"""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..types import EntitySpan, ParsedTag

#: Scheme names accepted when reading (``auto`` detects) and when writing.
SCHEMES = ("auto", "iob1", "iob2", "bioes", "bilou")
WRITE_SCHEMES = ("iob1", "iob2", "bioes", "bilou")
#: The label of bare ``B``/``I`` tags (no type) unless another is given.
DEFAULT_UNTYPED_LABEL = "ENTITY"

OUTSIDE = ("O", "0")
_PREFIX_ALIASES = {"B": "B", "I": "I", "E": "E", "S": "S", "L": "E", "U": "S"}
_VALID_HELP = "expected O (or 0), or B/I/E/S/L/U optionally followed by -TYPE"


class TagError(ValueError):
    """A tag (or a tag sequence) is not valid; the caller adds ``file:line``."""

    def __init__(self, message: str, *, index: Optional[int] = None) -> None:
        super().__init__(message)
        self.index = index


def parse_tag(tag: str, *, untyped_label: str) -> ParsedTag:
    """Split a tag into ``(prefix, label)``; ``L``/``U`` map to ``E``/``S``.

    tag (str): the tag column, e.g. ``B-Disease``, ``I``, ``O`` or ``0``.
    untyped_label (str): the label given to bare ``B``/``I``/... tags.
    RETURNS (ParsedTag): prefix in ``O B I E S``, label (None for ``O``).
    """
    if tag in OUTSIDE:
        return ("O", None)
    prefix = _PREFIX_ALIASES.get(tag[:1])
    if prefix is None:
        raise TagError(f"invalid tag {tag!r}: {_VALID_HELP}")
    if len(tag) == 1:
        return (prefix, untyped_label)
    if tag[1] != "-" or len(tag) == 2 or tag[2:].strip() != tag[2:]:
        raise TagError(f"invalid tag {tag!r}: {_VALID_HELP}")
    return (prefix, tag[2:])


class TagParser:
    """Parse tags with a cache (corpora use a handful of distinct tags)."""

    def __init__(self, *, untyped_label: str) -> None:
        self.untyped_label = untyped_label
        self.saw_untyped = False
        self._cache: Dict[str, ParsedTag] = {}

    def __call__(self, tag: str) -> ParsedTag:
        parsed = self._cache.get(tag)
        if parsed is None:
            parsed = parse_tag(tag, untyped_label=self.untyped_label)
            self._cache[tag] = parsed
            if parsed[0] != "O" and len(tag) == 1:
                self.saw_untyped = True
        return parsed


def detect_scheme(sequences: Sequence[Sequence[ParsedTag]]) -> str:
    """Guess the scheme of parsed tag sequences (one per sentence).

    Any ``E``/``S`` (or ``L``/``U``) means BIOES; otherwise a ``B`` that opens
    an entity after ``O`` or another type can only be IOB2 (IOB1 uses ``B``
    only between touching same-type entities); otherwise an ``I`` that opens
    an entity means IOB1; otherwise IOB1 and IOB2 read alike: IOB2.
    """
    if any(prefix in ("E", "S") for tags in sequences for prefix, _ in tags):
        return "bioes"
    i_opens = False
    for tags in sequences:
        prev: ParsedTag = ("O", None)
        for tag in tags:
            prefix, label = tag
            opens = prev[0] == "O" or prev[1] != label
            if prefix == "B" and opens:
                return "iob2"
            if prefix == "I" and opens:
                i_opens = True
            prev = tag
    return "iob1" if i_opens else "iob2"


def decode(
    tags: Sequence[ParsedTag],
    *,
    scheme: str,
    on_repair: Optional[Callable[[int, str, str], None]] = None,
) -> List[EntitySpan]:
    """Turn one sentence's parsed tags into entity spans.

    tags (Sequence[ParsedTag]): output of ``parse_tag`` per token.
    scheme (str): ``iob1``, ``iob2``, ``bioes`` or ``bilou``.
    on_repair (Callable[[int, str, str], None]): called with (token index,
        kind, detail) for every repair; raise from it to make repairs errors.
        Kinds: ``"I- opening an entity"``, ``"E- opening an entity"``,
        ``"entity not closed by E-/S-"``.
    RETURNS (List[EntitySpan]): ``(start, end, label)`` spans, end exclusive.
    """
    closing = scheme in ("bioes", "bilou")
    if not closing and any(p in ("E", "S") for p, _ in tags):
        bad = next(i for i, (p, _) in enumerate(tags) if p in ("E", "S"))
        raise TagError(
            f"tag prefix {tags[bad][0]!r} is not part of scheme {scheme}; "
            "use --scheme bioes/bilou (or auto)",
            index=bad,
        )
    spans: List[EntitySpan] = []
    start = -1
    label: Optional[str] = None
    last_prefix = "O"
    prev_tag = "O"

    def close(end: int) -> None:
        nonlocal start, label
        if start >= 0:
            if closing and last_prefix in ("B", "I") and on_repair is not None:
                on_repair(end - 1, "entity not closed by E-/S-", f"{last_prefix}-{label} ends the entity")
            spans.append((start, end, label))  # type: ignore[arg-type]
        start, label = -1, None

    for i, (prefix, lab) in enumerate(tags):
        if prefix == "O":
            close(i)
        elif prefix in ("B", "S"):
            close(i)
            start, label = i, lab
        elif start >= 0 and lab == label:
            pass  # I/E continuing the open entity
        else:
            if on_repair is not None and not (scheme == "iob1" and prefix == "I"):
                on_repair(i, f"{prefix}- opening an entity", f"{prefix}-{lab} after {prev_tag}")
            close(i)
            start, label = i, lab
        last_prefix = prefix
        prev_tag = "O" if prefix == "O" else f"{prefix}-{lab}"
        if prefix in ("E", "S"):
            last_prefix = "E"
            close(i + 1)
    close(len(tags))
    return spans


def encode(
    spans: Sequence[Tuple[int, int, str]],
    length: int,
    *,
    scheme: str,
    bare_label: Optional[str] = None,
) -> List[str]:
    """Write entity spans as tags of a scheme.

    spans (Sequence[Tuple[int, int, str]]): sorted, non-overlapping spans.
    length (int): number of tokens.
    scheme (str): ``iob1``, ``iob2``, ``bioes`` or ``bilou``.
    bare_label (Optional[str]): spans with this label get bare tags (``B``).
    RETURNS (List[str]): one tag per token.
    """
    if scheme not in WRITE_SCHEMES:
        raise ValueError(f"cannot write scheme {scheme!r}; choose one of {', '.join(WRITE_SCHEMES)}")
    single, last = ("U", "L") if scheme == "bilou" else ("S", "E")
    tags = ["O"] * length
    prev_end, prev_label = -1, None
    for start, end, label in spans:
        suffix = "" if label == bare_label else f"-{label}"
        if scheme in ("iob1", "iob2"):
            touching = prev_end == start and prev_label == label
            first = "B" if scheme == "iob2" or touching else "I"
            tags[start] = first + suffix
            for k in range(start + 1, end):
                tags[k] = "I" + suffix
        elif end - start == 1:
            tags[start] = single + suffix
        else:
            tags[start] = "B" + suffix
            for k in range(start + 1, end - 1):
                tags[k] = "I" + suffix
            tags[end - 1] = last + suffix
        prev_end, prev_label = end, label
    return tags
