"""``spacy_bioner.DecoderTagger.v2``: Llama, Mistral and Qwen2-class decoders with LoRA (tiny offline models)."""
import configparser
import random
import shutil

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.errors import ConfigValueError, ModelLoadError
from spacy_bioner.models.decoder import (ARCHITECTURE_V2, check_unmasked, configure_decoder_tagger_v2,
                                         decoder_modules, decoder_tagger)
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT
from .test_decoder import next_word_f1

pytest.importorskip("peft", reason="LoRA tests need peft: pip install 'spacy-bioner[lora]'")

LLMS = {"llama": "llama-3.1-8b", "mistral": "mistral-7b", "qwen2": "qwen2.5-7b"}  # tiny family → backbone file
TEXTS = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma .", "",
         "niño <s> TP53 </s> <|endoftext|>"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def vocab():
    return spacy.blank("en").vocab


def v2(tiny, family, docs, **kwargs):
    model = decoder_tagger(str(tiny[family]), version=2, **kwargs)
    model.initialize(X=docs)
    return model


def llm_nlp(backbone, family, train_file, **overrides):
    config, _ = fit_schedule(build_config("transformer", backbone=LLMS[family], head="tagger", overrides={
        "paths.backbone": str(backbone), "paths.train": str(train_file), "paths.dev": str(train_file), **overrides}))
    return load_model_from_config(config, auto_fill=True, validate=True)


def ents(nlp, texts=TEXTS):
    return [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]


def train(nlp, examples, steps):
    optimizer = nlp.initialize(lambda: examples)
    losses = []
    for _ in range(steps):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step, drop=0.0)
        optimizer.step_schedules()
        losses.append(step["bioner_tagger"])
    return losses


# ------------------------------------------------------------------ registry and configs
def test_registered_and_declared():
    assert spacy.registry.architectures.get(ARCHITECTURE_V2) is configure_decoder_tagger_v2
    parser = configparser.ConfigParser()
    parser.read(PROJECT / "setup.cfg")
    declared = parser["options.entry_points"]["spacy_architectures"]
    assert f"{ARCHITECTURE_V2} = spacy_bioner.models.decoder:configure_decoder_tagger_v2" in declared


@pytest.mark.parametrize("family", sorted(LLMS))
def test_backbone_configs_name_a_hub_model_with_lora(family):
    config = build_config("transformer", backbone=LLMS[family], head="tagger")
    block = config["components"]["bioner_tagger"]["model"]["tok2vec"]
    assert block["@architectures"] == ARCHITECTURE_V2 and block["lora"]["r"] > 0
    assert "/" in config["paths"]["backbone"] and "transformer" not in config["components"]


@pytest.mark.parametrize("settings,needle", [
    ({"quantization": "4bit"}, "lora.r > 0"),
    ({"quantization": "4bit", "lora": {"r": 4}, "embed_base": True}, "embed_base"),
    ({"bidirectional": "reverse", "shared_weights": False, "lora": {"r": 4}}, "shared_weights = true"),
    ({"bidirectional": "sideways"}, "bidirectional must be one of"),
    ({"dtype": "float8"}, "dtype must be one of"),
    ({"lora": {"r": 4, "rank": 8}}, "unknown setting"),
    ({"lora": {"r": -1}}, "lora.r"),
    ({"lora": {"r": True}}, "lora.r"),
    ({"lora": {"r": 4, "dropout": None}}, "lora.dropout"),
    ({"max_train_batch_items": 512, "mixed_precision": True}, "fp16 gradient"),
])
def test_bad_settings_are_one_line(settings, needle):
    with pytest.raises(ConfigValueError, match=needle) as err:
        configure_decoder_tagger_v2("meta-llama/Llama-3.1-8B", **settings)
    assert "\n" not in str(err.value)


def test_quantization_on_cpu_is_one_line(tiny, vocab):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: the 4-bit path runs in test_qlora_on_gpu")
    doc = Doc(vocab, words=["BRCA1", "mutations"])
    with pytest.raises(ConfigValueError, match="needs a CUDA GPU") as err:
        v2(tiny, "llama", [doc], lora={"r": 4}, quantization="4bit")
    assert "\n" not in str(err.value)


# ------------------------------------------------------------------ alignment: start token and spacing
@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gpt2"])
def test_vectors_are_the_models_own_reading_of_the_text(tiny, vocab, family):
    """Each word's vector is the model's hidden state at the word's last piece, in the sequence the tokenizer
    itself makes of the text (with its start token: <s> for Llama/Mistral, none for Qwen2/GPT-2)."""
    import torch

    words = ["BRCA1", "mutations", "cause", "hereditary", "breast", "cancer", "in", "niño"]
    doc = Doc(vocab, words=words)
    model = v2(tiny, family, [doc], lora={"r": 4})
    tokenizer = model.layers[0].shims[0]._hfmodel.tokenizer
    text = " ".join(words)
    if not model.attrs["self_prefixed"]:
        text = " " + text  # GPT-2's convention: the first word is read as inside a sentence
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    assert model.attrs["prefix_ids"] == ([tokenizer.bos_token_id] if family in ("llama", "mistral") else [])
    module = decoder_modules(model)[0]
    module.eval()
    with torch.no_grad():
        hidden = module(input_ids=torch.tensor([ids])).last_hidden_state[0].numpy()
    n_prefix = len(model.attrs["prefix_ids"])
    bare = model.attrs["self_prefixed"]
    lengths = [len(tokenizer(w if bare else " " + w, add_special_tokens=False)["input_ids"]) for w in words]
    last = numpy.cumsum(lengths) - 1 + n_prefix
    assert sum(lengths) + n_prefix == len(ids)  # the word-by-word pieces are the running text's pieces
    vectors = model.predict([doc])[0]
    numpy.testing.assert_allclose(vectors, hidden[last], atol=1e-5)


@pytest.mark.parametrize("window,longest", [(48, 49), (1024, 512)])
def test_every_window_starts_with_the_start_token_and_fits_the_positions(tiny, vocab, window, longest):
    rng = random.Random(0)
    doc = Doc(vocab, words=[rng.choice(["BRCA1", "mutations", "cause", "cancer", "."]) for _ in range(600)])
    model = v2(tiny, "llama", [doc], window=window, stride=window * 3 // 4)
    module = decoder_modules(model)[0]
    seen = []
    module.register_forward_pre_hook(lambda mod, args, kwargs: seen.append(kwargs["input_ids"]), with_kwargs=True)
    assert model.predict([doc])[0].shape == (600, 32)
    rows = [row for batch in seen for row in batch.tolist()]
    assert len(rows) > 1 and all(row[0] == 1 for row in rows)  # <s> begins every window
    lengths = [int(n) for batch in seen for n in (batch != -1).sum(1)]
    assert max(lengths) == longest  # 512 positions: 511 subwords of text + <s>


def test_empty_and_whitespace_docs(tiny, vocab):
    docs = [Doc(vocab, words=[]), Doc(vocab, words=["\n", " "], spaces=[False, False]), Doc(vocab, words=["TP53"])]
    model = v2(tiny, "llama", docs, lora={"r": 4})
    out = model.predict(docs)
    assert [o.shape for o in out] == [(0, 32), (2, 32), (1, 32)]
    assert not out[1].any() and out[2].any()


# ------------------------------------------------------------------ bidirectional modes
def test_unmasked_sees_the_right_context_and_none_does_not(tiny, vocab):
    a = Doc(vocab, words=["BRCA1", "mutations", "cause", "cancer"])
    b = Doc(vocab, words=["BRCA1", "mutations", "cause", "tumours"])
    for mode, sees_right in [("none", False), ("unmasked", True)]:
        model = v2(tiny, "llama", [a, b], bidirectional=mode)
        first_a, first_b = (out[0] for out in model.predict([a, b]))
        assert (not numpy.allclose(first_a, first_b, atol=1e-6)) == sees_right, mode


def test_gpt2_with_eager_attention_keeps_its_causal_mask_so_unmasked_is_refused(tiny, vocab):
    doc = Doc(vocab, words=["BRCA1", "mutations"])
    with pytest.raises(ConfigValueError, match="ignores a custom attention mask"):
        v2(tiny, "gpt2", [doc], bidirectional="unmasked", transformer_config={"attn_implementation": "eager"})


def test_a_model_that_ignores_custom_masks_is_refused():
    import torch

    class Causal(torch.nn.Module):  # a position only ever sees itself: the custom mask changes nothing
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)

        device = torch.device("cpu")

        def get_input_embeddings(self):
            return self.embed

        def forward(self, input_ids, attention_mask=None, **kwargs):
            return type("Out", (), {"last_hidden_state": self.embed(input_ids)})()

    with pytest.raises(ConfigValueError, match="ignores a custom attention mask"):
        check_unmasked(Causal(), name="causal-only")


def synthetic_f1(tiny, train_file, family, mode, *, lora_r=0, steps=200):
    spacy.util.fix_random_seed(0)
    nlp = llm_nlp(tiny[family], family, train_file, **{
        "training.optimizer.learn_rate.initial_rate": 0.003, "training.max_steps": steps,
        "components.bioner_tagger.model.tok2vec.bidirectional": mode,
        "components.bioner_tagger.model.tok2vec.lora.r": lora_r})
    return next_word_f1(nlp, steps)


@pytest.mark.parametrize("mode", ["reverse", "unmasked"])
def test_bidirectional_modes_see_the_next_word(tiny, train_file, mode):
    assert synthetic_f1(tiny, train_file, "llama", mode) >= 0.9


def test_causal_mode_cannot_see_the_next_word(tiny, train_file):
    assert synthetic_f1(tiny, train_file, "llama", "none") < 0.5


# ------------------------------------------------------------------ LoRA training, saving and loading
def lora_parts(module):
    state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    return ({k: v for k, v in state.items() if "lora_" not in k}, {k: v for k, v in state.items() if "lora_" in k})


def saved_weight_names(path):
    """The torch weights a saved pipeline's decoder shim holds."""
    import io

    import srsly
    import torch

    msg = srsly.msgpack_loads((path / "bioner_tagger" / "model").read_bytes())
    shims = [srsly.msgpack_loads(b) for node in msg["shims"] for b in node]
    return [name.replace(".default", "") for shim in shims
            for name in torch.load(io.BytesIO(shim["state"]), map_location="cpu")]


@pytest.mark.parametrize("family", sorted(LLMS))
def test_lora_trains_only_adapters_and_head_and_reloads_from_the_base(tiny, train_file, tmp_path, family):
    import torch

    backbone = shutil.copytree(tiny[family], tmp_path / f"{family}-base")
    spacy.util.fix_random_seed(0)
    nlp = llm_nlp(backbone, family, train_file, **{"training.optimizer.learn_rate.initial_rate": 0.01,
                                                   "training.max_steps": 25,
                                                   "components.bioner_tagger.model.tok2vec.lora.r": 8})
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    nlp.initialize(lambda: examples)
    module = decoder_modules(nlp.get_pipe("bioner_tagger").model)[0]
    frozen_before, adapters_before = lora_parts(module)
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    losses = train(nlp, examples, 25)
    assert sum(losses[-3:]) < 0.3 * sum(losses[:3]), losses
    frozen_after, adapters_after = lora_parts(module)
    assert all(torch.equal(frozen_before[k], frozen_after[k]) for k in frozen_before)  # base bit-identical
    assert any(not torch.equal(adapters_before[k], adapters_after[k]) for k in adapters_before)  # adapters trained
    before = ents(nlp)
    assert any(before)
    nlp.to_disk(tmp_path / "model")
    assert set(saved_weight_names(tmp_path / "model")) == {k.replace(".default", "") for k in adapters_after}  # no base
    assert ents(spacy.load(tmp_path / "model")) == before
    shutil.rmtree(backbone)
    with pytest.raises(ModelLoadError, match="need their base model") as err:
        spacy.load(tmp_path / "model")
    assert "\n" not in str(err.value) and "embed_base" in str(err.value)
    moved = shutil.copytree(tiny[family], tmp_path / "moved")  # the same weights elsewhere: point the config at them
    name = "components.bioner_tagger.model.tok2vec.name"
    assert ents(spacy.load(tmp_path / "model", config={name: str(moved)})) == before


def test_a_different_base_is_refused(tiny, train_file, tmp_path):
    import torch
    from transformers import AutoModel

    backbone = shutil.copytree(tiny["llama"], tmp_path / "base")
    nlp = llm_nlp(backbone, "llama", train_file, **{"components.bioner_tagger.model.tok2vec.lora.r": 4})
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    train(nlp, examples, 2)
    nlp.to_disk(tmp_path / "model")
    other = AutoModel.from_pretrained(backbone)
    with torch.no_grad():
        other.get_input_embeddings().weight[0, 0] += 1.0
    other.save_pretrained(backbone)
    with pytest.raises(ModelLoadError, match="not the one the pipeline's LoRA adapters were trained on"):
        spacy.load(tmp_path / "model")


def test_embed_base_needs_no_base_folder(tiny, train_file, tmp_path):
    backbone = shutil.copytree(tiny["qwen2"], tmp_path / "base")
    spacy.util.fix_random_seed(0)
    nlp = llm_nlp(backbone, "qwen2", train_file, **{"training.optimizer.learn_rate.initial_rate": 0.01,
                                                    "components.bioner_tagger.model.tok2vec.lora.r": 4,
                                                    "components.bioner_tagger.model.tok2vec.embed_base": True,
                                                    "components.bioner_tagger.model.tok2vec.bidirectional": "reverse",
                                                    "components.bioner_tagger.model.tok2vec.gradient_checkpointing": True})
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    losses = train(nlp, examples, 20)
    assert losses[-1] < losses[0]
    before = ents(nlp)
    docs = [nlp.make_doc(t) for t in TEXTS]
    vectors = nlp.get_pipe("bioner_tagger").model.get_ref("tok2vec").predict(docs)
    nlp.to_disk(tmp_path / "model")
    shutil.rmtree(backbone)
    reloaded = spacy.load(tmp_path / "model")
    assert ents(reloaded) == before
    again = reloaded.get_pipe("bioner_tagger").model.get_ref("tok2vec").predict(docs)
    assert all(numpy.allclose(a, b, atol=1e-5) for a, b in zip(vectors, again))


@pytest.mark.parametrize("mode", ["none", "reverse"])
def test_micro_batches_give_the_whole_batchs_gradients_with_recomputation(tiny, vocab, mode):
    import torch

    rng = random.Random(0)
    words = ["BRCA1", "mutations", "cause", "hereditary", "breast", "cancer", "TP53", "niño"]
    docs = [Doc(vocab, words=[rng.choice(words) for _ in range(rng.randint(1, 30))]) for _ in range(12)]
    model = v2(tiny, "llama", docs, lora={"r": 4, "dropout": 0.0}, bidirectional=mode, max_train_batch_items=64)
    module = decoder_modules(model)[0]
    calls = []
    module.get_base_model().register_forward_hook(lambda *args: calls.append(1))
    d_vectors = [numpy.random.default_rng(i).normal(size=(len(d), model.get_dim("nO"))).astype("float32")
                 for i, d in enumerate(docs)]

    def grads(max_items):
        model.attrs["max_train_batch_items"] = max_items
        for p in module.parameters():
            p.grad = None
        calls.clear()
        saved = []  # bytes the forward pass keeps for the backward pass (activations)

        def pack(tensor):
            saved.append(tensor.numel() * tensor.element_size())
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            vectors, backprop = model.begin_update(docs)
        forwards = len(calls)
        backprop(d_vectors)
        grads = {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}
        return vectors, grads, forwards, sum(saved)

    whole_vectors, whole, whole_calls, whole_saved = grads(0)
    micro_vectors, micro, micro_calls, micro_saved = grads(64)
    assert whole_calls == 1 and micro_calls >= 3  # several micro-batches
    assert micro_saved < 0.1 * whole_saved  # their activations are not kept: recomputed in the backward pass
    assert all(numpy.allclose(a, b, atol=1e-5) for a, b in zip(whole_vectors, micro_vectors))
    assert whole.keys() == micro.keys() and whole
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], atol=1e-5, rtol=1e-4)


def test_full_fine_tuning_on_v2_saves_and_reloads_without_the_base(tiny, train_file, tmp_path):
    backbone = shutil.copytree(tiny["llama"], tmp_path / "base")
    spacy.util.fix_random_seed(0)
    nlp = llm_nlp(backbone, "llama", train_file, **{"training.optimizer.learn_rate.initial_rate": 0.003,
                                                    "components.bioner_tagger.model.tok2vec.lora.r": 0})
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    losses = train(nlp, examples, 10)
    assert losses[-1] < losses[0]
    before = ents(nlp)
    nlp.to_disk(tmp_path / "model")
    shutil.rmtree(backbone)  # full fine-tuning: every weight is in the pipeline
    assert ents(spacy.load(tmp_path / "model")) == before


def test_unmasked_with_a_bfloat16_base(tiny, vocab):
    a = Doc(vocab, words=["BRCA1", "mutations", "cause", "cancer"])
    b = Doc(vocab, words=["BRCA1", "mutations", "cause", "tumours"])
    model = v2(tiny, "qwen2", [a, b], lora={"r": 4}, dtype="bfloat16", bidirectional="unmasked")
    first_a, first_b = (out[0] for out in model.predict([a, b]))
    assert numpy.isfinite(first_a).all() and not numpy.allclose(first_a, first_b)


def test_bfloat16_base_on_cpu(tiny, vocab):
    import torch

    doc = Doc(vocab, words=["BRCA1", "mutations", "cause", "cancer"])
    model = v2(tiny, "mistral", [doc], lora={"r": 4}, dtype="bfloat16")
    assert decoder_modules(model)[0].get_base_model().get_input_embeddings().weight.dtype == torch.bfloat16
    out = model.predict([doc])[0]
    assert out.dtype == numpy.float32 and numpy.isfinite(out).all()


def _cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="4-bit QLoRA needs a CUDA GPU")
def test_qlora_on_gpu(tiny, train_file):
    pytest.importorskip("bitsandbytes", reason="QLoRA needs bitsandbytes: pip install 'spacy-bioner[qlora]'")
    from spacy_bioner.gpu import require_gpu

    require_gpu(0)
    nlp = llm_nlp(tiny["llama"], "llama", train_file, **{"components.bioner_tagger.model.tok2vec.lora.r": 4,
                                                          "components.bioner_tagger.model.tok2vec.quantization": "4bit"})
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file)]
    losses = train(nlp, examples, 3)
    assert all(loss > 0 for loss in losses)
    assert all(d.has_annotation("ENT_IOB", require_complete=True) for d in nlp.pipe(TEXTS[:2]))


# ------------------------------------------------------------------ the train command
def test_train_cli_with_lora_records_parameters_and_embed_base(tiny, train_file, tmp_path):
    import json

    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    backbone = shutil.copytree(tiny["mistral"], tmp_path / "base")
    args = ["train", "transformer", "--backbone", "mistral-7b", "--head", "tagger", "-o", str(tmp_path / "run"),
            "--paths.backbone", str(backbone), "--paths.train", str(train_file), "--paths.dev", str(train_file),
            "--training.max_steps", "4", "--training.eval_frequency", "4",
            "--components.bioner_tagger.model.tok2vec.lora.r", "4", "--embed-base"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert 0 < record["parameters"]["trainable"] < record["parameters"]["total"] / 2  # the base is frozen
    assert record["config"]["components"]["bioner_tagger"]["model"]["tok2vec"]["embed_base"] is True
    shutil.rmtree(backbone)
    nlp = spacy.load(tmp_path / "run" / "model-last")  # the base is inside the pipeline
    assert all(d.has_annotation("ENT_IOB", require_complete=True) for d in nlp.pipe(TEXTS[:2]))


def test_embed_base_without_a_decoder_is_one_line(train_file, tmp_path):
    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    result = CliRunner().invoke(app, ["train", "transformer", "--backbone", "minilm", "-o", str(tmp_path / "run"),
                                      "--paths.train", str(train_file), "--paths.dev", str(train_file), "--embed-base"])
    assert result.exit_code == 1 and "--embed-base needs a LoRA decoder" in result.output
    assert "Traceback" not in result.output
