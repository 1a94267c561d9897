"""``bioner_tagger``: constrained decoding, training, serialisation, the head switch."""
import numpy
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.pipeline.decoding import tag_names, tags_to_spans, transition_mask, viterbi
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

BASE = PROJECT / "configs" / "transformer.cfg"
LABELS = ["Disease", "Gene", "Chemical"]


def valid(tags, scheme):
    """No I-X after O or another type; in BILUO every entity is closed by L-/U-."""
    prev = "O"
    for tag in tags:
        p, label = (tag[0], tag[2:]) if tag != "O" else ("O", "")
        pp, plabel = (prev[0], prev[2:]) if prev != "O" else ("O", "")
        if p in ("I", "L") and (pp not in ("B", "I") or plabel != label):
            return False
        if scheme == "bilou" and pp in ("B", "I") and not (p in ("I", "L") and label == plabel):
            return False
        prev = tag
    if scheme == "bilou" and prev != "O" and prev[0] in ("B", "I"):
        return False
    return True


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_decoding_never_yields_an_invalid_sequence(scheme, data):
    tags = tag_names(LABELS, scheme=scheme)
    allowed, start, end = transition_mask(tags)
    n_docs = data.draw(st.integers(1, 5))
    lengths = [data.draw(st.integers(0, 25)) for _ in range(n_docs)]
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = numpy.random.default_rng(seed)
    scores = [rng.normal(scale=5.0, size=(n, len(tags))).astype("float32") for n in lengths]
    decoded = viterbi(scores, allowed=allowed, start=start, end=end, max_cells=200)  # forces several groups
    for n, ids in zip(lengths, decoded):
        assert len(ids) == n
        assert valid([tags[i] for i in ids], scheme), [tags[i] for i in ids]


def test_viterbi_is_the_best_valid_path():
    tags = tag_names(["X"], scheme="iob2")  # O B-X I-X
    allowed, start, end = transition_mask(tags)
    # argmax per token would be I-X, I-X (invalid); the best valid path is B-X, I-X
    logp = numpy.log(numpy.array([[0.1, 0.4, 0.5], [0.1, 0.1, 0.8]], dtype="float32"))
    (ids,) = viterbi([logp], allowed=allowed, start=start, end=end)
    assert [tags[i] for i in ids] == ["B-X", "I-X"]
    # brute force over all valid sequences of a random 4-token problem
    rng = numpy.random.default_rng(1)
    logp = numpy.log(rng.dirichlet(numpy.ones(3), size=4)).astype("float32")
    (ids,) = viterbi([logp], allowed=allowed, start=start, end=end)
    import itertools

    best = max((seq for seq in itertools.product(range(3), repeat=4) if valid([tags[i] for i in seq], "iob2")),
               key=lambda seq: sum(logp[t, i] for t, i in enumerate(seq)))
    assert tuple(ids) == best


def test_tags_to_spans():
    tags = tag_names(["A", "B"], scheme="bilou")
    ids = [tags.index(t) for t in ["B-A", "I-A", "L-A", "O", "U-B", "B-A", "L-A"]]
    assert tags_to_spans(ids, tags) == [(0, 3, "A"), (4, 5, "B"), (5, 7, "A")]
    tags = tag_names(["A"], scheme="iob2")
    ids = [tags.index(t) for t in ["B-A", "B-A", "I-A", "O"]]
    assert tags_to_spans(ids, tags) == [(0, 1, "A"), (1, 3, "A")]


def make_tagger_nlp(tiny, train_file, family="bert", **overrides):
    config, _ = fit_schedule(build_config(BASE, head="tagger", overrides={
        "paths.backbone": str(tiny[family]), "paths.train": str(train_file), "paths.dev": str(train_file),
        **overrides}))
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    return nlp, examples


def test_head_switch_builds_a_tagger_pipeline(tiny, train_file):
    nlp, examples = make_tagger_nlp(tiny, train_file)
    assert nlp.pipe_names == ["transformer", "bioner_tagger", "doc_cleaner"]
    config = build_config(BASE, backbone="roberta-base", head="tagger")
    assert "ner" not in config["components"] and config["components"]["bioner_tagger"]["factory"] == "bioner_tagger"
    assert config["components"]["transformer"]["model"]["tokenizer_config"]["add_prefix_space"]  # backbone kept
    decoder = build_config(BASE, backbone="gpt2", head="tagger")  # a decoder becomes the tagger's own tok2vec
    assert decoder["nlp"]["pipeline"] == ["bioner_tagger", "doc_cleaner"] and "transformer" not in decoder["components"]
    assert decoder["components"]["bioner_tagger"]["model"]["tok2vec"]["window"] == 1024
    back = build_config(BASE, head="ner")
    assert back["nlp"]["pipeline"] == ["transformer", "ner", "doc_cleaner"] and "bioner_tagger" not in back["components"]


@pytest.mark.parametrize("scheme,pooling", [("iob2", "first"), ("bilou", "mean"), ("iob2", "last")])
def test_tagger_loss_falls_and_save_load_is_identical(tiny, train_file, tmp_path, scheme, pooling):
    spacy.util.fix_random_seed(0)
    nlp, examples = make_tagger_nlp(tiny, train_file, **{
        "components.bioner_tagger.scheme": scheme,
        "components.bioner_tagger.model.tok2vec.pooling.mode": pooling,
        "training.optimizer.learn_rate.initial_rate": 0.003, "training.max_steps": 30})
    optimizer = nlp.initialize(lambda: examples)
    tagger = nlp.get_pipe("bioner_tagger")
    assert tagger.labels == ("Disease", "Gene") and len(tagger.tags) == (5 if scheme == "iob2" else 9)
    losses = []
    for _ in range(30):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step, drop=0.0)
        optimizer.step_schedules()
        losses.append(step["bioner_tagger"])
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3]), losses
    texts = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma .", ""]
    before = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    assert any(before)  # it learnt something on its own training data
    nlp.to_disk(tmp_path / "model")
    reloaded = spacy.load(tmp_path / "model")
    after = [[(e.start, e.end, e.label_) for e in d.ents] for d in reloaded.pipe(texts)]
    assert after == before
    assert reloaded.get_pipe("bioner_tagger").cfg["scheme"] == scheme
    scores = reloaded.evaluate(examples)
    assert "ents_f" in scores and scores["ents_f"] > 0


def doc_tags(doc):
    """The doc's entity annotation as IOB2 tags ("" for a token without any)."""
    return [t.ent_iob_ if t.ent_iob_ in ("O", "") else f"{t.ent_iob_}-{t.ent_type_}" for t in doc]


def assert_every_token_predicted(tagger, doc):
    """Each token has its row of backbone features (zero only for tokens without subwords: whitespace),
    and the doc's entities are exactly the tagger's decoded tags for all of its tokens."""
    vectors = tagger.model.get_ref("tok2vec").predict([doc])[0]
    assert vectors.shape[0] == len(doc)
    assert [bool(numpy.abs(row).sum() > 0) for row in vectors] == [not t.is_space for t in doc]
    (ids,) = tagger.predict([doc]).tag_ids
    assert len(ids) == len(doc)
    assert doc_tags(doc) == [tagger.tags[i] for i in ids]
    assert valid(doc_tags(doc), "iob2"), doc_tags(doc)


def test_tagger_handles_empty_and_long_docs(tiny, train_file):
    nlp, examples = make_tagger_nlp(tiny, train_file)
    nlp.initialize(lambda: examples)
    with nlp.select_pipes(disable=["doc_cleaner"]):  # keep the transformer output for the checks
        docs = list(nlp.pipe([Doc(nlp.vocab, words=[]), Doc(nlp.vocab, words=["BRCA1"] * 3000)]))
    assert len(docs[0].ents) == 0 and len(docs[1]) == 3000
    assert_every_token_predicted(nlp.get_pipe("bioner_tagger"), docs[1])  # past the first 512-subword window
    # an update on a batch with an empty doc
    losses = {}
    nlp.update([Example(Doc(nlp.vocab, words=[]), Doc(nlp.vocab, words=[]))] + examples, losses=losses)
    assert losses["bioner_tagger"] > 0


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_fast_gold_ids_match_spacys_alignment(scheme, train_file):
    from spacy_bioner.pipeline.tagger import BioNERTagger, gold_tag_ids, same_tokens

    vocab = spacy.blank("en").vocab
    docs = read_docs(train_file, vocab=vocab)
    extra = Doc(vocab, words=["a", "b", "c", "d", "e"], ents=["B-Gene", "I-Gene", "B-Gene", "O", "B-Chemical"])
    missing = Doc(vocab, words=["a", "b", "c"], ents=["B-Disease", "", "O"])
    tagger = BioNERTagger(vocab, None, scheme=scheme)
    tagger.cfg["labels"] = ["Disease", "Gene"]  # Chemical is unknown to the component
    index = {tag: i for i, tag in enumerate(tagger.tags)}
    labels = {label: k for k, label in enumerate(tagger.labels)}
    for doc in [*docs, extra, missing, Doc(vocab, words=[])]:
        eg = Example(Doc(vocab, words=[t.text for t in doc]), doc)
        assert same_tokens(eg)
        fast = gold_tag_ids(eg, labels, scheme=scheme)
        slow = tagger._gold_ids(eg, index)
        assert fast.tolist() == slow.tolist(), (doc, fast, slow)


@pytest.mark.parametrize("mode", ["first", "last", "mean"])
def test_pooling_gives_tokens_without_subwords_a_zero_vector(mode):
    from thinc.api import NumpyOps
    from thinc.types import Ragged

    from spacy_bioner.models.heads import subword_pooling

    layer = subword_pooling(mode)
    X = Ragged(numpy.arange(12, dtype="float32").reshape(6, 2), numpy.asarray([1, 0, 3, 2], dtype="int32"))
    Y, backprop = layer(X, is_train=True)
    expected = {"first": [[0, 1], [0, 0], [2, 3], [8, 9]], "last": [[0, 1], [0, 0], [6, 7], [10, 11]],
                "mean": [[0, 1], [0, 0], [4, 5], [9, 10]]}[mode]
    assert Y.tolist() == expected
    dX = backprop(NumpyOps().alloc2f(4, 2) + 1)
    assert dX.dataXd.shape == (6, 2) and float(dX.dataXd.sum()) > 0


def test_tagger_on_raw_text_with_whitespace_tokens(tiny, train_file):
    nlp, examples = make_tagger_nlp(tiny, train_file)
    nlp.initialize(lambda: examples)
    with nlp.select_pipes(disable=["doc_cleaner"]):
        doc = nlp("BRCA1 mutations\n\ncause  breast cancer .\u200b")
    assert [t.text for t in doc] == ["BRCA1", "mutations", "\n\n", "cause", " ", "breast", "cancer", ".\u200b"]
    assert_every_token_predicted(nlp.get_pipe("bioner_tagger"), doc)
