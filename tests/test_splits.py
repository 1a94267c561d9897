"""Splits that never cut a document: document groups from -DOCSTART- and document ids,
cross-validation folds over them, and cv.json saying what the folds were drawn over."""
import json
import random
from types import SimpleNamespace

import pytest
from spacy.tokens import Doc
from spacy.vocab import Vocab

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.corpus.docbin import load_docbin, save_docbin
from spacy_bioner.corpus.splits import USER_DATA_DOCUMENT, document_groups, load_grouped
from spacy_bioner.experiments.crossval import HEADLINE, assign_folds


def sentence(doc: str, k: int) -> str:
    return f"{doc}s{k}\tO\nmutations\tO\ncause\tO\ncancer\tB-Disease\n.\tO\n"


def conll(n_docs: int, n_sents: int, *, docstart: bool = True, prefix: str = "D") -> str:
    """``n_docs`` documents of ``n_sents`` sentences; each sentence's first word names its document."""
    out = []
    for d in range(n_docs):
        if docstart:
            out.append("-DOCSTART-\tO\n")
        out.extend(sentence(f"{prefix}{d}", k) for k in range(n_sents))
    return "\n".join(out) + "\n"


def document_of(doc: Doc) -> str:
    return doc[0].text.split("s")[0]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf8")
    return path


def test_docstart_documents_read_sentence_by_sentence_stay_together(tmp_path):
    docs = read_docs(write(tmp_path, "a.iob", conll(4, 3)), n_sents=1)
    assert len(docs) == 12  # one Doc per sentence, as `convert --n-sents 1` writes them
    grouping = document_groups(docs)
    assert grouping.documents_known and grouping.n_groups == 4 and grouping.describe() == "document"
    by_group = {}
    for doc, group in zip(docs, grouping.groups):
        by_group.setdefault(group, set()).add(document_of(doc))
    assert sorted(by_group.values(), key=sorted) == [{"D0"}, {"D1"}, {"D2"}, {"D3"}]
    whole = read_docs(write(tmp_path, "b.iob", conll(4, 3)))  # one Doc per document
    assert document_groups(whole).groups == [0, 1, 2, 3]


@pytest.mark.parametrize("seed", range(8))
def test_fold_assignment_never_splits_a_document(tmp_path, seed):
    rng = random.Random(seed)
    text = "".join(conll(1, rng.randint(1, 6), prefix=f"D{d}_") for d in range(rng.randint(6, 15)))
    docs = read_docs(write(tmp_path, "a.iob", text), n_sents=rng.choice([1, 2]))
    k = rng.randint(2, 5)
    folds = assign_folds(document_groups(docs), k, seed=seed)
    assert sorted(i for fold in folds for i in fold) == list(range(len(docs)))
    fold_of_document = {}
    for f, fold in enumerate(folds):
        for i in fold:
            assert fold_of_document.setdefault(document_of(docs[i]), f) == f, "a document is in two folds"


def test_without_documents_each_sentence_is_its_own_group_and_it_says_so(tmp_path):
    docs = read_docs(write(tmp_path, "ncbi.iob", conll(3, 2, docstart=False)))  # MTL NCBI: no -DOCSTART-
    grouping = document_groups(docs)
    assert grouping.groups == list(range(6)) and not grouping.documents_known
    assert grouping.describe().startswith("sentence (documents unknown: no -DOCSTART- lines or document ids")


def test_document_ids_group_docs_wherever_they_are():
    vocab = Vocab()
    docs = [Doc(vocab, words=[w]) for w in "a b c d e".split()]
    for doc, doc_id in zip(docs, ["x", "y", "x", None, "y"]):
        if doc_id:
            doc.user_data[USER_DATA_DOCUMENT] = doc_id
    grouping = document_groups(docs)
    assert grouping.groups == [0, 1, 0, 2, 1] and grouping.n_unknown == 1
    assert grouping.describe().startswith("document where known (1 of 5 Docs")


def test_files_are_grouped_one_by_one_and_docbins_keep_documents(tmp_path):
    """A file without -DOCSTART- after one with them is not taken for the last document's continuation."""
    with_docs = write(tmp_path, "a.iob", conll(2, 3))
    without = write(tmp_path, "b.iob", conll(2, 2, docstart=False, prefix="N"))
    docbin = tmp_path / "c.spacy"
    save_docbin(read_docs(write(tmp_path, "c.iob", conll(2, 2, prefix="B")), n_sents=1), docbin)
    docs, grouping = load_grouped([with_docs, without, docbin], vocab=Vocab())
    assert [document_of(d) for d in docs] == ["D0", "D1"] + ["N0"] * 2 + ["N1"] * 2 + ["B0"] * 2 + ["B1"] * 2
    assert grouping.groups == [0, 1, 2, 3, 4, 5, 6, 6, 7, 7]
    assert grouping.n_unknown == 4 and grouping.describe().startswith("document where known (4 of 10 Docs")
    assert len(load_docbin(docbin)) == 4


def fake_metrics():
    metrics = {}
    for path in HEADLINE.values():
        node = metrics
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = 0.5
    return metrics


@pytest.fixture
def no_training(monkeypatch):
    """cross_validate with training and scoring stubbed out: the folds on disk and cv.json only."""
    monkeypatch.setattr("spacy_bioner.training.config.build_config", lambda *a, **k: {})
    monkeypatch.setattr("spacy_bioner.training.run.run_training",
                        lambda *a, **k: SimpleNamespace(to_dict=lambda: {"steps": 1, "config": {}}))
    monkeypatch.setattr("spacy_bioner.evaluation.predict.evaluate_model", lambda *a, **k: ([], fake_metrics()))


def test_cross_validation_folds_keep_documents_and_cv_json_says_so(tmp_path, no_training):
    from spacy_bioner.experiments.crossval import cross_validate

    data = write(tmp_path, "a.iob", conll(9, 3))
    convert_like = tmp_path / "a.spacy"
    save_docbin(read_docs(data, n_sents=1), convert_like)  # sentence-per-Doc, as `convert --n-sents 1`
    seen = []
    cv = cross_validate("tok2vec", [convert_like], tmp_path / "cv", folds=3, on_grouping=seen.append)
    assert cv["grouping"] == "document" and cv["n_groups"] == 9 and cv["n_documents"] == 27
    assert seen and seen[0].documents_known
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["grouping"] == "document"
    for k in range(3):
        parts = {name: {document_of(d) for d in load_docbin(tmp_path / "cv" / f"fold_{k}" / f"{name}.spacy")}
                 for name in ("train", "dev", "test")}
        assert not parts["test"] & (parts["train"] | parts["dev"]) and not parts["dev"] & parts["train"]


def test_cv_json_says_when_documents_are_unknown(tmp_path, no_training):
    from spacy_bioner.experiments.crossval import cross_validate

    data = write(tmp_path, "ncbi.iob", conll(4, 3, docstart=False))
    cv = cross_validate("tok2vec", [data], tmp_path / "cv", folds=3)
    assert cv["grouping"].startswith("sentence (documents unknown")
    assert json.loads((tmp_path / "cv" / "cv.json").read_text())["grouping"] == cv["grouping"]
