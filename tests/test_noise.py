"""Noisy copies of gold Docs (``evaluate --noise``) and the training augmenters built on them."""
import json
import random

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.corpus.mixes import ANNOTATES, CORPUS
from spacy_bioner.corpus.noise import (NOISE_KINDS, changed_tokens, mention_pool, noisy_doc, noisy_docs,
                                           parse_kinds, respell, typo)

runner = CliRunner()
WORDS = "Patients with non - small cell lung cancer and haemorrhage were randomised by tumour size .".split()
TAGS = ["O", "O", "B-Disease", "I-Disease", "I-Disease", "I-Disease", "I-Disease", "I-Disease", "O", "B-Disease",
        "O", "O", "O", "O", "O", "O"]
POOL = {"Disease": [("breast", "cancer"), ("ataxia",), ("von", "Willebrand", "disease")]}


@pytest.fixture
def doc():
    nlp = spacy.blank("en")
    return Doc(nlp.vocab, words=WORDS, ents=TAGS, sent_starts=[True] + [False] * (len(WORDS) - 1))


def ent_tokens(d):
    return [([t.text for t in e], e.label_) for e in d.ents]


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_every_kind_is_seeded_and_keeps_entities_on_their_mentions(doc, kind):
    a = noisy_docs([doc] * 5, kind, seed=1, rate=0.5, pool=POOL)
    b = noisy_docs([doc] * 5, kind, seed=1, rate=0.5, pool=POOL)
    assert [d.text for d in a] == [d.text for d in b] and [ent_tokens(d) for d in a] == [ent_tokens(d) for d in b]
    for d in a:
        assert len(d.ents) == 2 and all(e.label_ == "Disease" for e in d.ents)
        assert d[0].is_sent_start
        if kind in ("typo", "typo_mention", "typo_context", "case", "spelling"):
            assert len(d) == len(doc)  # characters change, not the tokenisation
            assert [(e.start, e.end) for e in d.ents] == [(e.start, e.end) for e in doc.ents]
    if kind != "spelling":
        assert any(d.text != doc.text for d in a)


@pytest.mark.parametrize("kind", NOISE_KINDS)
def test_noisy_copies_keep_their_mix_corpus(doc, kind):
    # a corpus-named prompt reads the name at prediction; without it the robustness scores use another prompt
    doc.user_data[CORPUS], doc.user_data[ANNOTATES] = "NCBI-disease", ["Disease"]
    for d in noisy_docs([doc] * 3, kind, seed=0, rate=0.7, pool=POOL):
        assert d.user_data[CORPUS] == "NCBI-disease" and d.user_data[ANNOTATES] == ["Disease"]


def test_typos_inside_or_outside_mentions_only(doc):
    for kind, inside in (("typo_mention", True), ("typo_context", False)):
        for d in noisy_docs([doc] * 10, kind, seed=0, rate=0.7):
            for t, orig in zip(d, doc):
                if t.text != orig.text:
                    assert (orig.ent_iob_ != "O") == inside
    rng = random.Random(0)
    for _ in range(50):
        w = typo("carcinoma", rng)
        assert w[0] == "c" and w[-1] == "a" and abs(len(w) - 9) <= 1
    assert typo("of", rng) == "of"


def test_hyphen_variants_follow_the_entities(doc):
    seen = set()
    for d in noisy_docs([doc] * 20, "hyphen", seed=0, rate=0.5):
        mention = d.ents[0]
        text = mention.text.replace(" - ", "-")
        assert text.replace("-", " ").split() == ["non", "small", "cell", "lung", "cancer"]
        seen.add(mention.text)
        assert d.ents[1].text == "haemorrhage"
    assert "non small cell lung cancer" in {s.replace(" - ", " ") for s in seen} or len(seen) > 1
    assert any("small-cell" in s or "non small" in s for s in seen)


def test_spellings_both_ways():
    assert [respell(w) for w in ("tumour", "Tumor", "HAEMORRHAGE", "randomised", "organization", "promised",
                                 "haemodialysis", "cell")] == \
        ["tumor", "Tumour", "HEMORRHAGE", "randomized", "organisation", "promised", "hemodialysis", "cell"]


def test_swap_draws_same_type_mentions(doc):
    d = noisy_doc(doc, "swap", random.Random(0), rate=1.0, pool=POOL)
    assert all(tuple(t.text for t in e) in POOL["Disease"] for e in d.ents)
    assert d[-1].text == "." and d.text.rstrip().endswith("tumour size .")
    own = noisy_docs([doc], "swap", seed=0, rate=1.0)[0]  # no pool: the data's own mentions
    assert {e.text for e in own.ents} <= {"non - small cell lung cancer", "haemorrhage"}
    assert mention_pool([doc]) == {"Disease": [tuple(WORDS[2:8]), ("haemorrhage",)]}
    assert changed_tokens([doc], [d]) == 1.0 and changed_tokens([doc], [doc]) == 0.0


def test_parse_kinds():
    assert parse_kinds("typo, case") == ["typo", "case"] and parse_kinds("all") == list(NOISE_KINDS)
    assert parse_kinds(None) == []
    with pytest.raises(ValueError, match="unknown noise kind"):
        parse_kinds("typo,backtranslation")


@pytest.mark.parametrize("name", ["spacy_bioner.entity_swap_augmenter.v1", "spacy_bioner.mention_noise_augmenter.v1",
                                  "spacy_bioner.case_augmenter.v1"])
def test_augmenters_from_the_registry(doc, name):
    import spacy_bioner.training.augmenters  # noqa: F401

    nlp = spacy.blank("en")
    augment = spacy.registry.resolve({"a": {"@augmenters": name, "level": 1.0, "seed": 0}})["a"]
    example = Example(Doc(nlp.vocab, words=WORDS), doc)
    outs = [eg for _ in range(5) for eg in augment(nlp, example)]
    assert len(outs) == 5 and any(eg.reference.text != doc.text for eg in outs)
    for eg in outs:
        assert [t.text for t in eg.predicted] == [t.text for t in eg.reference]
        assert len(eg.reference.ents) == 2 and not eg.predicted.ents
    none = spacy.registry.resolve({"a": {"@augmenters": name, "level": 0.0}})["a"]
    assert [eg.reference.text for eg in none(nlp, example)] == [doc.text]


def test_augmenter_in_a_corpus_config(tmp_path):
    from spacy_bioner.corpus.readers import create_iob_corpus
    import spacy_bioner.training.augmenters  # noqa: F401

    path = tmp_path / "train.tsv"
    path.write_text("\n".join(f"{w}\t{t}" for w, t in zip(WORDS, TAGS)) + "\n\n", encoding="utf8")
    augmenter = spacy.registry.resolve({"a": {"@augmenters": "spacy_bioner.entity_swap_augmenter.v1",
                                              "level": 1.0, "rate": 1.0, "source": str(path)}})["a"]
    corpus = create_iob_corpus(path=str(path), augmenter=augmenter)
    examples = list(corpus(spacy.blank("en")))
    assert len(examples) == 1 and len(examples[0].reference.ents) == 2
    assert [e.text for e in examples[0].reference.ents] != ["non - small cell lung cancer", "haemorrhage"]


def test_chain_augmenter_applies_each_in_turn(doc):
    from spacy_bioner.training.augmenters import chain

    nlp = spacy.blank("en")
    example = Example(Doc(nlp.vocab, words=WORDS), doc)
    calls = []

    def tag(name, copies):
        def augment(nlp, eg):
            calls.append((name, eg.reference.user_data.get("seen", ())))
            for _ in range(copies):
                ref = eg.reference.copy()
                ref.user_data["seen"] = (*eg.reference.user_data.get("seen", ()), name)
                yield Example(eg.predicted.copy(), ref)
        return augment

    outs = list(chain([tag("a", 2), tag("b", 1)])(nlp, example))
    assert [eg.reference.user_data["seen"] for eg in outs] == [("a", "b"), ("a", "b")]
    assert calls == [("a", ()), ("b", ("a",)), ("b", ("a",))]


def test_augment_noise_config_chains_mention_noise_and_swaps(tmp_path):
    from spacy.util import load_model_from_config, resolve_dot_names

    from spacy_bioner.training.config import build_config

    from .conftest import PROJECT

    path = tmp_path / "train.tsv"
    path.write_text("\n".join(f"{w}\t{t}" for w, t in zip(WORDS, TAGS)) + "\n\n", encoding="utf8")
    config = build_config(PROJECT / "configs" / "tok2vec.cfg", augment="noise", overrides={
        "paths.train": str(path), "paths.dev": str(path),
        "corpora.train.augmenter.*.mentions.level": 1.0, "corpora.train.augmenter.*.swap.level": 1.0,
        "corpora.train.augmenter.*.swap.rate": 1.0})
    block = config["corpora"]["train"]["augmenter"]
    assert block["@augmenters"] == "spacy_bioner.chain_augmenter.v1"
    assert [b["@augmenters"] for b in block["*"].values()] == ["spacy_bioner.mention_noise_augmenter.v1",
                                                              "spacy_bioner.entity_swap_augmenter.v1"]
    nlp = load_model_from_config(config, auto_fill=True)
    (train,) = resolve_dot_names(nlp.config.interpolate(), ["corpora.train"])
    examples = list(train(nlp))
    assert len(examples) == 1 and examples[0].reference.text != " ".join(WORDS)
    assert len(examples[0].reference.ents) == 2


@pytest.fixture
def ruler_model(tmp_path):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "Disease", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}]},
                        {"label": "Disease", "pattern": "haemorrhage"}, {"label": "Disease", "pattern": "ataxia"}])
    nlp.to_disk(tmp_path / "model")
    return tmp_path / "model"


def test_evaluate_noise_table_in_metrics_and_report(ruler_model, tmp_path):
    rows = ["breast\tB-Disease\ncancer\tI-Disease\nand\tO\nhaemorrhage\tB-Disease\nin\tO\nmice\tO\n.\tO\n"] * 6
    gold = tmp_path / "gold.tsv"
    gold.write_text("\n".join(rows) + "\n", encoding="utf8")
    train = tmp_path / "train.tsv"
    train.write_text("ataxia\tB-Disease\nis\tO\nrare\tO\n\n", encoding="utf8")
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", str(ruler_model), str(gold), "-o", str(out / "m.json"),
                                 "-r", str(out / "r.md"), "--bootstrap", "20", "--noise", "typo,case,spelling,swap",
                                 "--noise-train", str(train), "--noise-rate", "1.0"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "m.json").read_text())
    rob = m["robustness"]
    assert rob["clean"]["f"] == 1.0 and list(rob["kinds"]) == ["typo", "case", "spelling", "swap"]
    assert rob["kinds"]["typo"]["f"] < 1.0 and rob["kinds"]["typo"]["delta_f"] < 0
    assert rob["kinds"]["spelling"]["f"] < 1.0  # haemorrhage → hemorrhage: the ruler misses it
    assert rob["kinds"]["swap"]["f"] > 0.5  # ataxia: the ruler knows it
    report = (out / "r.md").read_text()
    assert "## Robustness: clean vs noisy copies" in report and "| swap |" in report
    bad = runner.invoke(app, ["evaluate", str(ruler_model), str(gold), "--noise", "typo,backtranslation"])
    assert bad.exit_code != 0 and "backtranslation" in bad.output
