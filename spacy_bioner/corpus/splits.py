"""Which Docs belong to one document, so that splits (cross-validation folds, train/dev/test)
never put parts of a document on both sides.

A corpus read sentence by sentence (``convert --n-sents 1``, or an IOB file whose
documents were cut into several Docs) has several Docs per document. A document
is known from:

* a document id in ``doc.user_data[USER_DATA_DOCUMENT]``, set by a reader that
  knows it (the same id on every Doc of the document);
* ``-DOCSTART-`` (``doc.user_data["spacy_bioner.docstart"]``): the Doc that a
  ``-DOCSTART-`` line opened starts a document, and the Docs after it in the same
  file, up to the next document, are its later parts.

A file without either (MTL's NCBI-disease IOB files have no ``-DOCSTART-``) does
not say which sentences form an abstract: each Doc is then its own group, and
the grouping says so.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple, Union

from spacy.tokens import Doc
from spacy.vocab import Vocab

from .conll import USER_DATA_DOCSTART, corpus_files
from .sentences import n_sentences

#: ``doc.user_data`` key of a document id (any string): Docs with the same id are one document.
USER_DATA_DOCUMENT = "spacy_bioner.document"


@dataclass
class DocumentGroups:
    """Docs grouped by document.

    groups (List[int]): the group of each Doc (0 … ``n_groups - 1``, in order of first appearance).
    n_groups (int): how many groups.
    n_unknown (int): Docs whose document is unknown (each is a group of its own).
    unit (str): what an unknown Doc is: ``sentence`` (all of them have one) or ``Doc``.
    """

    groups: List[int]
    n_groups: int
    n_unknown: int
    unit: str = "sentence"

    @property
    def documents_known(self) -> bool:
        """Every Doc's document is known."""
        return self.n_unknown == 0

    def describe(self) -> str:
        """One line for reports and ``cv.json``: ``document``, or what the groups are and why."""
        if self.n_unknown == 0:
            return "document"
        reason = "no -DOCSTART- lines or document ids in the data"
        if self.n_unknown == len(self.groups):
            return (f"{self.unit} (documents unknown: {reason}, so {self.unit}s of one document "
                    "can land in different folds)")
        return (f"document where known ({self.n_unknown} of {len(self.groups)} Docs have no known document "
                f"and are grouped alone: {reason})")


def document_groups(docs: Sequence[Doc]) -> DocumentGroups:
    """Group the Docs of one file (or DocBin) by document.

    docs (Sequence[Doc]): the Docs in file order (later parts of a ``-DOCSTART-``
        document follow its first Doc).
    RETURNS (DocumentGroups): a group per Doc; Docs of one document share it.
    """
    keys: Dict[Hashable, int] = {}
    groups: List[int] = []
    n_unknown = 0
    all_single = True
    current: Hashable = None  # the -DOCSTART- document the next Docs continue
    for i, doc in enumerate(docs):
        doc_id = doc.user_data.get(USER_DATA_DOCUMENT)
        if doc_id is not None:
            key: Hashable = ("id", str(doc_id))
            current = None
        elif doc.user_data.get(USER_DATA_DOCSTART):
            key = current = ("docstart", i)
        elif current is not None:
            key = current
        else:
            key = ("doc", i)
            n_unknown += 1
            all_single = all_single and n_sentences(doc) <= 1
        groups.append(keys.setdefault(key, len(keys)))
    return DocumentGroups(groups=groups, n_groups=len(keys), n_unknown=n_unknown,
                          unit="sentence" if all_single else "Doc")


def concat_groups(parts: Sequence[DocumentGroups]) -> DocumentGroups:
    """The groups of several files, one after another (a document never spans two files).

    parts (Sequence[DocumentGroups]): the groups of each file, in order.
    RETURNS (DocumentGroups): over all their Docs.
    """
    groups: List[int] = []
    offset = 0
    for part in parts:
        groups.extend(offset + g for g in part.groups)
        offset += part.n_groups
    unknown = [p for p in parts if p.n_unknown]
    return DocumentGroups(groups=groups, n_groups=sum(p.n_groups for p in parts),
                          n_unknown=sum(p.n_unknown for p in parts),
                          unit="sentence" if all(p.unit == "sentence" for p in unknown) else "Doc")


def load_grouped(paths: Sequence[Union[str, Path]], *, vocab: Vocab) -> Tuple[List[Doc], DocumentGroups]:
    """The Docs of every corpus file under ``paths``, pooled, grouped by document file by file.

    paths (Sequence[Union[str, Path]]): ``.spacy`` files, token-per-line files, or folders of them.
    vocab (Vocab): the vocab of the Docs.
    RETURNS (Tuple[List[Doc], DocumentGroups]): the Docs in order, and their groups.
    """
    from .readers import load_corpus_docs

    docs: List[Doc] = []
    parts: List[DocumentGroups] = []
    for path in map(Path, paths):
        for file in [path] if path.suffix == ".spacy" else corpus_files(path):
            found = load_corpus_docs(file, vocab=vocab)
            docs.extend(found)
            parts.append(document_groups(found))
    return docs, concat_groups(parts)


# ---------------------------------------------------------------- stratified document splits
#: Split names by number of parts (``split --ratios``).
SPLIT_NAMES = {2: ("train", "test"), 3: ("train", "dev", "test")}


def group_ids(docs: Sequence[Doc], grouping: DocumentGroups) -> List[str]:
    """A name per document group: its document id where known, else ``#i`` (``i`` the index of its first Doc).

    docs (Sequence[Doc]): the Docs.
    grouping (DocumentGroups): their groups.
    RETURNS (List[str]): one name per group, in group order.
    """
    names: List[Optional[str]] = [None] * grouping.n_groups
    for i, (doc, group) in enumerate(zip(docs, grouping.groups)):
        if names[group] is None:
            doc_id = doc.user_data.get(USER_DATA_DOCUMENT)
            names[group] = str(doc_id) if doc_id is not None else f"#{i}"
    return [n or "" for n in names]


def _natural_key(name: str) -> Tuple:
    """``#2`` before ``#10``, ``PMID9`` before ``PMID10``: digit runs compare as numbers."""
    import re

    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", name) if p)


def stratified_assignment(
    counts: Sequence[Mapping[str, int]],
    names: Sequence[str],
    ratios: Sequence[float],
    *,
    seed: int,
    by_documents: bool = True,
) -> List[int]:
    """Assign whole documents to parts so each part gets about its share of each entity type.

    Iterative stratification (Sechidis et al., 2011), on documents: documents are taken
    rarest type first (the corpus total of the rarest type they hold; documents without
    entities last), in a seeded shuffle of their sorted names; each goes to the part that
    still lacks most documents with that type (as Sechidis et al. count examples per
    label; or mentions of it, ``by_documents=False``), then most documents, ties broken
    by the seeded RNG.
    The result depends on the names, counts, ratios and seed only (not on hashing or input order).

    counts (Sequence[Mapping[str, int]]): entities per type of each document.
    names (Sequence[str]): a unique name per document (its id).
    ratios (Sequence[float]): the parts' shares (normalised to sum 1).
    seed (int): seed of the shuffle and the tie-breaks.
    by_documents (bool): balance the documents holding each type (True) or its mentions.
    RETURNS (List[int]): the part of each document.
    """
    import random

    if len(counts) != len(names):
        raise ValueError("one name per document")
    if not ratios or any(r < 0 for r in ratios) or sum(ratios) <= 0:
        raise ValueError(f"ratios {list(ratios)}: need non-negative shares that sum to more than 0")
    shares = [r / sum(ratios) for r in ratios]
    k = len(shares)
    total: Dict[str, int] = {}
    for c in counts:
        for label, n in c.items():
            if n:
                total[label] = total.get(label, 0) + n
    docs_with: Dict[str, int] = {}
    for c in counts:
        for label, n in c.items():
            if n:
                docs_with[label] = docs_with.get(label, 0) + 1
    base = docs_with if by_documents else total
    rng = random.Random(seed)
    order = sorted(range(len(names)), key=lambda i: _natural_key(names[i]))
    rng.shuffle(order)

    def rarest(i: int) -> Optional[str]:
        present = [label for label, n in counts[i].items() if n]
        return min(present, key=lambda label: (base[label], label)) if present else None

    order.sort(key=lambda i: (0, base[rarest(i)]) if rarest(i) is not None else (1, 0))  # stable: keeps the shuffle
    want_docs = [s * len(names) for s in shares]
    want = [{label: s * n for label, n in base.items()} for s in shares]
    parts = [0] * len(names)
    for i in order:
        label = rarest(i)
        scores = [((want[p][label] if label is not None else 0.0), want_docs[p]) for p in range(k)]
        scores = [s if shares[p] > 0 else (float("-inf"), float("-inf")) for p, s in enumerate(scores)]
        best = max(scores)
        tied = [p for p in range(k) if scores[p] == best]
        part = tied[0] if len(tied) == 1 else rng.choice(tied)
        parts[i] = part
        want_docs[part] -= 1
        for lab, n in counts[i].items():
            if n:
                want[part][lab] -= 1 if by_documents else n
    return parts


def split_documents(
    docs: Sequence[Doc],
    grouping: DocumentGroups,
    *,
    ratios: Optional[Sequence[float]] = None,
    folds: int = 0,
    seed: int = 0,
) -> Tuple[List[List[int]], List[List[str]]]:
    """Stratified parts of a corpus, whole documents only.

    docs (Sequence[Doc]): the Docs.
    grouping (DocumentGroups): their documents (:func:`document_groups`).
    ratios (Optional[Sequence[float]]): shares of the parts (e.g. 0.8, 0.1, 0.1).
    folds (int): or this many equal parts (cross-validation folds).
    seed (int): the seed.
    RETURNS (Tuple[List[List[int]], List[List[str]]]): Doc indices per part (in input order) and the
        document names per part (sorted).
    """
    if folds:
        if folds < 2:
            raise ValueError(f"--folds {folds}: need at least 2")
        ratios = [1.0] * folds
    if not ratios:
        raise ValueError("give ratios or folds")
    names = group_ids(docs, grouping)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1}, key=_natural_key)[:3]
        raise ValueError(f"document ids are not unique across the input (e.g. {', '.join(dup)}): "
                         "one document in two places")
    counts: List[Dict[str, int]] = [{} for _ in names]
    for doc, group in zip(docs, grouping.groups):
        for ent in doc.ents:
            counts[group][ent.label_] = counts[group].get(ent.label_, 0) + 1
    part_of = stratified_assignment(counts, names, ratios, seed=seed)
    indices: List[List[int]] = [[] for _ in ratios]
    for i, group in enumerate(grouping.groups):
        indices[part_of[group]].append(i)
    members: List[List[str]] = [sorted((names[g] for g in range(len(names)) if part_of[g] == p), key=_natural_key)
                                for p in range(len(ratios))]
    return indices, members


def entity_counts(docs: Sequence[Doc]) -> Dict[str, int]:
    """Entities per type of some Docs (sorted by type)."""
    found: Dict[str, int] = {}
    for doc in docs:
        for ent in doc.ents:
            found[ent.label_] = found.get(ent.label_, 0) + 1
    return dict(sorted(found.items()))


def write_split(
    docs: Sequence[Doc],
    grouping: DocumentGroups,
    output_dir: Union[str, Path],
    *,
    ratios: Optional[Sequence[float]] = None,
    folds: int = 0,
    seed: int = 0,
    source: str = "",
) -> Dict[str, Any]:
    """Split Docs by document (stratified, seeded) and write the parts and ``split.json``.

    With ``ratios`` (2 or 3 shares): ``train.spacy`` [``dev.spacy``] ``test.spacy``. With
    ``folds``: ``fold_K/{train,dev,test}.spacy`` for K = 1 … folds (fold K the test set,
    the next fold the dev set, the rest trains, as ``cross-validate`` does).

    RETURNS (Dict[str, Any]): what ``split.json`` holds: seed, ratios or folds, grouping,
        and per part its documents (ids, sorted), Docs and entities per type.
    """
    from .docbin import save_docbin

    out = Path(output_dir)
    if ratios is not None and not folds and len(ratios) not in SPLIT_NAMES:
        raise ValueError(f"--ratios {','.join(map(str, ratios))}: give 2 (train, test) or 3 (train, dev, test) shares")
    indices, members = split_documents(docs, grouping, ratios=ratios, folds=folds, seed=seed)

    def part(p: int) -> Dict[str, Any]:
        chosen = [docs[i] for i in indices[p]]
        return {"documents": members[p], "n_documents": len(members[p]), "n_docs": len(chosen),
                "entities": entity_counts(chosen)}

    summary: Dict[str, Any] = {"source": source, "seed": seed, "grouping": grouping.describe(),
                               "n_documents": grouping.n_groups, "entities": entity_counts(docs)}
    if folds:
        summary["folds"] = folds
        summary["parts"] = {f"fold_{p + 1}": part(p) for p in range(folds)}
        for k in range(folds):
            dev = (k + 1) % folds
            roles = {"test": indices[k], "dev": indices[dev],
                     "train": sorted(i for p in range(folds) if p not in (k, dev) for i in indices[p])}
            for name, idx in roles.items():
                save_docbin([docs[i] for i in idx], out / f"fold_{k + 1}" / f"{name}.spacy")
    else:
        assert ratios is not None
        names = SPLIT_NAMES[len(ratios)]
        summary["ratios"] = [float(r) for r in ratios]
        summary["parts"] = {name: part(p) for p, name in enumerate(names)}
        for p, name in enumerate(names):
            save_docbin([docs[i] for i in indices[p]], out / f"{name}.spacy")
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf8")
    return summary
