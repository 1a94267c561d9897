import pytest
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.evaluation.scoring import (
    SentencePair,
    TokenMismatchError,
    align_docs,
    bootstrap_f1,
    errors,
    match_entities,
    score_pairs,
)

from .conftest import CORPORA
from .perturb import perturb_docs

# Sentence A: exact hit, right span/wrong type, overlap with right type, a spurious one.
# Sentence B: one missed entity.
PAIRS = [
    SentencePair(
        words=list("abcdefghij"),
        gold=[(0, 1, "X"), (2, 4, "Y"), (5, 8, "X")],
        pred=[(0, 1, "X"), (2, 4, "X"), (5, 7, "X"), (9, 10, "Y")],
    ),
    SentencePair(words=list("klmno"), gold=[(0, 2, "Y")], pred=[]),
]


@pytest.fixture(scope="module")
def metrics():
    return score_pairs(PAIRS, n_bootstrap=200, seed=1)


def prf(m):
    return tuple(round(m[k], 9) for k in ("p", "r", "f"))


def test_headline_strict(metrics):
    assert metrics["n_gold"] == 4 and metrics["n_pred"] == 4
    assert metrics["spacy"]["ents_p"] == pytest.approx(0.25)
    assert metrics["spacy"]["ents_r"] == pytest.approx(0.25)
    assert metrics["spacy"]["ents_f"] == pytest.approx(0.25)
    assert metrics["seqeval"]["precision"] == pytest.approx(0.25)
    assert metrics["seqeval"]["f1"] == pytest.approx(0.25)


def test_per_type(metrics):
    x = metrics["seqeval"]["per_type"]["X"]
    assert (x["precision"], x["recall"], x["f1"], x["support"]) == pytest.approx((1 / 3, 0.5, 0.4, 2))
    y = metrics["seqeval"]["per_type"]["Y"]
    assert (y["precision"], y["recall"], y["f1"], y["support"]) == (0, 0, 0, 2)
    assert metrics["spacy"]["ents_per_type"]["X"] == pytest.approx({"p": 1 / 3, "r": 0.5, "f": 0.4})


def test_relaxed_semeval_schemes(metrics):
    relaxed = metrics["relaxed"]
    assert prf(relaxed["strict"]) == (0.25, 0.25, 0.25)
    assert prf(relaxed["exact"]) == (0.5, 0.5, 0.5)  # (0,1) and (2,4) have the right boundaries
    assert prf(relaxed["partial"]) == (0.625, 0.625, 0.625)  # 2 exact + ½ for (5,7)~(5,8)
    assert prf(relaxed["type"]) == (0.5, 0.5, 0.5)  # (0,1,X) and (5,7,X) overlap with type X


def test_untyped(metrics):
    assert prf(metrics["untyped"]) == (0.5, 0.5, 0.5)


def test_by_length(metrics):
    by = metrics["by_length"]
    assert prf(by["1"]) == (0.5, 1.0, round(2 / 3, 9)) and by["1"]["support"] == 1
    assert prf(by["2"]) == (0, 0, 0) and by["2"]["support"] == 2
    assert prf(by["3+"]) == (0, 0, 0) and by["3+"]["support"] == 1


def test_token_accuracy_and_confusion(metrics):
    assert metrics["token_accuracy"] == pytest.approx(9 / 15)
    assert metrics["confusion"] == {
        "(spurious)": {"Y": 1},
        "X": {"X": 2},
        "Y": {"(missed)": 1, "X": 1},
    }


def test_bootstrap_is_seeded_and_brackets(metrics):
    b = metrics["bootstrap"]
    assert 0 <= b["low"] <= b["high"] <= 1
    assert bootstrap_f1(PAIRS, n_samples=200, seed=1) == b
    assert bootstrap_f1(PAIRS, n_samples=200, seed=2) != b or b["low"] == b["high"]


def test_bootstrap_interval_contains_f1_on_real_size_data():
    pairs = [SentencePair(words=["w"] * 3, gold=[(0, 1, "X")], pred=[(0, 1, "X")] if i % 4 else [(1, 2, "X")])
             for i in range(400)]
    b = bootstrap_f1(pairs, n_samples=500, seed=0)
    assert b["low"] < 0.75 < b["high"]
    assert b["high"] - b["low"] < 0.15


def test_match_prefers_exact_then_type():
    pairs, missed, spurious = match_entities([(0, 3, "X"), (0, 3, "Y")], [(0, 3, "Y"), (1, 2, "Z")])
    assert pairs == [((0, 3, "Y"), (0, 3, "Y")), ((0, 3, "X"), (1, 2, "Z"))]
    assert missed == [] and spurious == []


def test_errors_lists_fp_and_fn_with_context():
    fp = errors(PAIRS, kind="fp")
    assert {e["text"] for e in fp} == {"c d", "f g", "j"}
    fn = errors(PAIRS, kind="fn")
    assert {(e["text"], e["label"]) for e in fn} == {("c d", "Y"), ("f g h", "X"), ("k l", "Y")}
    assert next(e for e in fn if e["text"] == "k l")["context"] == "[k l] m n o"


def doc(vocab, words, ents=(), sents=None):
    d = Doc(vocab, words=words, sent_starts=sents)
    d.ents = [Span(d, s, e, label) for s, e, label in ents]
    return d


def test_align_regroups_sentences_across_docs():
    v = Vocab()
    gold = [doc(v, ["a", "b", "c", "d"], [(1, 3, "X")], sents=[True, False, True, False])]
    pred = [doc(v, ["a", "b"], [(1, 2, "X")]), doc(v, ["c", "d"], [(0, 1, "X")])]
    pairs = align_docs(gold, pred)
    assert [(p.words, p.gold, p.pred) for p in pairs] == [
        (["a", "b"], [(1, 2, "X")], [(1, 2, "X")]),
        (["c", "d"], [(0, 1, "X")], [(0, 1, "X")]),
    ]


def test_token_mismatch_names_first_differing_sentence():
    v = Vocab()
    gold = [doc(v, ["a", "b"]), doc(v, ["c", "d"])]
    with pytest.raises(TokenMismatchError, match=r"sentence 2 \(document 2\), token 2: gold 'c d' vs predicted 'c e'"):
        align_docs(gold, [doc(v, ["a", "b"]), doc(v, ["c", "e"])])
    with pytest.raises(TokenMismatchError, match="1 tokens more"):
        align_docs(gold, [doc(v, ["a", "b", "c", "d", "z"])])


def test_empty_inputs_score_zero():
    m = score_pairs([], n_bootstrap=10)
    assert m["spacy"]["ents_f"] == 0 and m["seqeval"]["f1"] == 0 and m["n_gold"] == 0
    m = score_pairs([SentencePair(words=["a"], gold=[], pred=[])], n_bootstrap=10)
    assert m["token_accuracy"] == 1.0 and m["relaxed"]["partial"]["f"] == 0


def test_scorers_agree_after_repair_but_raw_seqeval_would_not(write):
    """Where spaCy and seqeval can differ: seqeval's default (conlleval) mode
    counts an entity opened by I-X; strict IOB2 mode drops it. We repair I-X to
    B-X when reading, so both scorers see the same valid sequence."""
    from seqeval.metrics import f1_score
    from seqeval.scheme import IOB2

    gold = read_docs(write("a\tB-X\nb\tO\nc\tB-X\n\n", "gold.tsv"))
    pred = read_docs(write("a\tB-X\nb\tO\nc\tI-X\n\n", "pred.tsv"))
    m = score_pairs(align_docs(gold, pred), n_bootstrap=10)
    assert m["spacy"]["ents_f"] == m["seqeval"]["f1"] == 1.0
    raw_gold, raw_pred = [["B-X", "O", "B-X"]], [["B-X", "O", "I-X"]]
    assert f1_score(raw_gold, raw_pred) == 1.0
    assert f1_score(raw_gold, raw_pred, mode="strict", scheme=IOB2) == pytest.approx(2 / 3)


TEST_SPLITS = sorted(p for p in CORPORA.glob("*/test.*") if p.suffix in (".tsv", ".txt")) if CORPORA.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("path", TEST_SPLITS or [pytest.param(None, marks=pytest.mark.skip("no ../shared/corpora"))],
                         ids=lambda p: p.parent.name if p else "none")
def test_spacy_and_seqeval_strict_scores_identical(path):
    gold = read_docs(path)
    pred = perturb_docs(gold, seed=13)
    m = score_pairs(align_docs(gold, pred), n_bootstrap=0)
    sp, sq = m["spacy"], m["seqeval"]
    assert 0.3 < sq["f1"] < 0.99  # the perturbation made real errors
    assert abs(sp["ents_p"] - sq["precision"]) < 1e-9
    assert abs(sp["ents_r"] - sq["recall"]) < 1e-9
    assert abs(sp["ents_f"] - sq["f1"]) < 1e-9
    for label, v in sq["per_type"].items():
        s = sp["ents_per_type"].get(label, {"p": 0.0, "r": 0.0, "f": 0.0})
        assert abs(s["f"] - v["f1"]) < 1e-9, label
    assert abs(m["relaxed"]["strict"]["f"] - sq["f1"]) < 1e-9
