"""Task prompts (``--partial-labels prompt``): ``spacy_bioner.TransformerModel.v5`` reads the types to tag
before every window; the prompt's subwords never align to a token, windows keep it, a saved pipeline keeps it."""
from types import SimpleNamespace

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config
from transformers import AutoTokenizer

from spacy_bioner.corpus.mixes import ANNOTATES, PROMPTED
from spacy_bioner.errors import ConfigValueError
from spacy_bioner.models.prompts import TaskPrompt, configure_task_prompt_v2, encode_pairs, prompted_batch
from spacy_bioner.models.spans import SubwordWindows
from spacy_bioner.models.tokenization import TokenizationCache, encode
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

TYPES = ["Gene", "Chemical", "Disease"]
TEXTS = ["BRCA1 mutations cause breast cancer .", "Ataxia-telangiectasia", "a  b\tc é ünïcode"]
TOKENIZER_CONFIG = {"roberta": {"add_prefix_space": True}}


def tokenizer(tiny, family):
    return AutoTokenizer.from_pretrained(str(tiny[family]), **TOKENIZER_CONFIG.get(family, {}))


def test_prompt_text_and_choice():
    prompt = TaskPrompt(types=TYPES)
    assert prompt.text() == "Tag Gene, Chemical, Disease"
    assert prompt.text(["Disease", "Gene"]) == "Tag Gene, Disease"  # the prompt's own order
    doc = Doc(spacy.blank("en").vocab, words=["BRCA1"])
    assert prompt.for_doc(doc, is_train=True) == prompt.text()  # not from a mix: every type
    doc.user_data[ANNOTATES] = ["Disease"]
    assert prompt.for_doc(doc, is_train=True) == "Tag Disease"
    assert prompt.for_doc(doc, is_train=False) == prompt.text()  # prediction always asks for every type
    doc.user_data[ANNOTATES] = ["Species"]
    with pytest.raises(ValueError, match="none of the prompt's types"):
        prompt.for_doc(doc, is_train=True)
    with pytest.raises(ConfigValueError, match="placeholder"):
        TaskPrompt(types=TYPES, template="Tag these")
    with pytest.raises(ConfigValueError, match="braces"):
        TaskPrompt(types=TYPES, template="Tag {types} in {section}")
    assert TaskPrompt(types=["Gene"], template="{{Tag}} {types}").text() == "{Tag} Gene"
    for bad in ("{{types}}", "{types:.8}", "{types!r}", "{types} {types.upper}", "{} {types}", "Tag {types"):
        with pytest.raises(ConfigValueError, match="placeholder"):  # a spec would cut type names silently
            TaskPrompt(types=TYPES, template=bad)
    with pytest.raises(ValueError, match="types"):
        TaskPrompt(types=[])


def test_the_all_type_prompt_is_shown_to_a_share_of_training_documents():
    import random

    vocab = spacy.blank("en").vocab
    prompt = configure_task_prompt_v2(TYPES, all_types_rate=0.5)
    random.seed(0)
    docs = [Doc(vocab, words=["BRCA1"]) for _ in range(200)]
    for doc in docs:
        doc.user_data[ANNOTATES] = ["Disease"]
    texts = [prompt.for_doc(doc, is_train=True) for doc in docs]
    n_all = texts.count(prompt.text())
    assert 60 < n_all < 140 and texts.count("Tag Disease") == len(docs) - n_all
    # the choice is made once per Doc: its other windows, and the tagger's loss, see the same prompt
    assert [prompt.for_doc(doc, is_train=True) for doc in docs] == texts
    assert [doc.user_data[PROMPTED] for doc in docs] == [TYPES if t == prompt.text() else ["Disease"] for t in texts]
    assert all(prompt.for_doc(doc, is_train=False) == prompt.text() for doc in docs)
    for rate, expected in ((0.0, "Tag Disease"), (1.0, prompt.text())):
        doc = Doc(vocab, words=["x"])
        doc.user_data[ANNOTATES] = ["Disease"]
        assert TaskPrompt(types=TYPES, all_types_rate=rate).for_doc(doc, is_train=True) == expected
    with pytest.raises(ConfigValueError, match="all_types_rate"):
        TaskPrompt(types=TYPES, all_types_rate=1.5)


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta"])
def test_prompt_subwords_have_no_offsets_and_the_text_is_encoded_as_alone(tiny, family):
    tok = tokenizer(tiny, family)
    prompts = ["Tag Gene, Disease"] * len(TEXTS)
    pairs = encode_pairs(tok, prompts, TEXTS)
    alone = encode(tok, TEXTS)
    prompt_ids = tok(prompts[0], add_special_tokens=False)["input_ids"]
    for text, (ids, _, offsets) in zip(TEXTS, pairs):
        ids_1, _, offsets_1 = alone[text]
        with_chars = offsets[:, 1] > offsets[:, 0]
        # the text's subwords: the same ids and character offsets as the text encoded alone
        assert ids[with_chars].tolist() == ids_1[offsets_1[:, 1] > offsets_1[:, 0]].tolist()
        assert offsets[with_chars].tolist() == offsets_1[offsets_1[:, 1] > offsets_1[:, 0]].tolist()
        # the prompt's subwords are in the input, before the text, and carry no characters
        assert ids[1:1 + len(prompt_ids)].tolist() == prompt_ids
        assert not with_chars[:1 + len(prompt_ids)].any()
        assert len(ids) == len(ids_1) + len(prompt_ids) + TaskPrompt(types=TYPES).extra_subwords(tok) \
            - len(tok(TaskPrompt(types=TYPES).text(), add_special_tokens=False)["input_ids"])


def test_the_cache_gives_the_prompted_batch(tiny):
    tok = tokenizer(tiny, "bert")
    cache = TokenizationCache()
    prompts = ["Tag Gene", "Tag Disease", "Tag Gene"]
    texts = [TEXTS[0], TEXTS[0], TEXTS[0]]  # the same text under two prompts: two entries
    for _ in range(2):
        a, b = prompted_batch(tok, prompts, texts, cache=cache), prompted_batch(tok, prompts, texts)
        for key in a:
            assert (numpy.asarray(a[key]) == numpy.asarray(b[key])).all(), key
    assert (cache.misses, cache.hits, len(cache)) == (2, 4, 2)
    plain = cache(tok, texts)  # the same text without a prompt is another entry
    assert plain["input_ids"].shape[1] < a["input_ids"].shape[1] and len(cache) == 3


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_windows_leave_room_for_the_longest_prompt(tiny, family):
    tok = tokenizer(tiny, family)
    tok.model_max_length = 40
    prompt = TaskPrompt(types=TYPES)
    getter = SubwordWindows(window=40, stride=24)
    getter.bind(SimpleNamespace(tokenizer=tok, attrs={"task_prompt": prompt}))
    doc = spacy.blank("en")("BRCA1 mutations cause hereditary breast cancer and ovarian carcinoma . " * 12)
    windows = getter([doc])[0]
    assert len(windows) > 3
    covered = set()
    for span in windows:
        n = len(tok(prompt.text(), span.text, verbose=False)["input_ids"])
        assert n <= 40, f"window of {n} subwords with its prompt"
        covered.update(range(span.start, span.end))
    assert covered == set(range(len(doc)))


def make(tiny, train_file, tmp_path=None, window=512, prompt=None):
    spacy.util.fix_random_seed(0)
    config, _ = fit_schedule(build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        "training.max_steps": 20, "components.transformer.model.@architectures": "spacy_bioner.TransformerModel.v5",
        "components.transformer.model.get_spans.window": window,
        "components.transformer.model.get_spans.stride": window * 3 // 4}))
    config["components"]["transformer"]["model"]["task_prompt"] = prompt or {"@misc": "spacy_bioner.task_prompt.v1",
                                                                            "types": ["Gene", "Disease"]}
    if prompt:
        config["components"]["bioner_tagger"]["partial_labels"] = "partial"
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    from spacy_bioner.corpus.conll import read_docs

    examples = []
    for k, d in enumerate(read_docs(train_file, vocab=nlp.vocab)):
        predicted = Doc(nlp.vocab, words=[t.text for t in d])
        if k == 0:  # a "disease-only corpus" sentence
            predicted.user_data[ANNOTATES] = d.user_data[ANNOTATES] = ["Disease"]
        examples.append(Example(predicted, d))
    return nlp, examples


@pytest.fixture
def seen_prompts(monkeypatch):
    """Every prompt the transformer encodes while the test runs."""
    from spacy_bioner.models import prompts as prompts_module

    seen = []
    real = prompts_module.prompted_batch

    def spy(tok, prompts, texts, **kwargs):
        seen.extend(prompts)
        return real(tok, prompts, texts, **kwargs)

    monkeypatch.setattr(prompts_module, "prompted_batch", spy)
    return seen


def rows_and_alignment(nlp, text):
    """The transformer's input rows (subword strings), the subwords the tokens align to, and the row width."""
    doc = nlp.make_doc(text)
    batch = nlp.get_pipe("transformer").model.predict([doc])
    strings = batch.wordpieces.strings
    return strings, numpy.asarray(batch.align.dataXd).reshape(-1).tolist(), batch.wordpieces.input_ids.shape[1]


def test_prompted_pipeline_trains_predicts_and_survives_save_load(tiny, train_file, tmp_path):
    nlp, examples = make(tiny, train_file)
    seen = []
    from spacy_bioner.models import prompts as prompts_module

    real = prompts_module.prompted_batch

    def spy(tok, prompts, texts, **kwargs):
        seen.append(list(prompts))
        return real(tok, prompts, texts, **kwargs)

    prompts_module.prompted_batch = spy
    try:
        optimizer = nlp.initialize(lambda: examples)
        for _ in range(3):
            nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
    finally:
        prompts_module.prompted_batch = real
    assert ["Tag Disease", "Tag Gene, Disease"] in seen  # training: each Example's corpus types
    text = "BRCA1 mutations cause hereditary breast cancer ."
    doc = nlp(text)
    strings, aligned, width = rows_and_alignment(nlp, text)
    tok = nlp.get_pipe("transformer").model.tokenizer
    expected = ["[CLS]", *tok.tokenize("Tag Gene, Disease"), "[SEP]"]  # prediction asks for every type
    assert strings[0][:len(expected)] == expected
    prompt_end = len(expected) - 1
    assert all(i % width > prompt_end for i in aligned)  # no token aligns to the prompt or its [SEP]
    assert doc.text == text and all(0 <= e.start < e.end <= len(doc) for e in doc.ents)
    empty = nlp("")
    assert len(empty) == 0 and not empty.ents
    def hidden(pipeline):
        return pipeline.get_pipe("transformer").model.predict([pipeline.make_doc(text)]) \
            .model_output.last_hidden_state.detach().numpy()

    def tag_scores(pipeline):
        doc = pipeline.get_pipe("transformer")(pipeline.make_doc(text))
        return numpy.asarray(pipeline.get_pipe("bioner_tagger").model.predict([doc])[0])

    before_hidden, before_scores = hidden(nlp), tag_scores(nlp)
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert loaded.get_pipe("transformer").model.attrs["task_prompt"].types == ["Gene", "Disease"]
    assert rows_and_alignment(loaded, text)[0] == strings  # the same prompted input
    numpy.testing.assert_allclose(hidden(loaded), before_hidden, atol=1e-5)
    numpy.testing.assert_allclose(tag_scores(loaded), before_scores, atol=1e-5)


def test_documents_shown_the_all_type_prompt_learn_their_unannotated_types_as_unknown(tiny, train_file, monkeypatch):
    from spacy_bioner.pipeline import tagger as tagger_module

    nlp, examples = make(tiny, train_file, prompt={"@misc": "spacy_bioner.task_prompt.v2", "types": ["Gene", "Disease"],
                                                   "all_types_rate": 1.0})
    masks = []
    real = tagger_module.allowed_tags

    def spy(egs, gold, **kwargs):
        masks.append((list(egs), real(egs, gold, **kwargs)))
        return masks[-1][1]

    monkeypatch.setattr(tagger_module, "allowed_tags", spy)
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
    egs, mask = masks[-1]
    assert egs[0].predicted.user_data[PROMPTED] == ["Gene", "Disease"]  # asked for every type ...
    gene = nlp.get_pipe("bioner_tagger").labels.index("Gene")
    outside = [i for i, t in enumerate(egs[0].reference) if t.ent_iob_ == "O"]
    columns = [1 + 2 * gene, 2 + 2 * gene]  # B-Gene, I-Gene (iob2)
    assert mask is not None and (mask[numpy.ix_(outside, columns)] == 1).all()  # ... so its genes are unknown
    with_v1, examples = make(tiny, train_file)
    with_v1.get_pipe("bioner_tagger").partial_labels = "partial"
    masks.clear()
    optimizer = with_v1.initialize(lambda: examples)
    with_v1.update(examples, sgd=optimizer, drop=0.0, losses={})
    assert masks[-1][0][0].predicted.user_data[PROMPTED] == ["Disease"] and masks[-1][1] is None  # "Tag Disease": O


def test_long_documents_keep_the_prompt_in_every_window(tiny, train_file):
    nlp, examples = make(tiny, train_file, window=32)
    nlp.initialize(lambda: examples)
    text = "BRCA1 mutations cause hereditary breast cancer and ovarian carcinoma . " * 20
    strings, aligned, width = rows_and_alignment(nlp, text)
    assert len(strings) > 4
    prompt = strings[0][:strings[0].index("[SEP]") + 1]
    for row in strings:
        assert row[:len(prompt)] == prompt and len([s for s in row if s != "[PAD]"]) <= 32
    assert sorted({i % width for i in aligned})[0] >= len(prompt)


def test_a_prompt_longer_than_the_window_is_a_config_error(tiny):
    tok = tokenizer(tiny, "bert")
    getter = SubwordWindows(window=8, stride=4)
    getter.bind(SimpleNamespace(tokenizer=tok, attrs={"task_prompt": TaskPrompt(types=TYPES)}))
    with pytest.raises(ConfigValueError, match="leaving no room for text"):
        getter([spacy.blank("en")("BRCA1 mutations")])


def test_init_from_keeps_the_prompt_the_pipeline_was_trained_with(tiny, train_file, tmp_path):
    from spacy_bioner.training.init_from import check_task_prompt

    nlp, examples = make(tiny, train_file)
    nlp.initialize(lambda: examples)
    plain = {"components": {"transformer": {"model": {"@architectures": "spacy_bioner.TransformerModel.v4"}}}}
    with pytest.raises(ConfigValueError, match="task prompt over Gene, Disease.*asks for no task prompt"):
        check_task_prompt(plain, nlp, pipeline=tmp_path, sourced=["transformer"])
    other = {"components": {"transformer": {"model": {"task_prompt": {"types": ["Gene", "Species"]}}}}}
    with pytest.raises(ConfigValueError, match="Gene, Species"):
        check_task_prompt(other, nlp, pipeline=tmp_path, sourced=["transformer"])
    same = {"components": {"transformer": {"model": {"task_prompt": {"types": ["Gene", "Disease"]}}}}}
    check_task_prompt(same, nlp, pipeline=tmp_path, sourced=["transformer"])
    check_task_prompt(plain, nlp, pipeline=tmp_path, sourced=["bioner_tagger"])  # a fresh transformer: any prompt
    v2 = {"components": {"transformer": {"model": {"task_prompt": {"@misc": "spacy_bioner.task_prompt.v2",
                                                                   "types": ["Gene", "Disease"]}}}}}
    with pytest.raises(ConfigValueError, match="all-type prompt to 0 of training documents.*asks for 0.5"):
        check_task_prompt(v2, nlp, pipeline=tmp_path, sourced=["transformer"])  # a v1 pipeline, a v2 config


def test_an_all_type_prompt_needs_the_partial_loss(tiny, train_file):
    nlp, examples = make(tiny, train_file, prompt={"@misc": "spacy_bioner.task_prompt.v2", "types": ["Gene", "Disease"]})
    nlp.get_pipe("bioner_tagger").partial_labels = "naive"
    with pytest.raises(ConfigValueError, match="partial_labels = \"partial\""):
        nlp.initialize(lambda: examples)


def test_the_test_time_attack_prompts_every_type_as_prediction_does(tiny, train_file, seen_prompts):
    from spacy_bioner.pipeline.adversarial import attack, configure_fgsm_v2

    nlp, examples = make(tiny, train_file)
    nlp.initialize(lambda: examples)
    assert examples[0].predicted.user_data[ANNOTATES] == ["Disease"]  # a mix's Example, as evaluate may pass it
    seen = seen_prompts
    result = attack(nlp, examples, strategy=configure_fgsm_v2(), batch_size=len(examples))
    assert len(result["docs"]) == len(examples) and set(seen) == {"Tag Gene, Disease"}
    assert examples[0].predicted.user_data[ANNOTATES] == ["Disease"]  # the caller's Examples are left alone


def test_one_token_type_models_get_segment_zero(tiny, train_file, monkeypatch):
    from spacy_bioner.models import prompts as prompts_module

    nlp, examples = make(tiny, train_file)
    nlp.initialize(lambda: examples)
    real = prompts_module.prompted_batch

    def as_bert(tok, prompts, texts, **kwargs):  # a real BERT tokenizer puts a pair's text in segment 1
        batch = real(tok, prompts, texts, **kwargs)
        return {**batch, "token_type_ids": numpy.ones_like(batch["input_ids"])}

    monkeypatch.setattr(prompts_module, "prompted_batch", as_bert)
    model = nlp.get_pipe("transformer").model
    doc = nlp.make_doc("BRCA1 mutations cause breast cancer .")
    assert model.predict([doc]).wordpieces.token_type_ids.min() == 1  # two token types: kept
    model.layers[0].shims[0]._model.config.type_vocab_size = 1
    assert model.predict([doc]).wordpieces.token_type_ids.max() == 0  # one token type: all segment 0


def test_prompt_config_needs_a_mix_and_an_encoder():
    with pytest.raises(ConfigValueError, match="needs a corpus mix"):
        build_config("transformer", head="tagger", partial_labels="prompt")
    with pytest.raises(ConfigValueError, match="encoder backbone"):
        build_config("tok2vec", head="tagger", mix="huner", partial_labels="prompt")
    config = build_config("transformer", head="tagger", mix="huner-disease", partial_labels="prompt")
    model = config["components"]["transformer"]["model"]
    assert model["@architectures"] == "spacy_bioner.TransformerModel.v5"
    assert model["task_prompt"] == {"@misc": "spacy_bioner.task_prompt.v2", "types": ["Disease"], "all_types_rate": 0.5}
    assert config["components"]["bioner_tagger"]["partial_labels"] == "partial"  # what the prompt did not ask for is O


def test_task_prompt_is_rejected_without_fast_alignment():
    from spacy_bioner.models.transformer import transformer_model
    from spacy_bioner.models.spans import configure_subword_windows

    with pytest.raises(ValueError, match="fast_alignment"):
        transformer_model("x", configure_subword_windows(), task_prompt=TaskPrompt(types=TYPES))


def test_prompted_pipeline_runs_on_onnx_and_refuses_hf_export(tiny, train_file, tmp_path):
    from spacy_bioner.errors import ModelLoadError
    from spacy_bioner.packaging.huggingface import export_hf

    nlp, examples = make(tiny, train_file)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
    nlp.to_disk(tmp_path / "model")
    with pytest.raises(ModelLoadError, match="task prompt"):
        export_hf(tmp_path / "model", tmp_path / "hf")
    pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    from spacy_bioner.models.onnx_runtime import use_onnx

    texts = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma ."]
    loaded = spacy.load(tmp_path / "model")
    torch_rows = [loaded.get_pipe("transformer").model.predict([loaded.make_doc(t)]) for t in texts]
    use_onnx(loaded, cache_dir=tmp_path / "cache")
    for text, expected in zip(texts, torch_rows):
        got = loaded.get_pipe("transformer").model.predict([loaded.make_doc(text)])
        assert got.wordpieces.strings == expected.wordpieces.strings  # the prompt is ours, before the runtime
        numpy.testing.assert_allclose(got.model_output.last_hidden_state.detach().numpy(),
                                      expected.model_output.last_hidden_state.detach().numpy(), atol=1e-4)


# --- task_prompt.v3: the prompt names the corpus (--partial-labels corpus-prompt) ---

def corpus_doc(vocab, corpus="BC2GM", annotates=("Gene",)):
    from spacy_bioner.corpus.mixes import CORPUS

    doc = Doc(vocab, words=["BRCA1"])
    doc.user_data[ANNOTATES] = list(annotates)
    doc.user_data[CORPUS] = corpus
    return doc


def test_corpus_prompt_names_a_known_corpus_for_a_share_of_training_and_at_prediction():
    import random

    from spacy_bioner.corpus.mixes import CORPUS, PROMPTED_CORPUS
    from spacy_bioner.models.prompts import configure_task_prompt_v3

    vocab = spacy.blank("en").vocab
    prompt = configure_task_prompt_v3(TYPES, corpora=["BC2GM", "NCBI-disease"], all_types_rate=0.0)
    assert prompt.text(["Gene"], corpus="BC2GM") == "BC2GM: Tag Gene"
    random.seed(0)
    docs = [corpus_doc(vocab) for _ in range(200)]
    texts = [prompt.for_doc(doc, is_train=True) for doc in docs]
    named = texts.count("BC2GM: Tag Gene")
    assert 60 < named < 140 and texts.count("Tag Gene") == len(docs) - named
    assert [prompt.for_doc(doc, is_train=True) for doc in docs] == texts  # one choice per Doc
    assert [doc.user_data[PROMPTED_CORPUS] for doc in docs] == ["BC2GM" if "BC2GM" in t else "" for t in texts]
    # prediction: every type, and the corpus when the prompt knows it (per-corpus evaluation of a mix)
    assert prompt.for_doc(docs[0], is_train=False) == "BC2GM: Tag Gene, Chemical, Disease"
    unseen = corpus_doc(vocab, corpus="CRAFT")  # a held-out corpus: the prompt without a corpus
    assert prompt.for_doc(unseen, is_train=False) == prompt.text() == "Tag Gene, Chemical, Disease"
    assert prompt.for_doc(unseen, is_train=True) == "Tag Gene" and PROMPTED_CORPUS not in unseen.user_data
    plain = Doc(vocab, words=["BRCA1"])  # nlp(text)
    assert prompt.for_doc(plain, is_train=False) == prompt.text()
    # v2 never names a corpus, whatever the Doc carries
    v2 = configure_task_prompt_v2(TYPES, all_types_rate=0.0)
    assert v2.for_doc(corpus_doc(vocab), is_train=True) == "Tag Gene"
    assert v2.for_doc(corpus_doc(vocab), is_train=False) == v2.text()
    for rate, expected in ((0.0, "Tag Gene"), (1.0, "BC2GM: Tag Gene")):
        p = configure_task_prompt_v3(TYPES, corpora=["BC2GM"], all_types_rate=0.0, corpus_rate=rate)
        assert p.for_doc(corpus_doc(vocab), is_train=True) == expected
    doc = corpus_doc(vocab)
    doc.user_data[CORPUS] = "NCBI-disease"  # a Doc whose recorded choice belongs to another corpus: drawn again
    doc.user_data[PROMPTED_CORPUS] = "BC2GM"
    assert configure_task_prompt_v3(TYPES, corpora=["BC2GM", "NCBI-disease"], all_types_rate=0.0,
                                    corpus_rate=1.0).for_doc(doc, is_train=True) == "NCBI-disease: Tag Gene"
    for bad in ("{corpus} only", "{corpus:.3}: {prompt}", "{{corpus}}: {prompt}"):
        with pytest.raises(ConfigValueError, match="corpus_template"):
            TaskPrompt(types=TYPES, corpora=["BC2GM"], corpus_template=bad)
    assert TaskPrompt(types=TYPES, corpora=["BC2GM"], corpus_template="[{corpus}] {prompt}").text(
        ["Gene"], corpus="BC2GM") == "[BC2GM] Tag Gene"
    with pytest.raises(ConfigValueError, match="corpus_rate"):
        TaskPrompt(types=TYPES, corpora=["BC2GM"], corpus_rate=2.0)
    with pytest.raises(ConfigValueError, match="corpus names"):
        TaskPrompt(types=TYPES, corpora=[""])


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_windows_leave_room_for_the_longest_corpus_prompt(tiny, family):
    tok = tokenizer(tiny, family)
    tok.model_max_length = 64
    prompt = TaskPrompt(types=TYPES, corpora=["BC2GM", "JNLPBA"])
    longest = prompt.text(corpus="JNLPBA")
    assert prompt.extra_subwords(tok) > TaskPrompt(types=TYPES).extra_subwords(tok)
    getter = SubwordWindows(window=64, stride=40)
    getter.bind(SimpleNamespace(tokenizer=tok, attrs={"task_prompt": prompt}))
    doc = spacy.blank("en")("BRCA1 mutations cause hereditary breast cancer and ovarian carcinoma . " * 12)
    for span in getter([doc])[0]:
        n = len(tok(longest, span.text, verbose=False)["input_ids"])
        assert n <= 64, f"window of {n} subwords with the longest corpus prompt"


def test_corpus_prompt_config_names_the_mix_corpora():
    from spacy_bioner.corpus.mixes import load_mix

    config = build_config("transformer", head="tagger", mix="huner-disease", partial_labels="corpus-prompt")
    block = config["components"]["transformer"]["model"]["task_prompt"]
    assert block["@misc"] == "spacy_bioner.task_prompt.v3" and block["types"] == ["Disease"]
    assert block["corpora"] == [c.name for c in load_mix("huner-disease").corpora] and block["corpus_rate"] == 0.5
    assert config["components"]["bioner_tagger"]["partial_labels"] == "partial"
    with pytest.raises(ConfigValueError, match="needs a corpus mix"):
        build_config("transformer", head="tagger", partial_labels="corpus-prompt")


def test_corpus_prompt_pipeline_names_the_corpus_in_mix_evaluation_and_survives_save_load(tiny, train_file, tmp_path, seen_prompts):
    from spacy_bioner.corpus.mixes import CORPUS
    from spacy_bioner.evaluation.predict import gold_inputs

    prompt = {"@misc": "spacy_bioner.task_prompt.v3", "types": ["Gene", "Disease"], "corpora": ["BC2GM"],
              "corpus_rate": 1.0}
    nlp, examples = make(tiny, train_file, prompt=prompt)
    for eg in examples:
        eg.predicted.user_data[CORPUS] = eg.reference.user_data[CORPUS] = "BC2GM"
    nlp.initialize(lambda: examples)
    seen = seen_prompts
    nlp.update(examples[:2], sgd=nlp.create_optimizer())
    assert set(seen) <= {"BC2GM: Tag Disease", "BC2GM: Tag Gene, Disease"} and seen
    seen.clear()
    nlp.to_disk(tmp_path / "model")
    loaded = spacy.load(tmp_path / "model")
    assert loaded.get_pipe("transformer").model.attrs["task_prompt"].corpora == ["BC2GM"]
    gold = [eg.reference for eg in examples[:2]]
    docs = list(loaded.pipe(gold_inputs(loaded, gold)))  # evaluation keeps the gold Doc's corpus
    assert set(seen) == {"BC2GM: Tag Gene, Disease"} and all(d.user_data[CORPUS] == "BC2GM" for d in docs)
    seen.clear()
    loaded("BRCA1 mutations cause breast cancer .")  # nlp(text): no corpus named
    assert set(seen) == {"Tag Gene, Disease"}


def test_init_from_keeps_the_corpora_the_prompt_names(tiny, train_file, tmp_path):
    from spacy_bioner.training.init_from import check_task_prompt

    prompt = {"@misc": "spacy_bioner.task_prompt.v3", "types": ["Gene", "Disease"], "corpora": ["BC2GM"]}
    nlp, examples = make(tiny, train_file, prompt=prompt)
    nlp.initialize(lambda: examples)
    check_task_prompt({"components": {"transformer": {"model": {"task_prompt": prompt}}}}, nlp,
                      pipeline=tmp_path, sourced=["transformer"])
    other = {**prompt, "corpora": ["BC2GM", "JNLPBA"]}
    with pytest.raises(ConfigValueError, match="names BC2GM, the config's BC2GM, JNLPBA"):
        check_task_prompt({"components": {"transformer": {"model": {"task_prompt": other}}}}, nlp,
                          pipeline=tmp_path, sourced=["transformer"])
    v2 = {**prompt, "@misc": "spacy_bioner.task_prompt.v2"}
    del v2["corpora"]
    with pytest.raises(ConfigValueError, match="names BC2GM, the config's no corpus"):
        check_task_prompt({"components": {"transformer": {"model": {"task_prompt": v2}}}}, nlp,
                          pipeline=tmp_path, sourced=["transformer"])


def test_corpus_prompt_names_only_the_trained_corpora_and_init_from_keeps_its_rate(tiny, train_file, tmp_path):
    from spacy_bioner.packaging.wheel import _prompt_mode
    from spacy_bioner.training.init_from import check_task_prompt

    config = build_config("transformer", head="tagger", mix="huner", partial_labels="corpus-prompt",
                          overrides={"corpora.train.corpora": ["JNLPBA", "BC2GM"]})
    block = config["components"]["transformer"]["model"]["task_prompt"]
    assert block["corpora"] == ["BC2GM", "JNLPBA"]  # the mix's order, the trained ones only
    assert _prompt_mode(block) == "corpus-prompt" and _prompt_mode({**block, "@misc": "x.v2"}) == "prompt"
    assert _prompt_mode(None) is None
    prompt = {"@misc": "spacy_bioner.task_prompt.v3", "types": ["Gene", "Disease"], "corpora": ["BC2GM"]}
    nlp, examples = make(tiny, train_file, prompt=prompt)
    nlp.initialize(lambda: examples)
    faster = {**prompt, "corpus_rate": 0.9}
    with pytest.raises(ConfigValueError, match="names the corpus for 0.5 of training documents"):
        check_task_prompt({"components": {"transformer": {"model": {"task_prompt": faster}}}}, nlp,
                          pipeline=tmp_path, sourced=["transformer"])
