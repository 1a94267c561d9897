"""``bioner_tagger``'s ``partial_labels = "partial"`` loss on partially annotated corpora (corpus mixes)."""
import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Linear

from spacy_bioner.corpus.mixes import ANNOTATES, PROMPTED
from spacy_bioner.pipeline.tagger import BioNERTagger, allowed_tags

WORDS = ["BRCA1", "loss", "causes", "breast", "cancer", "."]
ENTS = ["O", "O", "O", "B-Disease", "I-Disease", "O"]  # BRCA1 is a gene, but this corpus annotates diseases only


def tagger(mode, scheme="iob2", labels=("Disease", "Gene")):
    nlp = spacy.blank("en")
    t = BioNERTagger(nlp.vocab, Linear(), scheme=scheme, partial_labels=mode)
    t.cfg["labels"] = list(labels)
    return nlp, t


def example(nlp, annotates):
    ref = Doc(nlp.vocab, words=WORDS, ents=ENTS)
    if annotates is not None:
        ref.user_data[ANNOTATES] = list(annotates)
    return Example(Doc(nlp.vocab, words=WORDS), ref)


def scores(n_tags, seed=0):
    return [numpy.random.default_rng(seed).normal(size=(len(WORDS), n_tags)).astype("float32")]


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
@pytest.mark.parametrize("annotates", [None, ["Disease", "Gene"]])
def test_partial_equals_naive_when_every_type_is_annotated(scheme, annotates):
    nlp, naive = tagger("naive", scheme)
    _, partial = tagger("partial", scheme)
    egs = [example(nlp, annotates)]
    s = scores(len(naive.tags))
    loss_n, d_n = naive.get_loss(egs, s)
    loss_p, d_p = partial.get_loss(egs, s)
    assert loss_p == pytest.approx(loss_n, rel=1e-6)
    assert numpy.allclose(d_p[0], d_n[0], atol=1e-7)


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_partial_never_penalises_an_unannotated_type_on_an_o_token(scheme):
    nlp, naive = tagger("naive", scheme)
    _, partial = tagger("partial", scheme)
    egs = [example(nlp, ["Disease"])]
    s = scores(len(naive.tags), seed=3)
    gene = [i for i, tag in enumerate(naive.tags) if tag.endswith("-Gene")]
    outside = [i for i, tag in enumerate(ENTS) if tag == "O"]
    _, d_naive = naive.get_loss(egs, s)
    _, d_partial = partial.get_loss(egs, s)
    assert (d_naive[0][numpy.ix_(outside, gene)] > 0).all()  # naive pushes Gene tags down on O tokens ...
    assert (d_partial[0][numpy.ix_(outside, gene)] <= 1e-9).all()  # ... partial never does
    disease_tokens = [3, 4]  # annotated entity tokens keep the usual cross-entropy gradient
    assert numpy.allclose(d_partial[0][disease_tokens], d_naive[0][disease_tokens])


def test_moving_mass_from_o_to_an_unannotated_type_leaves_the_partial_loss_unchanged():
    nlp, partial = tagger("partial")
    egs = [example(nlp, ["Disease"])]
    s = scores(len(partial.tags), seed=5)
    b_gene = partial.tags.index("B-Gene")
    before, _ = partial.get_loss(egs, s)
    moved = [s[0].copy()]
    # token 0 (BRCA1): swap the O and B-Gene scores: the allowed set's total probability is the same
    moved[0][0, 0], moved[0][0, b_gene] = s[0][0, b_gene], s[0][0, 0]
    after, _ = partial.get_loss(egs, moved)
    assert after == pytest.approx(before, rel=1e-6)
    _, naive = tagger("naive")
    assert naive.get_loss(egs, moved)[0] != pytest.approx(naive.get_loss(egs, s)[0], rel=1e-3)


def test_partial_gradient_matches_finite_differences():
    nlp, partial = tagger("partial")
    egs = [example(nlp, ["Disease"])]
    s = [scores(len(partial.tags), seed=7)[0].astype("float64")]
    _, d = partial.get_loss(egs, s)
    eps = 1e-5
    for i, j in [(0, 0), (0, partial.tags.index("B-Gene")), (3, partial.tags.index("B-Disease")), (5, 2)]:
        up, down = [s[0].copy()], [s[0].copy()]
        up[0][i, j] += eps
        down[0][i, j] -= eps
        numeric = (partial.get_loss(egs, up)[0] - partial.get_loss(egs, down)[0]) / (2 * eps)
        assert d[0][i, j] == pytest.approx(numeric, abs=1e-6)


def test_allowed_tags_by_hand():
    nlp, t = tagger("partial")
    a, b = example(nlp, ["Disease"]), example(nlp, ["Disease", "Gene"])
    gold = numpy.array([0, 0, 0, 1, 2, 0] * 2)
    mask = allowed_tags([a, b], gold, labels=t.labels, scheme="iob2")
    assert mask.shape == (12, 5)  # O, B-Disease, I-Disease, B-Gene, I-Gene
    assert mask[:6, 3:].tolist() == [[1, 1], [1, 1], [1, 1], [0, 0], [0, 0], [1, 1]]
    assert mask[6:].sum() == 0 and mask[:, :3].sum() == 0
    assert allowed_tags([b, b], gold, labels=t.labels, scheme="iob2") is None


def test_unknown_partial_labels_setting():
    with pytest.raises(ValueError, match="partial_labels must be one of naive, partial"):
        tagger("marginal")


def test_a_fully_annotated_example_in_a_partial_batch_keeps_the_naive_loss():
    """The masked path runs for the whole batch once one Example is partial: the full Example's rows must still be
    exactly the cross-entropy's, even where the true tag's probability is tiny (a logit gap of 40)."""
    nlp, naive = tagger("naive")
    _, partial = tagger("partial")
    full, part = example(nlp, ["Disease", "Gene"]), example(nlp, ["Disease"])
    s = scores(len(naive.tags), seed=11)
    s[0][3] = 0.0
    s[0][3, 0] = 40.0  # token 3 is gold B-Disease; the model is sure it is O
    s2 = scores(len(naive.tags), seed=12)
    _, d_naive = naive.get_loss([full], s)
    _, d_mixed = partial.get_loss([full, part], s + s2)
    n_naive, n_mixed = len(WORDS), 2 * len(WORDS)  # the gradient is a mean over the batch's tokens
    assert numpy.allclose(d_mixed[0] * n_mixed, d_naive[0] * n_naive, atol=1e-6)
    assert d_mixed[0][3, 1] * n_mixed == pytest.approx(-1.0, abs=1e-6)  # the true tag's full gradient
    loss_part, _ = partial.get_loss([part], s2)
    loss_full, _ = naive.get_loss([full], s)
    loss_mixed, _ = partial.get_loss([full, part], s + s2)
    assert loss_mixed == pytest.approx((loss_full * n_naive + loss_part * n_naive) / n_mixed, rel=1e-5)
    assert loss_full * n_naive > 39  # token 3 alone adds about 40: not clipped at −log 1e-12 ≈ 27.6


@pytest.mark.parametrize("scheme", ["iob2", "bilou"])
def test_a_task_prompt_decides_which_unannotated_types_are_o(scheme):
    """Prompted with its own types only, a disease-only sentence teaches that genes are O (the prompt did not
    ask for them: the naive loss); prompted with every type, genes were asked for but not annotated (partial)."""
    nlp, naive = tagger("naive", scheme)
    _, partial = tagger("partial", scheme)
    s = scores(len(naive.tags), seed=5)
    own = example(nlp, ["Disease"])
    own.predicted.user_data[PROMPTED] = ["Disease"]
    every = example(nlp, ["Disease"])
    every.predicted.user_data[PROMPTED] = ["Disease", "Gene"]
    loss_n, d_n = naive.get_loss([example(nlp, ["Disease"])], s)
    loss_own, d_own = partial.get_loss([own], s)
    assert loss_own == pytest.approx(loss_n, rel=1e-6) and numpy.allclose(d_own[0], d_n[0], atol=1e-7)
    loss_p, d_p = partial.get_loss([example(nlp, ["Disease"])], s)  # no prompt: every type was asked for
    loss_every, d_every = partial.get_loss([every], s)
    assert loss_every == pytest.approx(loss_p, rel=1e-6) and numpy.allclose(d_every[0], d_p[0], atol=1e-7)
    assert loss_every < loss_n
    gold = numpy.asarray([0, 0, 0, 1, 2, 0])
    assert allowed_tags([own], gold, labels=partial.labels, scheme=scheme) is None
