"""A Hugging Face token-classification label set, read as a tag scheme and mapped onto ``bioner_tagger``'s tags.

HF checkpoints name their classifier rows in ``config.id2label``. The names follow
one of a few schemes, which :func:`read_label_scheme` detects:

* ``iob2``: ``O``, ``B-X``, ``I-X`` (most checkpoints);
* ``iob1``: ``O`` and ``I-X`` that opens an entity, ``B-X`` only where two ``X``
  entities touch (detected when a type has ``I-X`` but no ``B-X``);
* ``bioes`` / ``bilou``: ``O``, ``B-X``, ``I-X``, ``E-X``/``L-X``, ``S-X``/``U-X``;
* ``bio``: bare ``O``, ``B``, ``I`` (one entity type, named by the caller).

Prefixes may be joined with ``-`` or ``_`` (``B_Disease``). ``bioner_tagger`` uses
``iob2`` or ``bilou`` tags (:func:`~spacy_bioner.pipeline.decoding.tag_names`):
:class:`LabelMapping` says which HF row gives each of its tags. A tag the checkpoint
lacks (e.g. ``B-X`` of an IOB1 type) takes the row of the tag that plays its part
(IOB1's opening ``I-X``) or, where none does, a row that is never chosen.
"""
import re
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple

from ..errors import ConfigValueError
from ..pipeline.decoding import tag_names

#: ``B-Disease`` / ``B_Disease`` → prefix, type. The prefix is one of BIESLU.
_TAG = re.compile(r"^([BIESLU])[-_](.+)$")
#: HF's default names when a checkpoint has no label names.
_DEFAULT_NAME = re.compile(r"^LABEL_\d+$")
#: Names that mean "outside" in the wild.
OUTSIDE_NAMES = ("O", "0", "OUT", "OUTSIDE")
#: Which HF prefix gives each of bioner_tagger's prefixes, per detected scheme.
_SOURCES: Dict[str, Dict[str, Tuple[str, ...]]] = {
    "iob2": {"B": ("B",), "I": ("I",)},
    "iob1": {"B": ("B", "I"), "I": ("I",)},  # a type without B- opens with I-
    "bioes": {"B": ("B",), "I": ("I",), "L": ("E",), "U": ("S",)},
    "bilou": {"B": ("B",), "I": ("I",), "L": ("L",), "U": ("U",)},
}


class LabelMapping(NamedTuple):
    """How a checkpoint's classifier rows become ``bioner_tagger``'s tags."""

    scheme: str
    """The checkpoint's scheme: ``iob2``, ``iob1``, ``bioes``, ``bilou`` or ``bio``."""
    head_scheme: str
    """``bioner_tagger``'s scheme for it: ``iob2`` or ``bilou``."""
    labels: Tuple[str, ...]
    """Entity types, in the order of their first row in the checkpoint."""
    tags: List[str]
    """``bioner_tagger``'s tag names (``tag_names(labels, scheme=head_scheme)``)."""
    rows: List[Optional[int]]
    """Per tag, the checkpoint's row that gives its score (None: no row; never predicted)."""


def read_label_scheme(id2label: Mapping, *, bare_label: str = "ENTITY") -> LabelMapping:
    """Detect the tag scheme of a checkpoint's labels and map its rows onto ``bioner_tagger``'s tags.

    id2label (Mapping): ``config.id2label`` (keys may be ints or strings of ints).
    bare_label (str): the entity type of a bare ``O``/``B``/``I`` label set.
    RETURNS (LabelMapping): the scheme, entity types, tags and the row of each tag.
    RAISES ConfigValueError: default names only (no ``id2label``), no ``O``, or names that are no tag scheme.
    """
    try:
        names = {int(k): str(v) for k, v in dict(id2label or {}).items()}
    except (TypeError, ValueError):
        raise ConfigValueError(f"config.id2label has keys that are not row numbers: {list(id2label)[:5]}") from None
    if not names:
        raise ConfigValueError("the checkpoint's config has no id2label: its classifier rows have no tag names")
    if sorted(names) != list(range(len(names))):
        raise ConfigValueError(f"config.id2label does not number its rows 0…{len(names) - 1}: {sorted(names)[:10]}")
    if all(_DEFAULT_NAME.match(n) for n in names.values()):
        raise ConfigValueError(f"the checkpoint's config has no id2label (only HF's default names "
                               f"{names[0]}…{names[len(names) - 1]}): which row is which tag is unknown; "
                               "set id2label in its config.json")
    outside = [i for i, n in names.items() if n.upper() in OUTSIDE_NAMES]
    if len(outside) != 1:
        raise ConfigValueError(f"labels {_shown(names)} are no tag scheme: "
                               f"{'no' if not outside else 'more than one'} outside label (O)")
    rest = {i: n for i, n in names.items() if i != outside[0]}
    if rest and set(rest.values()) <= {"B", "I"}:
        by_tag = {(n, bare_label): i for i, n in rest.items()}
        return _mapping("bio", "iob2", (bare_label,), outside[0], by_tag, {"B": ("B",), "I": ("I",)})
    by_tag: Dict[Tuple[str, str], int] = {}
    order: List[str] = []
    bad = []
    for i in sorted(rest):
        match = _TAG.match(rest[i])
        if match is None:
            bad.append(rest[i])
            continue
        prefix, label = match.groups()
        if (prefix, label) in by_tag:
            raise ConfigValueError(f"labels {_shown(names)}: {rest[i]!r} names two rows")
        by_tag[(prefix, label)] = i
        if label not in order:
            order.append(label)
    if bad or not order:
        raise ConfigValueError(f"labels {_shown(names)} are no tag scheme (IOB2, IOB1, BIOES, BILOU or bare "
                               f"B/I/O): {', '.join(map(repr, bad[:5])) or 'no entity tags'}")
    prefixes = {p for p, _ in by_tag}
    if prefixes & {"E", "S"} and prefixes & {"L", "U"}:
        raise ConfigValueError(f"labels {_shown(names)} mix BIOES (E-, S-) and BILOU (L-, U-) tags")
    if prefixes & {"E", "S"}:
        scheme = "bioes"
    elif prefixes & {"L", "U"}:
        scheme = "bilou"
    elif any(("I", label) in by_tag and ("B", label) not in by_tag for label in order):
        scheme = "iob1"
    else:
        scheme = "iob2"
    head_scheme = "bilou" if scheme in ("bioes", "bilou") else "iob2"
    return _mapping(scheme, head_scheme, tuple(order), outside[0], by_tag, _SOURCES[scheme])


def _mapping(scheme: str, head_scheme: str, labels: Tuple[str, ...], outside: int,
             by_tag: Dict[Tuple[str, str], int], sources: Dict[str, Tuple[str, ...]]) -> LabelMapping:
    tags = tag_names(labels, scheme=head_scheme)
    rows: List[Optional[int]] = [outside]
    for tag in tags[1:]:
        prefix, label = tag[0], tag[2:]
        rows.append(next((by_tag[(p, label)] for p in sources.get(prefix, ()) if (p, label) in by_tag), None))
    return LabelMapping(scheme, head_scheme, labels, tags, rows)


def _shown(names: Dict[int, str]) -> str:
    values = [names[i] for i in sorted(names)]
    return "[" + ", ".join(values[:8]) + (", …" if len(values) > 8 else "") + "]"

