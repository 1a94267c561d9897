"""Subword windows are never truncated: each window, tokenized exactly as
spacy-transformers will tokenize it (``span.text``, special tokens added, no
truncation), fits the limit — for every tokenizer family, on raw text where
tokens have no space before them."""
from types import SimpleNamespace

import pytest
import spacy

from spacy_bioner.models.spans import SubwordWindows

from .tiny_models import FAMILIES

# Raw text as PubMed writes it: hyphens, slashes, brackets, commas without spaces.
RAW = (
    "BRCA1/BRCA2-associated hereditary breast-cancer (HBOC) and TP53-mutated,Li-Fraumeni-like tumours;"
    "IL-2-induced T-cell proliferation[ref.12],non-small-cell lung-cancer/NSCLC, "
    "Parkinson's-disease:selegiline-induced therapy(n=12),ovarian-carcinoma/BRCA1-positive. "
)
# Words the tiny tokenizers learnt with a leading space ("Ġmutations"), here glued to punctuation:
# counted one by one with a space they look shorter than they are in the window.
GLUED = "mutations,mutations/mutations-cancer,carcinoma(tumours)patients-received-therapy;regulates-proliferation."
TOKENIZER_CONFIG = {"roberta": {"add_prefix_space": True}, "gpt2": {"add_prefix_space": True}}


def tokenizer_for(tiny, family, limit):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny[family]), use_fast=True, **TOKENIZER_CONFIG.get(family, {}))
    tok.model_max_length = limit
    return tok


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("limit,stride", [(48, 32), (512, 384)])
def test_no_window_overflows_on_raw_text(tiny, family, limit, stride):
    tok = tokenizer_for(tiny, family, limit)
    getter = SubwordWindows(window=limit, stride=stride)
    getter.bind(SimpleNamespace(tokenizer=tok))
    nlp = spacy.blank("en")
    reps = limit // 8
    docs = [nlp(RAW * reps), nlp(GLUED * reps), nlp(RAW[37:] * (reps // 2)), nlp("x"), nlp("")]
    spans = getter(docs)
    for doc, windows in zip(docs, spans):
        covered = set()
        for span in windows:
            n = len(tok(span.text, add_special_tokens=True, verbose=False)["input_ids"])
            assert n <= limit, f"{family}: window of {n} subwords > {limit}: {span.text[:60]!r}…"
            covered.update(range(span.start, span.end))
        assert covered == set(range(len(doc)))  # every token in some window
    assert len(spans[0]) > 3 and len(spans[1]) > 3  # the long documents really are cut into several windows


def test_tokenizer_calls_are_batched(tiny):
    tok = tokenizer_for(tiny, "roberta", 64)
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, texts, **kwargs):
            calls.append(len(texts) if isinstance(texts, list) else 1)
            return tok(texts, **kwargs)

    getter = SubwordWindows(window=64, stride=48)
    getter.bind(SimpleNamespace(tokenizer=Counting()))
    nlp = spacy.blank("en")
    getter([nlp(RAW * 4), nlp(RAW)])
    # one call for the unseen tokens' estimates, then one per round of exact checks (a few at most)
    assert 2 <= len(calls) <= 5 and calls[0] > 20, calls
