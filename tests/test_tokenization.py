"""The tokenization cache of ``spacy_bioner.TransformerModel.v4``: the same batch as
spacy-transformers' ``huggingface_tokenize``, the same training, fewer tokenizer calls."""
import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from transformers import AutoTokenizer

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.models.tokenization import TokenizationCache
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

TEXTS = ["BRCA1 mutations cause breast cancer .", "Ataxia-telangiectasia", "a  b\tc é\r\n ünïcode",
         "x" * 40, "BRCA1 mutations cause breast cancer ."]


def assert_same_batch(a, b):
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        if isinstance(a[key], numpy.ndarray):
            assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
            assert (a[key] == b[key]).all(), key
        else:
            assert a[key] == b[key], key


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_cache_gives_the_batch_spacy_transformers_builds(tiny, family, side):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny[family]))
    tokenizer.padding_side = side
    cache = TokenizationCache()
    for texts in (TEXTS, TEXTS[::-1], TEXTS[:1]):  # first misses, then hits
        assert_same_batch(huggingface_tokenize(tokenizer, texts), cache(tokenizer, texts))
    assert (cache.misses, cache.hits) == (4, 1 + 5 + 1)  # TEXTS repeats one text
    assert len(cache) == 4


def test_cache_starts_again_when_full_or_for_another_tokenizer(tiny):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny["bert"]))
    budget = sum(len(x) for x in tokenizer(TEXTS[:3])["input_ids"])
    cache = TokenizationCache(max_subwords=budget)
    cache(tokenizer, TEXTS[:3])
    assert len(cache) == 3
    # a batch of seen and unseen texts that overflows the budget: still the right batch, then a fresh store
    batch = TEXTS[:2] + TEXTS[3:4]
    assert_same_batch(huggingface_tokenize(tokenizer, batch), cache(tokenizer, batch))
    assert len(cache) == 1
    other = AutoTokenizer.from_pretrained(str(tiny["roberta"]))
    assert_same_batch(huggingface_tokenize(other, TEXTS[:2]), cache(other, TEXTS[:2]))
    assert len(cache) == 2
    cache.clear()
    assert len(cache) == 0
    with pytest.raises(ValueError):
        TokenizationCache(max_subwords=0)


def test_no_pad_token_is_an_error_as_in_hugging_face(tiny):
    tokenizer = AutoTokenizer.from_pretrained(str(tiny["gpt2"]))
    tokenizer.pad_token = None
    with pytest.raises(ValueError, match="pad token"):
        TokenizationCache()(tokenizer, TEXTS[:1])


def make(tiny, train_file, cache: bool, arch: str = "spacy_bioner.TransformerModel.v4"):
    spacy.util.fix_random_seed(0)
    config, _ = fit_schedule(build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        "training.max_steps": 40, "components.transformer.model.tokenization_cache": cache,
        "components.transformer.model.@architectures": arch}))
    if not arch.endswith("v4"):
        config["components"]["transformer"]["model"].pop("tokenization_cache")
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file, vocab=nlp.vocab)]
    return nlp, examples


@pytest.mark.parametrize("plain", ["v3", "v4 without the cache"])
def test_training_with_the_cache_is_training_without_it(tiny, train_file, plain):
    """v4 (cache, array alignment) trains exactly as v3 (spacy-transformers' tokenization and alignment)."""
    runs = []
    for cache in (False, True):
        arch = "spacy_bioner.TransformerModel.v3" if plain == "v3" and not cache else "spacy_bioner.TransformerModel.v4"
        nlp, examples = make(tiny, train_file, cache, arch)
        optimizer = nlp.initialize(lambda: examples)
        losses = []
        for _ in range(3):  # epochs: the second and third come from the cache
            losses.append(nlp.update(examples, sgd=optimizer, drop=0.0, losses={})["bioner_tagger"])
        weights = {k: v.detach().clone() for k, v in
                   nlp.get_pipe("transformer").model.layers[0].shims[0]._model.named_parameters()}
        runs.append((nlp, losses, weights))
    (nlp0, losses0, w0), (nlp1, losses1, w1) = runs
    assert losses0 == pytest.approx(losses1, rel=1e-5)
    for key in w0:
        torch.testing.assert_close(w0[key], w1[key], atol=1e-6, rtol=1e-5)
    cache = nlp1.get_pipe("transformer").model.attrs["tokenization_cache"]
    assert cache.misses == len(examples) and cache.hits >= 2 * len(examples)
    hits = cache.hits
    docs = [Doc(nlp1.vocab, words=[t.text for t in eg.reference]) for eg in examples] + [Doc(nlp1.vocab, words=[])]
    predicted = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp1.pipe(docs)]  # an empty Doc too
    assert cache.hits == hits  # prediction tokenizes afresh
    docs0 = [Doc(nlp0.vocab, words=[t.text for t in d]) for d in docs]
    assert predicted == [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp0.pipe(docs0)]


def test_v4_with_the_cache_off_has_no_cache(tiny, train_file):
    nlp, _ = make(tiny, train_file, False)
    assert "tokenization_cache" not in nlp.get_pipe("transformer").model.attrs
