"""``bioner_tagger`` decodes each sentence on its own and gives each entity a confidence
(forward–backward marginals of the constrained model)."""
import itertools

import numpy
import pytest
import spacy
from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab
from thinc.api import Model

from spacy_bioner.pipeline.decoding import marginals, tag_names, transition_mask
from spacy_bioner.pipeline.tagger import BioNERTagger, TaggerPrediction

from .test_tagger import make_tagger_nlp


def fixed_scores_tagger(rows, labels=("X",), **kwargs):
    """A tagger whose model returns the given per-token probabilities (as log scores) for every Doc."""
    def forward(model, docs, is_train):
        return [numpy.log(numpy.asarray(rows, dtype="float32")) for _ in docs], lambda d: d

    tagger = BioNERTagger(Vocab(), Model("fixed", forward), **kwargs)
    tagger.cfg["labels"] = list(labels)
    return tagger


def brute_force_marginals(logp, allowed, start, end):
    n, n_tags = logp.shape
    out, total = numpy.zeros((n, n_tags)), 0.0
    for seq in itertools.product(range(n_tags), repeat=n):
        if not start[seq[0]] or not end[seq[-1]] or any(not allowed[a, b] for a, b in zip(seq, seq[1:])):
            continue
        weight = numpy.exp(sum(logp[t, s] for t, s in enumerate(seq)))
        total += weight
        for t, s in enumerate(seq):
            out[t, s] += weight
    return out / total


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_marginals_equal_a_brute_force_sum_over_valid_sequences(scheme):
    tags = tag_names(["A", "B"], scheme=scheme)
    allowed, start, end = transition_mask(tags)
    rng = numpy.random.default_rng(0)
    docs = []
    for n in (1, 2, 3, 5):
        x = rng.normal(size=(n, len(tags))).astype("float32")
        docs.append(x - numpy.log(numpy.exp(x).sum(axis=1, keepdims=True)))
    got = marginals(docs + [numpy.zeros((0, len(tags)), dtype="float32")], allowed=allowed, start=start, end=end,
                    max_cells=40)  # several groups
    for x, m in zip(docs, got):
        assert numpy.allclose(m, brute_force_marginals(x, allowed, start, end), atol=1e-5)
        assert numpy.allclose(m.sum(axis=1), 1.0, atol=1e-5)
    assert got[-1].shape == (0, len(tags))


def test_a_short_unlikely_row_beside_a_long_one_does_not_overflow():
    """Padded positions past a short row's end used to overflow ``exp`` (a RuntimeWarning on every batch
    of an imported pipeline); they are no probabilities at all."""
    import warnings

    tags = tag_names(["A", "B"], scheme="bilou")
    allowed, start, end = transition_mask(tags)
    short = numpy.full((2, len(tags)), -50.0, dtype="float32")
    long = numpy.log(numpy.full((200, len(tags)), 1.0 / len(tags), dtype="float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = marginals([short, long], allowed=allowed, start=start, end=end)
    assert numpy.allclose(got[0], brute_force_marginals(short, allowed, start, end), atol=1e-5)
    assert numpy.isfinite(got[1]).all() and numpy.allclose(got[1].sum(axis=1), 1.0, atol=1e-3)  # float32, 200 steps


def test_no_entity_crosses_a_sentence_boundary():
    # tags O, B-X, I-X: the best path over the whole Doc is B I (an entity across the boundary after token 1)
    tagger = fixed_scores_tagger([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    doc = Doc(Vocab(), words=["alpha", "beta"], sent_starts=[True, True])
    whole = tagger.decode(tagger.model.predict([doc]))
    assert [tagger.tags[i] for i in whole.tag_ids[0]] == ["B-X", "I-X"]  # one sequence: crosses
    prediction = tagger.predict([doc])
    assert [tagger.tags[i] for i in prediction.tag_ids[0]] == ["B-X", "O"]  # I-X cannot open a sentence
    tagger.set_annotations([doc], prediction)
    assert [(e.start, e.end) for e in doc.ents] == [(0, 1)]
    # without sentence starts the Doc is one sequence, as before
    plain = Doc(Vocab(), words=["alpha", "beta"])
    tagger.set_annotations([plain], tagger.predict([plain]))
    assert [(e.start, e.end) for e in plain.ents] == [(0, 2)]


def test_entity_confidence_is_the_mean_marginal_of_its_tags():
    tagger = fixed_scores_tagger([[0.2, 0.7, 0.1]])
    doc = Doc(Vocab(), words=["BRCA1"])
    tagger.set_annotations([doc], tagger.predict([doc]))
    assert [e.label_ for e in doc.ents] == ["X"]
    group = doc.spans["ents"]
    assert [(s.start, s.end, s.label_) for s in group] == [(e.start, e.end, e.label_) for e in doc.ents]
    # I-X cannot start: P(B-X) = 0.7 / (0.2 + 0.7)
    assert group.attrs["scores"] == [pytest.approx(0.7 / 0.9, abs=1e-5)]
    two = fixed_scores_tagger([[0.1, 0.8, 0.1], [0.3, 0.1, 0.6]])
    doc = Doc(Vocab(), words=["breast", "cancer"])
    two.set_annotations([doc], two.predict([doc]))
    tags = tag_names(["X"], scheme="iob2")
    allowed, start, end = transition_mask(tags)
    m = brute_force_marginals(numpy.log(numpy.asarray([[0.1, 0.8, 0.1], [0.3, 0.1, 0.6]])), allowed, start, end)
    assert doc.spans["ents"].attrs["scores"] == [pytest.approx((m[0, 1] + m[1, 2]) / 2, abs=1e-5)]


def test_no_confidences_when_switched_off_and_empty_docs():
    tagger = fixed_scores_tagger([[0.2, 0.7, 0.1]], spans_key=None)
    doc = Doc(Vocab(), words=["BRCA1"])
    prediction = tagger.predict([doc])
    assert prediction.confidences is None
    tagger.set_annotations([doc], prediction)
    assert len(doc.ents) == 1 and "ents" not in doc.spans
    on = fixed_scores_tagger([[0.2, 0.7, 0.1]])
    empty = Doc(Vocab(), words=[])
    prediction = on.predict([empty])
    on.set_annotations([empty], prediction)
    assert isinstance(prediction, TaggerPrediction) and len(empty.ents) == 0 and len(empty.spans["ents"]) == 0


def test_confidences_in_a_trained_pipeline_survive_serialisation(tiny, train_file, tmp_path):
    nlp, examples = make_tagger_nlp(tiny, train_file, **{"training.max_steps": 10})
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(8):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    doc = nlp("BRCA1 mutations cause breast cancer . TP53 is a gene .")
    group = doc.spans["ents"]
    assert len(group) > 0, "the tiny pipeline should have learnt some entity"
    assert [(s.start, s.end, s.label_) for s in group] == [(e.start, e.end, e.label_) for e in doc.ents]
    assert len(group.attrs["scores"]) == len(group) and all(0.0 < s <= 1.0 for s in group.attrs["scores"])
    nlp.to_disk(tmp_path / "p")
    again = spacy.load(tmp_path / "p")(doc.text)
    assert again.spans["ents"].attrs["scores"] == pytest.approx(group.attrs["scores"], abs=1e-4)
    restored = list(DocBin(docs=[doc], store_user_data=True).get_docs(nlp.vocab))[0]
    assert restored.spans["ents"].attrs["scores"] == group.attrs["scores"]


@spacy.Language.factory("test_fixed_scores_tagger")
def _make_fixed(nlp, name):
    tagger = fixed_scores_tagger([[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    tagger.vocab = nlp.vocab
    return tagger


def test_evaluation_and_training_inputs_keep_the_gold_sentences(tmp_path):
    """`evaluate` and the corpus reader predict on copies of the gold Docs: with their sentence starts,
    so the tagger decodes per sentence there too (an entity across sentences would score as 2 false positives)."""
    from spacy_bioner.corpus.readers import create_iob_corpus
    from spacy_bioner.evaluation.predict import predict

    path = tmp_path / "two.tsv"
    path.write_text("alpha\tB-X\n\nbeta\tB-X\n", encoding="utf8")  # two sentences, one Doc with --n-sents 2
    nlp = spacy.blank("en")
    nlp.add_pipe("test_fixed_scores_tagger")
    examples = list(create_iob_corpus(path, n_sents=2)(nlp))
    assert len(examples) == 1 and [t.is_sent_start for t in examples[0].predicted] == [True, True]
    (predicted,) = predict(nlp, [examples[0].reference])
    assert [(e.start, e.end) for e in predicted.ents] == [(0, 1)]  # not (0, 2) across the boundary
