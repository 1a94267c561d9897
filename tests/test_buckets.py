"""Length buckets (``spacy_bioner.TransformerModel.v3``, ``evaluate --length-buckets``) and
int8 inference (``evaluate --int8``)."""
import random

import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.models.buckets import (PATCH_ATTR, enable_length_buckets, length_groups, padded_cost,
                                         padded_size_groups)
from spacy_bioner.models.inference import add_length_buckets, quantize_int8
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT


@pytest.mark.parametrize("seed", range(20))
def test_length_groups_partition_rows_within_ratio(seed):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 120) for _ in range(rng.randint(1, 70))]
    groups = length_groups(lengths, ratio=0.8)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for group in groups:
        longest = max(lengths[i] for i in group)
        assert lengths[group[0]] == longest and all(lengths[i] >= 0.8 * longest for i in group)
    assert padded_cost(lengths, groups) <= len(lengths) * max(lengths)


def test_length_groups_edges():
    assert length_groups([], ratio=0.8) == []
    assert length_groups([5, 5, 5], ratio=1.0) == [[0, 1, 2]]
    assert length_groups([10, 1], ratio=0.01) == [[0, 1]]
    for bad in (0, -0.5, 1.5):
        with pytest.raises(ValueError, match="in \\(0, 1\\]"):
            length_groups([3], ratio=bad)


@pytest.mark.parametrize("seed", range(20))
def test_padded_size_groups_stay_within_the_budget(seed):
    """The decoder's prediction batches: shortest first, each group padded to its longest within max_items."""
    rng = random.Random(seed)
    lengths = [rng.randint(1, 300) for _ in range(rng.randint(0, 70))]
    groups = padded_size_groups(lengths, max_items=1000)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    flat = [lengths[i] for g in groups for i in g]
    assert flat == sorted(flat)
    for k, group in enumerate(groups):
        size = len(group) * max(lengths[i] for i in group)
        assert size <= 1000 or len(group) == 1
        if k + 1 < len(groups):  # a group ends only when the next row would overflow it
            nxt = groups[k + 1][0]
            assert (len(group) + 1) * max(lengths[nxt], *(lengths[i] for i in group)) > 1000
    assert padded_size_groups([2000, 5], max_items=1000) == [[1], [0]]


def padded_batch(tiny, n=12, seed=0):
    from transformers import AutoModel, AutoTokenizer

    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny["bert"]))
    words = "BRCA1 mutations cause hereditary breast cancer in many tumours including ovarian carcinoma".split()
    texts = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) for _ in range(n)]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    torch.manual_seed(0)
    return AutoModel.from_pretrained(str(tiny["bert"])), enc


def test_bucketed_forward_and_backward_match_the_padded_batch(tiny):
    model, enc = padded_batch(tiny)
    model.eval()
    mask = enc["attention_mask"].bool()
    assert len(length_groups(mask.sum(1).tolist(), ratio=0.8)) > 2  # the batch really is split
    outputs, grads = [], []
    for ratio in (0, 0.8):
        enable_length_buckets(model, ratio=ratio)
        model.zero_grad()
        out = model(**enc)
        hidden = out.last_hidden_state
        (hidden[mask] ** 2).sum().backward()
        outputs.append((hidden, out.pooler_output))
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    (plain, plain_pool), (bucketed, bucketed_pool) = outputs
    assert bucketed.shape == plain.shape
    torch.testing.assert_close(bucketed[mask], plain[mask], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(bucketed_pool, plain_pool, atol=1e-5, rtol=1e-4)
    # columns past a bucket's longest row were never computed: zeros (padding is never read downstream)
    assert bool((bucketed[~mask] == 0).all(dim=-1).any()) and not bool((plain[~mask] == 0).all(dim=-1).any())
    assert grads[0].keys() == grads[1].keys()
    for key in grads[0]:
        torch.testing.assert_close(grads[1][key], grads[0][key], atol=1e-4, rtol=1e-3)
    assert "forward" not in model.state_dict() and PATCH_ATTR not in model.state_dict()


def make(tiny, train_file, **overrides):
    spacy.util.fix_random_seed(0)
    config, _ = fit_schedule(build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        "training.max_steps": 40, **overrides}))
    if overrides.get("components.transformer.model.@architectures") == "spacy_bioner.TransformerModel.v2":
        for key in ("length_buckets", "length_buckets_on_gpu", "tokenization_cache"):  # v3's and v4's settings
            config["components"]["transformer"]["model"].pop(key)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file, vocab=nlp.vocab)]
    return nlp, examples


def hf_model(nlp):
    return nlp.get_pipe("transformer").model.layers[0].shims[0]._model


def test_v4_is_the_shipped_default_and_patches_after_loading(tiny, train_file, tmp_path):
    nlp, examples = make(tiny, train_file)
    assert nlp.config["components"]["transformer"]["model"]["@architectures"] == "spacy_bioner.TransformerModel.v4"
    nlp.initialize(lambda: examples)
    words = [[t.text for t in ex.reference][:n] for ex in examples for n in (2, 5, 7)]
    docs = [Doc(nlp.vocab, words=w) for w in words]
    list(nlp.pipe(docs))
    assert getattr(hf_model(nlp), PATCH_ATTR) == (0.8, False)
    nlp.to_disk(tmp_path / "m")
    loaded = spacy.load(tmp_path / "m")
    before = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(docs)]
    after = [[(e.start, e.end, e.label_) for e in d.ents] for d in loaded.pipe(Doc(loaded.vocab, words=w) for w in words)]
    assert before == after
    assert getattr(hf_model(loaded), PATCH_ATTR) == (0.8, False)  # the reloaded HF module is patched too
    add_length_buckets(loaded, ratio=0)  # `evaluate --length-buckets 0` turns a v3 pipeline's buckets off
    list(loaded.pipe([Doc(loaded.vocab, words=w) for w in words]))
    assert getattr(hf_model(loaded), PATCH_ATTR) == (0.0, False)


def test_bad_ratio_fails_when_the_pipeline_is_built(tiny, train_file):
    with pytest.raises(ValueError, match="length_buckets"):
        make(tiny, train_file, **{"components.transformer.model.length_buckets": 1.5})


def test_speed_ups_on_a_v2_pipeline_keep_its_entities(tiny, train_file):
    nlp, examples = make(tiny, train_file, **{"components.transformer.model.@architectures":
                                              "spacy_bioner.TransformerModel.v2"})
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(30):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    rng = random.Random(1)
    vocab = [t.text for ex in examples for t in ex.reference]
    docs = [Doc(nlp.vocab, words=[rng.choice(vocab) for _ in range(rng.randint(1, 30))]) for _ in range(40)] + [
        Doc(nlp.vocab, words=[])]

    def ents():
        return [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(docs, batch_size=64)]

    plain = ents()
    assert not hasattr(hf_model(nlp), PATCH_ATTR)
    assert add_length_buckets(nlp, ratio=0.8) == 1
    assert getattr(hf_model(nlp), PATCH_ATTR) == (0.8, False)
    assert ents() == plain
    assert add_length_buckets(nlp, ratio=0) == 1 and getattr(hf_model(nlp), PATCH_ATTR) == (0.0, False)
    assert ents() == plain
    add_length_buckets(nlp, ratio=0.8)
    assert quantize_int8(nlp) == 1
    assert any(".quantized.dynamic" in type(m).__module__ for m in hf_model(nlp).modules())
    quantized = ents()
    assert len(quantized) == len(docs) and quantized[-1] == []


def test_int8_on_a_gpu_is_a_one_line_error(tiny, train_file):
    from spacy_bioner.errors import ModelLoadError
    from spacy_bioner.evaluation.predict import speed_up

    nlp, examples = make(tiny, train_file)
    nlp.initialize(lambda: examples)
    with pytest.raises(ModelLoadError, match="--int8 is for CPU"):
        speed_up(nlp, gpu_id=0, int8=True)
    with pytest.raises(ModelLoadError, match="length_buckets"):
        speed_up(nlp, length_buckets=2.0)


def test_buckets_on_a_causal_decoder_with_a_key_value_cache(tiny):
    """GPT-2 returns past_key_values (use_cache) unless told not to: buckets must not try to merge them."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny["gpt2"]))
    tokenizer.pad_token = tokenizer.eos_token
    enc = tokenizer(["BRCA1 mutations cause hereditary breast cancer in many tumours including ovarian", "TP53",
                     "breast cancer", "a b c d e f g h i j k l m n o p"], padding=True, return_tensors="pt")
    model = AutoModel.from_pretrained(str(tiny["gpt2"])).eval()
    assert model.config.use_cache
    mask = enc["attention_mask"].bool()
    plain = model(**enc).last_hidden_state
    enable_length_buckets(model, ratio=0.8)
    out = model(**enc)
    torch.testing.assert_close(out.last_hidden_state[mask], plain[mask], atol=1e-5, rtol=1e-4)
    assert "past_key_values" not in out
