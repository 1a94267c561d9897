"""``offset_alignment`` gives exactly spacy-transformers' ``get_alignment_via_offset_mapping``."""
import random

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy_transformers.align import get_alignment_via_offset_mapping
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from transformers import AutoTokenizer

from spacy_bioner.models.alignment import offset_alignment

WORDS = ["BRCA1", "mutations", "cause", "breast", "cancer", ".", ",", "(", ")", "IL-2", "α-synuclein", "ünïcode",
         "x", "Ataxia-telangiectasia", "p53", "'s", "CD4+", "–", "µg", "\u00a0", "a\tb"]


def random_docs(vocab, rng, n):
    docs = []
    for _ in range(n):
        length = rng.randint(0, 30)
        words = [rng.choice(WORDS) for _ in range(length)]
        spaces = [rng.choice([True, True, False]) for _ in range(length)]
        docs.append(Doc(vocab, words=words, spaces=spaces))
    return docs


def random_windows(doc, rng):
    if not len(doc):
        return []
    size = rng.randint(1, max(1, len(doc)))
    stride = rng.randint(1, size)
    windows, start = [], 0
    while True:
        windows.append(doc[start:min(len(doc), start + size)])
        if start + size >= len(doc):
            return windows
        start += stride


def assert_same(spans, tokenizer):
    offsets = huggingface_tokenize(tokenizer, [s.text for s in spans])["offset_mapping"]
    expected = get_alignment_via_offset_mapping(spans, offsets)
    got = offset_alignment(spans, offsets)
    assert got.lengths.dtype == expected.lengths.dtype and got.dataXd.dtype == expected.dataXd.dtype
    numpy.testing.assert_array_equal(got.lengths, expected.lengths)
    numpy.testing.assert_array_equal(got.dataXd, expected.dataXd)


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta"])
@pytest.mark.parametrize("seed", range(4))
def test_offset_alignment_is_spacy_transformers_alignment(tiny, family, seed):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny[family]))
    rng = random.Random(seed)
    vocab = spacy.blank("en").vocab
    for _ in range(5):
        docs = random_docs(vocab, rng, rng.randint(1, 8))
        spans = [s for doc in docs for s in random_windows(doc, rng)]
        if spans:
            assert_same(spans, tokenizer)


def test_one_window_and_size_mismatch(tiny):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny["bert"]))
    doc = Doc(spacy.blank("en").vocab, words=["IL-2", "binds", "CD4+", "cells", "."], spaces=[True, True, True, False, False])
    assert_same([doc[:]], tokenizer)
    assert_same([doc[0:3], doc[2:5]], tokenizer)  # overlapping windows: a token's subwords from both
    with pytest.raises(ValueError):
        offset_alignment([doc[:]], numpy.zeros((2, 3, 2), dtype="int64"))
