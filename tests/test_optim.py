"""``spacy_bioner.TransformerModel.v2`` (and ``v3``/``v4``, which add length buckets and a tokenization cache; v4 is the shipped default): one torch AdamW step for the transformer's
weights (global-norm clipping), driven by the config's thinc optimizer; gradient checkpointing."""
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.models.optim import adamw_optimizer, has_fused_kernel
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

V2 = "spacy_bioner.TransformerModel.v2"
#: torch >= 2.4 has a fused AdamW kernel for CPU tensors.
CPU_FUSED = has_fused_kernel([torch.zeros(1)])
V3_ONLY = ("length_buckets", "length_buckets_on_gpu", "tokenization_cache")


def make(tiny, train_file, **overrides):
    spacy.util.fix_random_seed(0)
    config, _ = fit_schedule(build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        "training.max_steps": 40, "training.optimizer.learn_rate.initial_rate": 0.003,
        "components.transformer.model.@architectures": V2, **overrides}))
    for key in V3_ONLY:  # the shipped config is v4; v2 has no length buckets nor tokenization cache
        config["components"]["transformer"]["model"].pop(key, None)
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file, vocab=nlp.vocab)]
    return nlp, examples


def hf_model(nlp):
    return nlp.get_pipe("transformer").model.layers[0].shims[0]._model


def test_torch_optimizer_steps_all_weights_at_once_and_learns(tiny, train_file):
    nlp, examples = make(tiny, train_file)
    optimizer = nlp.initialize(lambda: examples)
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    before = {k: v.detach().clone() for k, v in hf_model(nlp).named_parameters()}
    losses = []
    for _ in range(25):  # as spaCy's loop: update without sgd, then finish_update, then the schedule
        step = {}
        nlp.update(examples, sgd=False, losses=step, drop=0.0)
        for _, proc in nlp.pipeline:
            if getattr(proc, "is_trainable", False):
                proc.finish_update(optimizer)
        optimizer.step_schedules()
        losses.append(step["bioner_tagger"])
    adamw, views = shim._spacy_bioner_adamw
    assert isinstance(adamw, torch.optim.AdamW) and len(views) == len(list(hf_model(nlp).parameters()))
    assert adamw.defaults.get("fused") is CPU_FUSED  # torch's fused kernel, on CPU too (torch >= 2.4)
    assert not any(isinstance(key, tuple) and key[0] == shim.id for key in optimizer.mom1)  # thinc's loop unused
    changed = sum(not torch.equal(before[k], v) for k, v in hf_model(nlp).named_parameters())
    assert changed > len(before) // 2
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3]), losses
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in hf_model(nlp).parameters())


def test_update_with_sgd_inside_nlp_update_still_works(tiny, train_file):
    """spaCy's `nlp.update(sgd=...)` steps the transformer before the listeners' backward pass (so each step
    applies the previous update's gradient): the backbone still takes the torch AdamW step with the head's
    gradient, the head steps too, and the loss falls."""
    import math

    import numpy

    nlp, examples = make(tiny, train_file)
    optimizer = nlp.initialize(lambda: examples)
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    output = nlp.get_pipe("bioner_tagger").model.get_ref("output")
    trf_before = {k: v.detach().clone() for k, v in hf_model(nlp).named_parameters()}
    head_before = {name: output.get_param(name).copy() for name in ("W", "b")}
    losses = []
    for _ in range(8):
        step = {}
        nlp.update(examples, sgd=optimizer, losses=step, drop=0.0)
        optimizer.step_schedules()
        losses.append(step["bioner_tagger"])
    assert all(math.isfinite(loss) and loss > 0 for loss in losses), losses
    changed = {k for k, v in hf_model(nlp).named_parameters() if not torch.equal(trf_before[k], v)}
    assert len(changed) > len(trf_before) // 2
    # biases take no weight decay: they move only if the listener's gradient reached the backbone and was stepped
    assert any(k.endswith(".bias") for k in changed), sorted(changed)
    assert all(torch.isfinite(v).all() for v in hf_model(nlp).parameters())
    assert isinstance(shim._spacy_bioner_adamw[0], torch.optim.AdamW)  # by the torch step, not thinc's loop
    assert not any(isinstance(key, tuple) and key[0] == shim.id for key in optimizer.mom1)
    for name, before in head_before.items():
        assert not numpy.array_equal(output.get_param(name), before), f"head {name} did not change"
    assert losses[-1] < losses[0], losses


def test_switch_off_keeps_thincs_per_parameter_optimizer(tiny, train_file):
    nlp, examples = make(tiny, train_file, **{"components.transformer.model.torch_optimizer": False})
    optimizer = nlp.initialize(lambda: examples)
    nlp.update(examples, sgd=False, drop=0.0)
    nlp.get_pipe("transformer").finish_update(optimizer)
    shim = nlp.get_pipe("transformer").model.layers[0].shims[0]
    assert not hasattr(shim, "_spacy_bioner_adamw") and any(key[0] == shim.id for key in optimizer.mom1)


def test_gradient_checkpointing_switch(tiny, train_file):
    nlp, examples = make(tiny, train_file, **{"components.transformer.model.gradient_checkpointing": True})
    nlp.initialize(lambda: examples)
    assert hf_model(nlp).is_gradient_checkpointing
    losses = {}
    nlp.update(examples, losses=losses, drop=0.0)
    assert losses["bioner_tagger"] > 0


@pytest.mark.skipif(not CPU_FUSED, reason="this torch has no fused AdamW kernel for CPU (torch < 2.4)")
def test_adamw_uses_the_fused_kernel_and_matches_foreach():
    """The fused step (CPU too) gives foreach's weights."""
    torch.manual_seed(0)
    start = [torch.randn(7, 5), torch.randn(5)]
    grads = [[torch.randn_like(p) for p in start] for _ in range(5)]
    settings = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    fused_params = [p.clone() for p in start]
    fused = adamw_optimizer(fused_params, **settings)
    reference_params = [p.clone() for p in start]
    reference = torch.optim.AdamW(reference_params, foreach=True, **settings)
    assert fused.defaults["fused"] is True
    for step in grads:
        for opt, params in ((fused, fused_params), (reference, reference_params)):
            for p, g in zip(params, step):
                p.grad = g.clone()
            opt.step()
    for a, b, s in zip(fused_params, reference_params, start):
        assert not torch.equal(a, s)
        assert torch.allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("tensor", [torch.zeros(3, dtype=torch.complex64), torch.zeros(3, device="meta")],
                         ids=["complex", "meta-device"])
def test_adamw_takes_foreach_where_no_fused_kernel_exists(tensor):
    """torch >= 2.4 builds a fused AdamW for any tensor and fails at the first step(): decide before."""
    param = tensor.clone().requires_grad_(False)
    adamw = adamw_optimizer([param], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    assert not adamw.defaults.get("fused") and adamw.defaults["foreach"] is True
    param.grad = torch.ones_like(param)
    adamw.step()  # no "fused=True requires ..." error


def _train_step(nlp, examples, optimizer):
    nlp.update(examples, sgd=False, drop=0.0)
    for _, proc in nlp.pipeline:
        if getattr(proc, "is_trainable", False):
            proc.finish_update(optimizer)


def test_a_loaded_pipeline_trains_as_its_config_says(tiny, train_file, tmp_path):
    """`spacy.load` never calls the model's init: the torch step and checkpointing must still be on."""
    nlp, examples = make(tiny, train_file, **{"components.transformer.model.gradient_checkpointing": True})
    nlp.initialize(lambda: examples)
    nlp.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert not hf_model(loaded).is_gradient_checkpointing  # nothing switched on before training starts
    optimizer = loaded.resume_training()
    examples = [Example(Doc(loaded.vocab, words=[t.text for t in eg.reference]), eg.reference) for eg in examples]
    _train_step(loaded, examples, optimizer)
    _train_step(loaded, examples, optimizer)  # the transformer steps on the previous batch's gradients
    shim = loaded.get_pipe("transformer").model.layers[0].shims[0]
    assert hf_model(loaded).is_gradient_checkpointing
    assert isinstance(getattr(shim, "_spacy_bioner_adamw", (None,))[0], torch.optim.AdamW)
    assert not any(isinstance(key, tuple) and key[0] == shim.id for key in optimizer.mom1)  # not thinc's loop
    # prediction alone switches nothing on
    fresh = spacy.load(tmp_path / "pipeline")
    fresh("BRCA1 mutations")
    assert not hf_model(fresh).is_gradient_checkpointing


def test_no_weight_decay_on_biases_and_layernorm_weights(tiny, train_file):
    """As HF's Trainer: weight decay on weight matrices and embeddings only."""
    from spacy_bioner.models.optim import decay_parameter_names

    from thinc.api import Adam

    nlp, examples = make(tiny, train_file)
    nlp.initialize(lambda: examples)
    optimizer = Adam(learn_rate=0.01, L2=0.5, L2_is_weight_decay=True, grad_clip=1.0, use_averages=False)
    module = hf_model(nlp)
    decay = set(decay_parameter_names(module))
    names = [name for name, _ in module.named_parameters()]
    assert decay and all(not name.endswith("bias") and "LayerNorm" not in name for name in decay)
    assert any(name.endswith("LayerNorm.weight") for name in names) and any(name.endswith("bias") for name in names)
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    for p in module.parameters():  # zero gradients: only weight decay moves a weight
        p.grad = torch.zeros_like(p)
    nlp.get_pipe("transformer").finish_update(optimizer)
    for name, p in module.named_parameters():
        moved = not torch.equal(before[name], p.detach())
        assert moved == (name in decay and bool(before[name].abs().sum() > 0)), name


def test_the_clip_is_one_global_norm_over_every_trainable_weight_of_the_transformer(tiny, train_file, monkeypatch):
    """One clip_grad_norm_ call with every trainable parameter (as one vector), not one per tensor."""
    nlp, examples = make(tiny, train_file)
    optimizer = nlp.initialize(lambda: examples)
    calls = []
    clip = torch.nn.utils.clip_grad_norm_

    def record(params, max_norm, *args, **kwargs):
        params = list(params)
        calls.append(([id(p) for p in params], max_norm))
        return clip(params, max_norm, *args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", record)
    module = hf_model(nlp)
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    nlp.get_pipe("transformer").finish_update(optimizer)
    assert len(calls) == 1
    ids, max_norm = calls[0]
    assert sorted(ids) == sorted(id(p) for p in module.parameters() if p.requires_grad)
    assert max_norm == optimizer.grad_clip


def test_decay_selection_is_hf_trainers():
    """The same weights as HF's Trainer decays (its helper takes name patterns only in recent transformers)."""
    from transformers import BertConfig, BertModel, GPT2Config, GPT2Model, LlamaConfig, LlamaModel
    from transformers.trainer_pt_utils import get_parameter_names

    from spacy_bioner.models.optim import NO_DECAY_PATTERNS, decay_parameter_names

    small = dict(num_hidden_layers=2, num_attention_heads=2)
    for module in (BertModel(BertConfig(hidden_size=32, intermediate_size=37, **small)),
                   GPT2Model(GPT2Config(n_embd=32, n_layer=2, n_head=2)),
                   LlamaModel(LlamaConfig(hidden_size=32, intermediate_size=37, vocab_size=100, **small))):
        ours = decay_parameter_names(module)
        assert sorted(ours) == sorted(get_parameter_names(module, [torch.nn.LayerNorm], NO_DECAY_PATTERNS))
        assert 0 < len(ours) < len(list(module.named_parameters()))
