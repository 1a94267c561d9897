import itertools
import math

import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.training import Example

from spacy_bioner.corpus.sentences import n_sentences
from spacy_bioner.training.batchers import batch_by_sentences
from spacy_bioner.training.schedules import configure_warmup_linear_fraction
from spacy_bioner.models.spans import SubwordWindows
from spacy_bioner.models.windows import fit_windows, window_bounds


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=0, max_size=300), st.integers(20, 120), st.integers(1, 100))
def test_windows_cover_every_token_within_budget(counts, budget, stride):
    windows = window_bounds(counts, budget=budget, stride=stride)
    covered = set()
    for start, end in windows:
        assert end > start
        assert sum(counts[start:end]) <= budget or end - start == 1
        covered.update(range(start, end))
    assert covered == set(range(len(counts)))
    assert [s for s, _ in windows] == sorted({s for s, _ in windows})  # always moving forward


def test_oversize_token_gets_its_own_window():
    assert window_bounds([2, 50, 2], budget=10, stride=5) == [(0, 1), (1, 2), (2, 3)]


def test_windows_overlap_by_window_minus_stride():
    windows = window_bounds([1] * 100, budget=40, stride=30)
    assert windows == [(0, 40), (30, 70), (60, 100)]


def test_subword_windows_counts_subwords_not_tokens():
    doc = Doc(spacy.blank("en").vocab, words=["long"] * 50)
    windows = fit_windows([doc], counts=[[10] * 50], measure=lambda texts: [10 * len(t.split()) + 2 for t in texts],
                          window=102, stride=50, n_special=2)[0]
    # budget = 102 - 2 = 100 subwords = 10 tokens per window
    assert all(e - s == 10 for s, e in windows[:-1]) and windows[-1][1] == 50


def test_windows_that_measure_longer_than_estimated_are_split_again():
    doc = Doc(spacy.blank("en").vocab, words=["w"] * 40)
    # each token is estimated at 1 subword but really costs 2: a first cut of 20-token windows overflows
    measure = lambda texts: [2 * len(t.split()) + 2 for t in texts]  # noqa: E731
    windows = fit_windows([doc], counts=[[1] * 40], measure=measure, window=22, stride=10, n_special=2)[0]
    assert all(measure([doc[s:e].text])[0] <= 22 for s, e in windows)
    assert set().union(*(range(s, e) for s, e in windows)) == set(range(40))


def test_unbound_subword_windows_explains():
    with pytest.raises(ValueError, match="spacy_bioner.TransformerModel.v2"):
        SubwordWindows(window=512, stride=384)([Doc(spacy.blank("en").vocab, words=["a"])])


def example(vocab, n_sents, n_words=3):
    words = ["w"] * (n_sents * n_words)
    starts = [i % n_words == 0 for i in range(len(words))]
    doc = Doc(vocab, words=words, sent_starts=starts)
    return Example(doc.copy(), doc)


def test_batch_by_sentences_counts_sentences():
    vocab = spacy.blank("en").vocab
    items = [example(vocab, 1) for _ in range(5)] + [example(vocab, 3), example(vocab, 10)]
    batches = list(batch_by_sentences(items, size=4))
    # 4 singles; then 1 single + the 3-sentence doc; the 10-sentence doc alone
    assert [sum(n_sentences(e) for e in b) for b in batches] == [4, 10, 4]
    assert sum(len(b) for b in batches) == len(items)
    kept = list(batch_by_sentences(items, size=4, discard_oversize=True))
    assert sum(len(b) for b in kept) == len(items) - 1


def test_bucketed_batches_keep_every_example_and_sort_by_length():
    vocab = spacy.blank("en").vocab
    items = [example(vocab, 1, n_words=k) for k in [5, 1, 9, 3, 7, 2, 8, 4, 6, 10] * 3]
    batches = list(batch_by_sentences(items, size=5, buffer=6))
    assert sorted(len(e.reference) for b in batches for e in b) == sorted(len(e.reference) for e in items)
    assert all(len(b) == 5 for b in batches)
    assert all(max(len(e.reference) for e in b) - min(len(e.reference) for e in b) <= 2 for b in batches)


def test_batch_size_schedule():
    vocab = spacy.blank("en").vocab
    items = [example(vocab, 1) for _ in range(6)]
    assert [len(b) for b in batch_by_sentences(items, size=iter([1, 2, 3]))] == [1, 2, 3]


def test_warmup_fraction_schedule():
    rates = list(itertools.islice(configure_warmup_linear_fraction(1.0, 100, 0.1), 101))
    assert rates[0] == 0 and rates[10] == pytest.approx(1.0) and rates[5] == pytest.approx(0.5)
    assert rates[55] == pytest.approx(0.5) and rates[100] == 0
    with pytest.raises(ValueError):
        configure_warmup_linear_fraction(1.0, 100, 1.5)


def test_resplit_converges_when_the_estimate_is_a_little_low():
    # 890 tokens, every one really ~4.3 % longer than estimated: the last window of a first cut is
    # well under its budget, so shrinking the budget by the overflow alone would loop without end
    doc = Doc(spacy.blank("en").vocab, words=["w"] * 890)
    measure = lambda texts: [math.floor(1.043 * len(t.split())) + 2 for t in texts]  # noqa: E731
    windows = fit_windows([doc], counts=[[1] * 890], measure=measure, window=512, stride=400, n_special=2)[0]
    assert all(measure([doc[s:e].text])[0] <= 512 for s, e in windows)
    assert set().union(*(range(s, e) for s, e in windows)) == set(range(890))
