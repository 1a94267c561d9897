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
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Hashable, List, Sequence, Tuple, Union

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
