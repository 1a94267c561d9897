"""`spacy-bioner split`: by document, stratified by entity type, seeded and the same on any machine."""
import json
import os
import random
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.corpus.docbin import load_docbin
from spacy_bioner.corpus.splits import stratified_assignment

from .conftest import PROJECT
from .test_splits import conll, document_of

runner = CliRunner()


def corpus(tmp_path, n_docs=30, n_sents=3):
    """IOB documents (-DOCSTART-) converted one sentence per Doc, so a document is several Docs."""
    iob = tmp_path / "corpus.iob"
    iob.write_text(conll(n_docs, n_sents), encoding="utf8")
    result = runner.invoke(app, ["convert", str(iob), str(tmp_path / "corpus.spacy"), "--n-sents", "1"])
    assert result.exit_code == 0, result.output
    return tmp_path / "corpus.spacy"


def test_split_never_cuts_a_document_and_lists_every_document_once(tmp_path):
    data = corpus(tmp_path)
    result = runner.invoke(app, ["split", str(data), str(tmp_path / "out"), "--ratios", "0.6,0.2,0.2", "--seed", "3"])
    assert result.exit_code == 0, result.output
    part_of = {}
    for name in ("train", "dev", "test"):
        for doc in load_docbin(tmp_path / "out" / f"{name}.spacy"):
            assert part_of.setdefault(document_of(doc), name) == name, "a document is in two parts"
    assert len(part_of) == 30
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    listed = [d for p in split["parts"].values() for d in p["documents"]]
    assert len(listed) == len(set(listed)) == 30
    assert [split["parts"][n]["n_documents"] for n in ("train", "dev", "test")] == [18, 6, 6]
    assert sum(p["n_docs"] for p in split["parts"].values()) == 90


def test_same_seed_same_split_json_in_fresh_processes_other_seed_differs(tmp_path):
    data = corpus(tmp_path)

    def run(out, seed, hashseed):
        env = {**os.environ, "PYTHONHASHSEED": str(hashseed)}
        subprocess.run([sys.executable, "-m", "spacy_bioner", "split", str(data), str(out), "--seed", str(seed)],
                       check=True, capture_output=True, env=env, cwd=PROJECT)
        return (out / "split.json").read_text()

    first = run(tmp_path / "a", 0, 1)
    assert run(tmp_path / "b", 0, 2) == first  # no hash randomisation anywhere
    assert (tmp_path / "a" / "train.spacy").read_bytes() == (tmp_path / "b" / "train.spacy").read_bytes()
    result = runner.invoke(app, ["split", str(data), str(tmp_path / "c"), "--seed", "1"])
    assert result.exit_code == 0 and (tmp_path / "c" / "split.json").read_text() != first


def skewed_counts(seed):
    """100 documents: type A everywhere, B in a fifth, C in a tenth (1-3 mentions each), some without any."""
    rng = random.Random(seed)
    counts = []
    for i in range(100):
        c = {}
        if i % 7:
            c["A"] = rng.randint(1, 5)
        if i % 5 == 0:
            c["B"] = rng.randint(1, 3)
        if i % 10 == 3:
            c["C"] = rng.randint(1, 3)
        counts.append(c)
    return counts


@pytest.mark.parametrize("seed", range(5))
def test_stratification_keeps_each_types_share_near_the_ratio(seed):
    counts = skewed_counts(seed)
    names = [f"PMID{i}" for i in range(100)]
    ratios = [0.8, 0.1, 0.1]
    parts = stratified_assignment(counts, names, ratios, seed=seed)
    for label in "ABC":
        total = sum(c.get(label, 0) for c in counts)
        for p, ratio in enumerate(ratios):
            share = sum(c.get(label, 0) for c, q in zip(counts, parts) if q == p) / total
            assert abs(share - ratio) <= 0.06, (label, p, share)
    for p, ratio in enumerate(ratios):  # and about the ratio of documents
        assert abs(parts.count(p) - ratio * 100) <= 3
    # the names, not their order, decide: a shuffled input gives the same parts
    order = list(range(100))
    random.Random(99).shuffle(order)
    shuffled = stratified_assignment([counts[i] for i in order], [names[i] for i in order], ratios, seed=seed)
    assert [shuffled[order.index(i)] for i in range(100)] == parts


def test_folds_write_train_dev_test_per_fold_each_document_tested_once(tmp_path):
    data = corpus(tmp_path, n_docs=12, n_sents=2)
    result = runner.invoke(app, ["split", str(data), str(tmp_path / "cv"), "--folds", "3"])
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "cv" / "split.json").read_text())
    assert list(split["parts"]) == ["fold_1", "fold_2", "fold_3"] and split["folds"] == 3
    tested = []
    for k in range(1, 4):
        roles = {name: {document_of(d) for d in load_docbin(tmp_path / "cv" / f"fold_{k}" / f"{name}.spacy")}
                 for name in ("train", "dev", "test")}
        assert not (roles["train"] & roles["dev"]) and not (roles["train"] & roles["test"])
        assert len(roles["train"] | roles["dev"] | roles["test"]) == 12
        tested.extend(roles["test"])
    assert sorted(tested) == sorted(f"D{i}" for i in range(12))


PUBTATOR = "".join(
    f"{pmid}|t|Aspirin causes headache number {pmid}.\n{pmid}|a|No abstract.\n"
    f"{pmid}\t0\t7\tAspirin\tChemical\t-1\n{pmid}\t15\t23\theadache\tDisease\t-1\n\n"
    for pmid in range(100, 120)
)


def test_split_reads_standoff_and_names_documents_by_their_ids(tmp_path):
    (tmp_path / "c.pubtator").write_text(PUBTATOR, encoding="utf8")
    result = runner.invoke(app, ["split", str(tmp_path / "c.pubtator"), str(tmp_path / "out"), "--ratios", "0.5,0.5"])
    assert result.exit_code == 0, result.output
    split = json.loads((tmp_path / "out" / "split.json").read_text())
    assert list(split["parts"]) == ["train", "test"] and split["grouping"] == "document"
    assert sorted(split["parts"]["train"]["documents"] + split["parts"]["test"]["documents"]) == \
        [str(i) for i in range(100, 120)]
    docs = load_docbin(tmp_path / "out" / "test.spacy")
    assert len(docs) == 10 and all([e.text for e in d.ents] == ["Aspirin", "headache"] for d in docs)


@pytest.mark.parametrize("args,expected", [
    (["--ratios", "0.8,0.3"], "'0.8,0.3': 2 (train,test) or 3"),
    (["--ratios", "a,b"], "comma-separated numbers"),
    (["--folds", "1"], "must be at least 2"),
])
def test_split_bad_options_are_one_line(tmp_path, args, expected):
    data = corpus(tmp_path, n_docs=3, n_sents=1)
    result = runner.invoke(app, ["split", str(data), str(tmp_path / "out"), *args])
    assert result.exit_code != 0 and expected in " ".join(result.output.split()), result.output


def test_split_missing_input_is_one_line(tmp_path):
    result = runner.invoke(app, ["split", str(tmp_path / "nope.iob"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "nope.iob: no such file or folder" in result.output
    assert len(result.output.strip().splitlines()) == 1
