"""``spacy_bioner.DecoderTagger.v1``: GPT-2 as the token vectors of ``bioner_tagger`` (tiny offline GPT-2)."""
import configparser
import random
import shutil

import numpy
import pytest
import spacy
from hypothesis import given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config
from typer.testing import CliRunner

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.errors import BackboneNotFoundError
from spacy_bioner.models.decoder import (ARCHITECTURE, configure_decoder_tagger, decoder_modules, decoder_tagger,
                                         doc_pieces, word_texts)
from spacy_bioner.models.windows import plan_windows
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

WORDS = ["BRCA1", "mutations", "cause", "hereditary", "breast", "-", "cancer", ".", "Los", "hallazgos", "analíticos",
         "niño", "(", "TP53", ")", ",", "Ångström", "naïve", "5.3mg", "«", "ovarian", "»", "IL-2", "carcinoma", ";"]


def text_of(doc):
    return "".join(t.text_with_ws for t in doc)


def long_doc(vocab, n, seed=0):
    rng = random.Random(seed)
    return Doc(vocab, words=[rng.choice(WORDS) for _ in range(n)], spaces=[rng.random() < 0.8 for _ in range(n)])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run as fast on one thread (and do not fight other processes for the cores)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vocab():
    return spacy.blank("en").vocab


def make_decoder(tiny, docs, **kwargs):
    model = decoder_tagger(str(tiny["gpt2"]), **kwargs)
    model.initialize(X=docs)
    return model


def hf_last_hidden(model, ids):
    """The decoder's hidden states for one unpadded sequence, straight from the torch module."""
    import torch

    module = decoder_modules(model)[0]
    module.eval()
    with torch.no_grad():
        return module(input_ids=torch.as_tensor(ids, dtype=torch.long)[None, :]).last_hidden_state[0].numpy()


# ------------------------------------------------------------------ registry and configs
def test_registered_and_declared():
    assert spacy.registry.architectures.get(ARCHITECTURE) is configure_decoder_tagger
    setup = configparser.ConfigParser()
    setup.read(PROJECT / "setup.cfg")
    declared = setup["options.entry_points"]["spacy_architectures"]
    assert f"{ARCHITECTURE} = spacy_bioner.models.decoder:configure_decoder_tagger" in declared


@pytest.mark.parametrize("head,component", [("tagger", "bioner_tagger"), ("ner", "ner"), (None, "ner")])
def test_gpt2_backbone_config_inlines_the_decoder(tmp_path, head, component):
    from spacy_bioner.cli import app

    args = ["config", "transformer", str(tmp_path / "gpt2.cfg"), "--backbone", "gpt2"] + (["--head", head] if head else [])
    result = CliRunner().invoke(app, args + ["--components.%s.model.tok2vec.bidirectional" % component, "true"])
    assert result.exit_code == 0, result.output
    config = spacy.util.load_config(tmp_path / "gpt2.cfg", interpolate=False)
    assert config["nlp"]["pipeline"] == [component, "doc_cleaner"]
    assert "transformer" not in config["components"]
    tok2vec = config["components"][component]["model"]["tok2vec"]
    assert tok2vec["@architectures"] == ARCHITECTURE and tok2vec["name"] == "${paths.backbone}"
    assert tok2vec["pooling"] == "last" and tok2vec["window"] == 1024 and tok2vec["bidirectional"] is True
    assert tok2vec["tokenizer_config"]["pad_token"] == "<|endoftext|>"
    assert config["paths"]["backbone"] == "openai-community/gpt2"
    encoder = build_config("transformer", backbone="minilm", head="tagger")  # encoders keep their transformer
    assert encoder["nlp"]["pipeline"] == ["transformer", "bioner_tagger", "doc_cleaner"]


def test_missing_backbone_is_the_projects_error(vocab, tmp_path):
    model = decoder_tagger(str(tmp_path / "no-such-gpt2"))
    with pytest.raises(BackboneNotFoundError, match="does not exist"):
        model.initialize(X=[Doc(vocab, words=["a"])])


# ------------------------------------------------------------------ windows
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_each_word_takes_the_window_with_most_left_context(data):
    window = data.draw(st.integers(1, 24))
    stride = data.draw(st.integers(1, window))
    lengths = data.draw(st.lists(st.integers(0, min(window, 6)), max_size=80))
    windows = plan_windows(lengths, window=window, stride=stride)
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths, dtype="int64")])
    assigned = [k for k, w in enumerate(windows) for _ in range(w.first, w.end)]
    assert [i for w in windows for i in range(w.first, w.end)] == list(range(len(lengths)))  # each word once
    assert all(offsets[w.end] - offsets[w.start] <= window and w.start <= w.first < w.end for w in windows)
    assert all(a.start < b.start for a, b in zip(windows, windows[1:]))  # strictly left to right
    overlap = window - stride
    for i, k in enumerate(assigned):
        holding = [w for w in windows if w.start <= i < w.end]  # windows with the whole word in them
        best = max(offsets[i] - offsets[w.start] for w in holding)
        assert offsets[i] - offsets[windows[k].start] == best
    for w in windows[1:]:  # a window's first new word keeps (almost) window - stride subwords of context
        context = offsets[w.first] - offsets[w.start]
        assert context > min(overlap, window - lengths[w.first]) - max(lengths) or context == offsets[w.first]


def test_3000_token_document_matches_unpadded_windows(tiny, vocab):
    doc = long_doc(vocab, 3000)
    model = make_decoder(tiny, [doc], window=64, stride=48)
    vectors = model.predict([doc])[0]
    assert vectors.shape == (3000, 32)
    tokenizer = model.layers[0].shims[0]._hfmodel.tokenizer
    ids, lengths = doc_pieces(doc, tokenizer)
    assert lengths.min() >= 1 and len(ids) > 3 * 1024  # longer than GPT-2's positions
    offsets = numpy.concatenate([[0], numpy.cumsum(lengths)])
    windows = plan_windows(lengths, window=64, stride=48)
    assert len(windows) > 50
    for w in windows:  # every word: the last piece's state in its window, run alone and unpadded
        lo = offsets[w.start]
        hidden = hf_last_hidden(model, ids[lo:offsets[w.end]])
        expected = hidden[offsets[w.first + 1:w.end + 1] - 1 - lo]
        numpy.testing.assert_allclose(vectors[w.first:w.end], expected, atol=2e-4)
        if w.start > 0:  # left context kept beyond the first window
            assert offsets[w.first] - lo >= 16 - int(lengths.max())


def test_windows_change_only_words_beyond_the_first_window(tiny, vocab):
    doc = long_doc(vocab, 150, seed=1)
    full = make_decoder(tiny, [doc]).predict([doc])[0]  # one pass (window 1024)
    windowed_model = make_decoder(tiny, [doc], window=64, stride=48)
    windowed = windowed_model.predict([doc])[0]
    tokenizer = windowed_model.layers[0].shims[0]._hfmodel.tokenizer
    _, lengths = doc_pieces(doc, tokenizer)
    first = plan_windows(lengths, window=64, stride=48)[0]
    numpy.testing.assert_allclose(windowed[:first.end], full[:first.end], atol=2e-4)
    assert numpy.abs(windowed[first.end:] - full[first.end:]).max(axis=1).min() > 1e-3  # less context after it


# ------------------------------------------------------------------ alignment and padding
def test_alignment_is_one_word_to_its_own_pieces(tiny, vocab):
    nlp = spacy.blank("en")
    doc = nlp.make_doc("Los hallazgos analíticos (niño) mostraron calcitonina-elevada, BRCA1/TP53; «Ångström» "
                       "5.3mg naïve <|endoftext|> cancer.\u200b end")
    assert not any(t.is_space for t in doc) and any(not t.whitespace_ for t in doc[:-1])
    texts = word_texts(doc)
    assert texts[0] == " Los" and texts[1] == " hallazgos"
    for token, text in zip(doc, texts):  # leading space iff whitespace precedes the word (and the first word)
        assert text == (" " if token.i == 0 or doc[token.i - 1].whitespace_ else "") + token.text
    model = make_decoder(tiny, [doc])
    tokenizer = model.layers[0].shims[0]._hfmodel.tokenizer
    ids, lengths = doc_pieces(doc, tokenizer)
    assert len(lengths) == len(doc) and lengths.min() >= 1
    starts = numpy.cumsum(lengths) - lengths
    for token, text, start, n in zip(doc, texts, starts, lengths):
        assert tokenizer.decode(ids[start:start + n].tolist()) == text
    assert tokenizer.decode(ids.tolist()) == " " + doc.text  # nothing lost, nothing merged across words
    assert tokenizer.eos_token_id not in ids.tolist()  # "<|endoftext|>" in the text is plain characters


def test_endoftext_in_text_is_never_padding(tiny, vocab):
    doc = Doc(vocab, words=["BRCA1", "<|endoftext|>", "cancer", "<|endoftext|>"])
    other = long_doc(vocab, 200, seed=2)
    model = make_decoder(tiny, [doc])
    alone = model.predict([doc])[0]
    padded = model.predict([doc, other])[0]  # right-padded next to a longer window
    numpy.testing.assert_allclose(alone, padded, atol=1e-5)
    assert numpy.abs(alone).min(axis=1).max() > 0 and numpy.abs(alone).sum(axis=1).min() > 0  # real vectors
    assert model.layers[0].shims[0]._hfmodel.tokenizer.pad_token == "<|endoftext|>"


def test_empty_and_whitespace_docs(tiny, vocab):
    docs = [Doc(vocab, words=[]), Doc(vocab, words=["\n\n", " "], spaces=[False, False]),
            Doc(vocab, words=["BRCA1", "\n", "cancer"])]
    model = make_decoder(tiny, docs, bidirectional=True)
    out = model.predict(docs)
    assert [o.shape for o in out] == [(0, 64), (2, 64), (3, 64)]
    assert not out[1].any() and not out[2][1].any() and out[2][0].any() and out[2][2].any()
    assert [o.shape for o in model.predict(docs[:2])] == [(0, 64), (2, 64)]  # nothing to encode at all
    vectors, backprop = model.begin_update(docs)
    backprop([v + 1 for v in vectors])


def test_a_word_longer_than_the_window_still_gets_a_vector(tiny, vocab):
    doc = Doc(vocab, words=["BRCA1", "x" * 400 + "ñ" * 100, "cancer", "."])
    model = make_decoder(tiny, [doc], window=16, stride=8)
    _, lengths = doc_pieces(doc, model.layers[0].shims[0]._hfmodel.tokenizer, max_pieces=16)
    assert lengths[1] == 16  # its first 15 pieces and its last
    vectors = model.predict([doc])[0]
    assert vectors.shape == (4, 32) and numpy.abs(vectors).sum(axis=1).min() > 0


@pytest.mark.parametrize("pooling", ["first", "mean"])
def test_other_poolings(tiny, vocab, pooling):
    doc = Doc(vocab, words=["BRCA1", "cause", "hereditary", "."])
    last = make_decoder(tiny, [doc]).predict([doc])[0]
    model = make_decoder(tiny, [doc], pooling=pooling)
    other = model.predict([doc])[0]
    _, lengths = doc_pieces(doc, model.layers[0].shims[0]._hfmodel.tokenizer)
    for row, n in enumerate(lengths):
        assert numpy.allclose(other[row], last[row], atol=1e-5) == (n == 1)


def test_torch_modules_exposed_for_hooks(tiny, vocab):
    doc = Doc(vocab, words=["BRCA1", "cause", "cancer"])
    model = make_decoder(tiny, [doc], bidirectional=True)
    modules = decoder_modules(model)
    assert len(modules) == 2 and modules[0] is not modules[1]  # separate weights by default
    calls = []
    modules[0].get_input_embeddings().register_forward_hook(lambda mod, inp, out: calls.append(out.shape))
    model.predict([doc])
    assert len(calls) == 1
    assert len(decoder_modules(make_decoder(tiny, [doc], bidirectional=True, shared_weights=True))) == 1


# ------------------------------------------------------------------ training and serialisation
def tagger_nlp(backbone, train_file, **overrides):
    config, _ = fit_schedule(build_config("transformer", backbone="gpt2", head="tagger", overrides={
        "paths.backbone": str(backbone), "paths.train": str(train_file), "paths.dev": str(train_file), **overrides}))
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    return nlp


@pytest.mark.parametrize("bidirectional,shared", [(False, False), (True, False), (True, True)],
                         ids=["forward", "bidirectional", "bidirectional-shared"])
def test_loss_falls_and_save_load_needs_no_backbone(tiny, train_file, tmp_path, bidirectional, shared):
    backbone = shutil.copytree(tiny["gpt2"], tmp_path / "gpt2-copy")
    spacy.util.fix_random_seed(0)
    nlp = tagger_nlp(backbone, train_file, **{
        "training.optimizer.learn_rate.initial_rate": 0.003, "training.max_steps": 30,
        "components.bioner_tagger.model.tok2vec.bidirectional": bidirectional,
        "components.bioner_tagger.model.tok2vec.shared_weights": shared})
    assert nlp.pipe_names == ["bioner_tagger", "doc_cleaner"]
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    optimizer = nlp.initialize(lambda: examples)
    losses = []
    for _ in range(30):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step, drop=0.0)
        optimizer.step_schedules()
        losses.append(step["bioner_tagger"])
    assert sum(losses[-3:]) < 0.3 * sum(losses[:3]), losses
    texts = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma .",
             "", "niño <|endoftext|> TP53"]
    before = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    assert any(before)
    docs = [nlp.make_doc(t) for t in texts]
    vectors = nlp.get_pipe("bioner_tagger").model.get_ref("tok2vec").predict(docs)
    nlp.to_disk(tmp_path / "model")
    shutil.rmtree(backbone)  # the saved pipeline carries config, tokenizer and weights
    reloaded = spacy.load(tmp_path / "model")
    after = [[(e.start, e.end, e.label_) for e in d.ents] for d in reloaded.pipe(texts)]
    assert after == before
    again = reloaded.get_pipe("bioner_tagger").model.get_ref("tok2vec").predict(docs)
    assert all(numpy.allclose(a, b, atol=1e-5) for a, b in zip(vectors, again))
    assert reloaded.get_pipe("bioner_tagger").model.get_ref("tok2vec").attrs["window"] == 1024


def next_word_is_disease(vocab, n, seed):
    """Sentences where a word is an entity iff the NEXT word is "disease" (never two in a row)."""
    rng = random.Random(seed)
    words = ["gene", "cell", "tumour", "protein", "patients", "therapy", "mutations", "cancer", "human", "breast",
             "ovarian", "induced"]
    docs = []
    for _ in range(n):
        length = rng.randint(5, 9)
        sent = [rng.choice(words) for _ in range(length)]
        where = sorted(rng.sample(range(1, length), rng.choice([1, 2])))
        if len(where) == 2 and where[1] - where[0] < 2:
            where = where[:1]
        ents = ["O"] * length
        for k in where:
            sent[k] = "disease"
            ents[k - 1] = "B-ENT"
        docs.append(Doc(vocab, words=sent, ents=ents))
    return docs


def synthetic_f1(tiny, train_file, bidirectional, steps=240):
    spacy.util.fix_random_seed(0)
    nlp = tagger_nlp(tiny["gpt2"], train_file, **{
        "training.optimizer.learn_rate.initial_rate": 0.003, "training.max_steps": steps,
        "components.bioner_tagger.model.tok2vec.bidirectional": bidirectional})
    return next_word_f1(nlp, steps)


def next_word_f1(nlp, steps):
    """Train ``nlp`` for ``steps`` batches of 16 on :func:`next_word_is_disease` sentences; test entity F1."""
    train = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in next_word_is_disease(nlp.vocab, 400, 1)]
    test = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in next_word_is_disease(nlp.vocab, 100, 2)]
    optimizer = nlp.initialize(lambda: train)
    rng = random.Random(0)
    step = 0
    while step < steps:
        rng.shuffle(train)
        for start in range(0, len(train), 16):
            nlp.update(train[start:start + 16], sgd=optimizer, losses={}, drop=0.0)
            optimizer.step_schedules()
            step += 1
            if step == steps:
                break
    return nlp.evaluate(test)["ents_f"]


def test_bidirectional_mode_sees_the_next_word(tiny, train_file):
    forward = synthetic_f1(tiny, train_file, bidirectional=False)
    both = synthetic_f1(tiny, train_file, bidirectional=True)
    assert forward < 0.5, forward  # a causal pass cannot know the next word: chance level
    assert both >= 0.9, both


def _gpu_problem():
    from spacy_bioner.gpu import gpu_problem

    return gpu_problem(0)


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_problem() is not None, reason=f"needs a CUDA GPU with CuPy and torch: {_gpu_problem()}")
def test_gpu_training_step_with_mixed_precision(tiny, train_file):
    from spacy_bioner.gpu import require_gpu

    require_gpu(0)
    nlp = tagger_nlp(tiny["gpt2"], train_file, **{"components.bioner_tagger.model.tok2vec.mixed_precision": True,
                                                    "components.bioner_tagger.model.tok2vec.bidirectional": True})
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    optimizer = nlp.initialize(lambda: examples)
    losses = {}
    nlp.update(examples, sgd=optimizer, losses=losses)
    assert losses["bioner_tagger"] > 0
    assert decoder_modules(nlp.get_pipe("bioner_tagger").model)[0].device.type == "cuda"
    docs = list(nlp.pipe(["BRCA1 mutations cause cancer ."] * 3))  # inference on the GPU, in one batch
    assert all(d.has_annotation("ENT_IOB", require_complete=True) for d in docs)  # every token tagged
    assert len({tuple((e.start, e.end, e.label_) for e in d.ents) for d in docs}) == 1  # same text, same entities
