"""Seeded noisy copies of annotated Docs, shared by robustness evaluation (``evaluate --noise``) and the
training augmenters (:mod:`spacy_bioner.training.augmenters`).

Each kind turns a gold Doc into a noisy gold Doc whose entities still cover the
same mentions:

* ``typo``: one character edit (swap, deletion, duplication, substitution) in
  words inside and outside mentions; ``typo_mention`` / ``typo_context`` only
  inside / only outside. Token counts never change.
* ``case``: words lower-, upper- or title-cased.
* ``hyphen``: hyphen/space variants inside multi-word mentions (``non-small cell``
  ↔ ``non small-cell``): a ``-`` token between two words is dropped, or two
  words get a ``-`` token between them. Token counts change; entities follow.
* ``spelling``: British ↔ American spellings (``tumour`` ↔ ``tumor``,
  ``haemorrhage`` ↔ ``hemorrhage``, ``-ise`` ↔ ``-ize``…), both ways.
* ``swap``: each mention replaced by another mention of the same type drawn
  from a pool (the training set's mentions, or the test set's own if none is given).

Back-translation would need translation models, which this project does not
ship and cannot fetch offline: it is not offered (rather than faked).

Everything is plain functions over spaCy Docs (no torch); the spaCy augmenters
(``[corpora.train.augmenter]``) in :mod:`spacy_bioner.training.augmenters` wrap them.
"""
import random
import re
from collections import defaultdict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc

from .mixes import copy_corpus_data

#: Noise kinds for ``evaluate --noise``.
NOISE_KINDS = ("typo", "typo_mention", "typo_context", "case", "hyphen", "spelling", "swap")
#: Words per pair: (British, American). Suffix rules below cover the regular cases.
SPELLINGS = {
    "tumour": "tumor", "tumours": "tumors", "haemorrhage": "hemorrhage", "haemoglobin": "hemoglobin",
    "anaemia": "anemia", "leukaemia": "leukemia", "oedema": "edema", "oesophageal": "esophageal",
    "oesophagus": "esophagus", "paediatric": "pediatric", "foetal": "fetal", "foetus": "fetus",
    "haematological": "hematological", "haemophilia": "hemophilia", "ischaemic": "ischemic",
    "ischaemia": "ischemia", "diarrhoea": "diarrhea", "oestrogen": "estrogen", "coeliac": "celiac",
    "haemolytic": "hemolytic", "septicaemia": "septicemia", "hypoglycaemia": "hypoglycemia",
    "hyperglycaemia": "hyperglycemia", "anaesthesia": "anesthesia", "behaviour": "behavior",
    "colour": "color", "fibre": "fiber", "centre": "center", "ageing": "aging", "orthopaedic": "orthopedic",
    "gynaecological": "gynecological", "haemangioma": "hemangioma", "leucocyte": "leukocyte",
    "sulphate": "sulfate", "aetiology": "etiology", "dyspnoea": "dyspnea", "apnoea": "apnea",
}
_SPELL_RULES = [(re.compile(r"(\w{3,})is(e|es|ed|ing|ation|ations)$"), r"\1iz\2",
                 re.compile(r"(\w{3,})iz(e|es|ed|ing|ation|ations)$"), r"\1is\2"),
                (re.compile(r"^(h|an|leuk|septic|isch|hypergly|hypogly)ae(m\w*)$"), r"\1e\2", None, None)]
_AMERICAN = {v: k for k, v in SPELLINGS.items()}
#: Words ending in -ise that are spelt so in American English too.
_ISE_WORDS = {"promise", "precise", "concise", "exercise", "otherwise", "expertise", "advertise", "surprise",
              "compromise", "franchise", "merchandise", "enterprise", "demise", "premise", "excise", "incise",
              "revise", "supervise", "televise", "devise", "comprise", "despise", "disguise", "improvise",
              "chastise", "circumcise", "noise", "poise", "raise", "praise", "cruise", "bruise", "paradise",
              "reprise", "treatise", "clockwise", "likewise", "advise", "rise", "arise", "wise"}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"

Token = Tuple[str, bool, str]  # word, followed by a space, IOB2 tag


# ------------------------------------------------------------------------------------------ helpers
def doc_tokens(doc: Doc) -> List[Token]:
    """(word, space after, IOB2 tag) per token; missing annotation reads as ``O``."""
    out = []
    for t in doc:
        tag = "O" if t.ent_iob_ in ("O", "") else f"{t.ent_iob_}-{t.ent_type_}"
        out.append((t.text, bool(t.whitespace_), tag))
    return out


def build_doc(vocab, tokens: Sequence[Token], *, sent_starts: Optional[Sequence[bool]] = None) -> Doc:
    """A Doc from (word, space, IOB2 tag) tokens; ``sent_starts`` keeps sentence boundaries."""
    words = [w for w, _, _ in tokens]
    spaces = [s for _, s, _ in tokens]
    tags = [t for _, _, t in tokens]
    starts = [bool(x) for x in sent_starts] if sent_starts is not None else None
    if starts is not None and starts:
        starts[0] = True
    return Doc(vocab, words=words, spaces=spaces, ents=tags, sent_starts=starts)


def _sent_starts(doc: Doc) -> Optional[List[bool]]:
    if not doc.has_annotation("SENT_START"):
        return None
    return [bool(t.is_sent_start) for t in doc]


def mentions(doc: Doc) -> Dict[str, List[Tuple[str, ...]]]:
    """Mention words per entity label (duplicates kept: frequent mentions are drawn more often)."""
    pool: Dict[str, List[Tuple[str, ...]]] = defaultdict(list)
    for ent in doc.ents:
        pool[ent.label_].append(tuple(t.text for t in ent))
    return pool


def mention_pool(docs: Iterable[Doc]) -> Dict[str, List[Tuple[str, ...]]]:
    """Mentions per label over many Docs (the source of ``swap``)."""
    pool: Dict[str, List[Tuple[str, ...]]] = defaultdict(list)
    for doc in docs:
        for label, found in mentions(doc).items():
            pool[label].extend(found)
    return dict(pool)


def typo(word: str, rng: random.Random) -> str:
    """One character edit in a word of at least 3 letters (others are returned as they are)."""
    if len(word) < 3 or not any(c.isalpha() for c in word):
        return word
    i = rng.randrange(1, len(word) - 1)  # keep the first and last character: realistic, and never empty
    op = rng.choice(("swap", "delete", "duplicate", "substitute"))
    if op == "swap" and len(word) >= 4:
        i = min(i, len(word) - 3)
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == "delete":
        return word[:i] + word[i + 1:]
    if op == "duplicate":
        return word[:i] + word[i] + word[i:]
    letter = rng.choice(_LETTERS.replace(word[i].lower(), ""))
    return word[:i] + (letter.upper() if word[i].isupper() else letter) + word[i + 1:]


def respell(word: str) -> str:
    """British ↔ American spelling of a word (the word itself when neither form is known)."""
    lower = word.lower()
    other = SPELLINGS.get(lower) or _AMERICAN.get(lower)
    if other is None:
        for brit, to_us, us, to_brit in _SPELL_RULES:
            if brit.match(lower):
                if re.sub(r"is(e|es|ed|ing|ation|ations)$", "ise", lower) in _ISE_WORDS:
                    break
                other = brit.sub(to_us, lower)
                break
            if us is not None and us.match(lower):
                other = us.sub(to_brit, lower)
                break
    if other is None or other == lower:
        return word
    if word.isupper():
        return other.upper()
    if word[:1].isupper():
        return other[:1].upper() + other[1:]
    return other


# ------------------------------------------------------------------------------------------- kinds
def noisy_doc(doc: Doc, kind: str, rng: random.Random, *, rate: float = 0.2,
              pool: Optional[Dict[str, List[Tuple[str, ...]]]] = None) -> Doc:
    """A noisy copy of an annotated Doc; its entities cover the (changed) mentions.

    doc (Doc): gold Doc (entities, optionally sentence starts).
    kind (str): one of :data:`NOISE_KINDS`.
    rng (random.Random): the source of randomness (seed it for reproducible copies).
    rate (float): chance that each eligible word (``typo*``, ``case``), hyphen position
        (``hyphen``) or mention (``swap``) is changed; ``spelling`` changes every word it can.
    pool (Dict[str, List[Tuple[str, ...]]]): mentions per label for ``swap``.
    RETURNS (Doc): a new Doc with the same vocab.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; choose from {', '.join(NOISE_KINDS)}")
    tokens = doc_tokens(doc)
    starts = _sent_starts(doc)
    if kind in ("typo", "typo_mention", "typo_context", "case", "spelling"):
        out = []
        for word, space, tag in tokens:
            inside = tag != "O"
            eligible = kind not in ("typo_mention", "typo_context") or inside == (kind == "typo_mention")
            if kind == "spelling":  # every word with a known other spelling
                word = respell(word)
            elif eligible and rng.random() < rate:
                if kind == "case":
                    word = rng.choice((str.lower, str.upper, str.title))(word)
                else:
                    word = typo(word, rng)
            out.append((word, space, tag))
        return build_doc(doc.vocab, out, sent_starts=starts)
    if kind == "hyphen":
        return _hyphen(doc, tokens, starts, rng, rate=rate)
    return _swap(doc, tokens, starts, rng, rate=rate, pool=pool if pool is not None else mention_pool([doc]))


def _hyphen(doc: Doc, tokens: List[Token], starts: Optional[List[bool]], rng: random.Random, *,
            rate: float) -> Doc:
    out: List[Token] = []
    out_starts: List[bool] = []
    i = 0
    while i < len(tokens):
        word, space, tag = tokens[i]
        start = starts[i] if starts else False
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        inside_next = nxt is not None and tag != "O" and nxt[2].startswith("I-")
        if inside_next and nxt[0] == "-" and i + 2 < len(tokens) and tokens[i + 2][2].startswith("I-") \
                and rng.random() < rate:
            out.append((word, True, tag))  # "non - small" → "non small": drop the hyphen token
            out_starts.append(start)
            i += 2
            continue
        if inside_next and word != "-" and nxt[0] != "-" and space and rng.random() < rate:
            out.append((word, False, tag))  # "small cell" → "small-cell"
            out.append(("-", False, "I-" + tag[2:]))
            out_starts += [start, False]
            i += 1
            continue
        out.append((word, space, tag))
        out_starts.append(start)
        i += 1
    return build_doc(doc.vocab, out, sent_starts=out_starts if starts else None)


def _swap(doc: Doc, tokens: List[Token], starts: Optional[List[bool]], rng: random.Random, *, rate: float,
          pool: Dict[str, List[Tuple[str, ...]]]) -> Doc:
    out: List[Token] = []
    out_starts: List[bool] = []
    position = 0
    for ent in doc.ents:
        for k in range(position, ent.start):
            out.append(tokens[k])
            out_starts.append(starts[k] if starts else False)
        words = tuple(t.text for t in ent)
        choices = [m for m in pool.get(ent.label_, []) if m != words]
        if choices and rng.random() < rate:
            words = rng.choice(choices)
        last_space = bool(doc[ent.end - 1].whitespace_)
        for j, w in enumerate(words):
            out.append((w, True if j < len(words) - 1 else last_space, ("B-" if j == 0 else "I-") + ent.label_))
            out_starts.append(bool(starts[ent.start]) if (starts and j == 0) else False)
        position = ent.end
    for k in range(position, len(tokens)):
        out.append(tokens[k])
        out_starts.append(starts[k] if starts else False)
    return build_doc(doc.vocab, out, sent_starts=out_starts if starts else None)


def noisy_docs(docs: Sequence[Doc], kind: str, *, seed: int = 0, rate: float = 0.2,
               pool: Optional[Dict[str, List[Tuple[str, ...]]]] = None) -> List[Doc]:
    """Noisy copies of every Doc, reproducible from ``seed`` (and independent of other kinds).

    docs (Sequence[Doc]): gold Docs.
    kind (str): one of :data:`NOISE_KINDS`.
    seed (int): seed (each kind draws from its own generator).
    rate (float): see :func:`noisy_doc`.
    pool (Dict[str, List[Tuple[str, ...]]]): ``swap``'s mentions (None: the Docs' own).
    RETURNS (List[Doc]): one copy per Doc (keeping its mix corpus's name and annotated types).
    """
    rng = random.Random(f"{seed}:{kind}")
    if kind == "swap" and pool is None:
        pool = mention_pool(docs)
    return [copy_corpus_data(doc, noisy_doc(doc, kind, rng, rate=rate, pool=pool)) for doc in docs]


def changed_tokens(clean: Sequence[Doc], noisy: Sequence[Doc]) -> float:
    """Share of tokens whose text differs (documents of changed length count all their tokens)."""
    total = changed = 0
    for a, b in zip(clean, noisy):
        total += len(a)
        if len(a) != len(b):
            changed += len(a)
        else:
            changed += sum(x.text != y.text for x, y in zip(a, b))
    return changed / total if total else 0.0


def parse_kinds(value: Union[str, Sequence[str], None]) -> List[str]:
    """``typo,case`` → ``["typo", "case"]`` (``all``: every kind), checked."""
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else [k for v in value for k in v.split(",")]
    kinds = [k.strip() for k in items if k.strip()]
    if "all" in kinds:
        return list(NOISE_KINDS)
    bad = [k for k in kinds if k not in NOISE_KINDS]
    if bad:
        raise ValueError(f"unknown noise kind(s) {', '.join(bad)}; choose from {', '.join(NOISE_KINDS)} or all")
    return list(dict.fromkeys(kinds))
