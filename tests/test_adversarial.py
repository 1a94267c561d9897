"""Adversarial training (``bioner_adversarial``, ``spacy_bioner.FGSM.v1`` / ``PGD.v1``): the perturbation
maths, the embedding hook, and the component inside spaCy's update / finish_update with both heads."""
import math

import numpy
import pytest
import spacy
import torch
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config

import spacy_bioner.pipeline.adversarial as adversarial_pipe  # registers the factory and strategies
import spacy_bioner.models.adversarial as adv
from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

NAME = "bioner_adversarial"


# ------------------------------------------------------------------------------------------- maths
def test_fgsm_linf_is_epsilon_times_sign():
    g = [torch.tensor([[[0.5, -2.0, 0.0], [1e-9, -1e-9, 3.0]]])]
    (delta,) = adv.fgsm_delta(g, epsilon=0.1, norm="linf", per="token")
    assert torch.equal(delta, torch.tensor([[[0.1, -0.1, 0.0], [0.1, -0.1, 0.1]]]))


def test_fgsm_l2_per_token_sequence_batch_by_hand():
    g = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]]])  # 2 rows, 2 positions, hidden 2
    (tok,) = adv.fgsm_delta([g], epsilon=2.0, norm="l2", per="token")
    assert torch.allclose(tok, torch.tensor([[[1.2, 1.6], [0.0, 0.0]], [[0.0, 2.0], [0.0, 0.0]]]))
    (seq,) = adv.fgsm_delta([g], epsilon=2.0, norm="l2", per="sequence")
    assert torch.allclose(seq, tok)  # one non-zero token per row: the same
    h = torch.tensor([[[1.0, 0.0]]])
    g1, g2 = adv.fgsm_delta([g, h], epsilon=1.0, norm="l2", per="batch")  # ‖(g, h)‖ = √(9+16+4+1) = √30
    assert torch.allclose(g1, g / math.sqrt(30)) and torch.allclose(g2, h / math.sqrt(30))
    assert math.isclose(float(torch.sqrt((g1 ** 2).sum() + (g2 ** 2).sum())), 1.0, rel_tol=1e-6)


def test_zero_gradient_gives_no_perturbation():
    zero = [torch.zeros(2, 3, 4)]
    for norm in adv.NORMS:
        for per in adv.SCOPES:
            (d,) = adv.fgsm_delta(zero, epsilon=1.0, norm=norm, per=per)
            assert torch.equal(d, torch.zeros(2, 3, 4)) and torch.isfinite(d).all()


@pytest.mark.parametrize("norm", adv.NORMS)
@pytest.mark.parametrize("per", adv.SCOPES)
def test_every_pgd_iterate_stays_in_the_ball(norm, per):
    gen = torch.Generator().manual_seed(0)
    eps, alpha = 0.3, 0.2
    shapes = [(3, 5, 8), (2, 4, 8)]
    delta = None
    for step in range(8):
        grads = [torch.randn(*s, generator=gen) * 10 ** (step % 3) for s in shapes]
        delta = adv.pgd_step(delta, grads, alpha=alpha, epsilon=eps, norm=norm, per=per)
        if norm == "linf":
            assert all(float(d.abs().max()) <= eps + 1e-6 for d in delta)
        else:
            assert all(float(n.max()) <= eps + 1e-5 for n in adv.l2_norms(delta, per=per))
    # the first step from 0 is α along the gradient's direction (inside the ball: no projection)
    grads = [torch.randn(*s, generator=gen) for s in shapes]
    first = adv.pgd_step(None, grads, alpha=0.1, epsilon=10.0, norm=norm, per=per)
    expected = adv.fgsm_delta(grads, epsilon=0.1, norm=norm, per=per)
    assert all(torch.allclose(a, b) for a, b in zip(first, expected))


def test_projection_leaves_points_inside_alone_and_rescales_outside():
    d = torch.tensor([[[0.3, 0.4], [3.0, 4.0]]])
    (p,) = adv.project([d], epsilon=1.0, norm="l2", per="token")
    assert torch.allclose(p, torch.tensor([[[0.3, 0.4], [0.6, 0.8]]]))
    (q,) = adv.project([d], epsilon=1.0, norm="linf", per="token")
    assert torch.equal(q, torch.tensor([[[0.3, 0.4], [1.0, 1.0]]]))


def test_unscale_divides_by_the_loss_scale_and_flags_overflow():
    g = [torch.tensor([[[2.0, -4.0]]])]
    (u,) = adv.unscale(g, torch.tensor([2.0]))
    assert torch.equal(u, torch.tensor([[[1.0, -2.0]]]))
    assert adv.unscale([torch.tensor([[[float("inf")]]])], 2.0) is None
    assert torch.equal(adv.unscale(g, None)[0], g[0])


@pytest.mark.parametrize("kwargs, match", [
    ({"epsilon": 0}, "epsilon"), ({"epsilon": 1, "alpha": -1}, "alpha"), ({"epsilon": 1, "steps": 0}, "steps"),
    ({"epsilon": 1, "norm": "l1"}, "norm"), ({"epsilon": 1, "per": "word"}, "per"),
    ({"epsilon": 1, "weight": -1}, "weight"), ({"epsilon": 1, "warmup_steps": -2}, "warmup"),
    ({"epsilon": 1, "target": "all"}, "target"), ({"epsilon": 1, "scale": "log"}, "scale"),
    ({"epsilon": 1, "max_ratio": 0}, "max_ratio")])
def test_bad_settings_fail_when_the_config_is_built(kwargs, match):
    kwargs = {"norm": "l2", "per": "sequence", **kwargs}
    with pytest.raises(ValueError, match=match):
        adv.check_settings(**kwargs)
    with pytest.raises(Exception, match=match):
        spacy.registry.resolve({"s": {"@misc": "spacy_bioner.PGD.v2", **kwargs}})


def test_strategies_resolve_from_the_registry():
    s = spacy.registry.resolve({"s": {"@misc": "spacy_bioner.PGD.v1", "epsilon": 1.0, "alpha": 0.3,
                                      "steps": 3}})["s"]
    assert (s.method, s.epsilon, s.alpha, s.steps, s.norm) == ("pgd", 1.0, 0.3, 3, "l2")
    f = spacy.registry.resolve({"s": {"@misc": "spacy_bioner.FGSM.v1"}})["s"]
    assert (f.method, f.steps, f.alpha, f.epsilon) == ("fgsm", 1, f.epsilon, 0.5)


# -------------------------------------------------------------------------------------- the hook
class Toy(torch.nn.Module):
    """Embedding → a fixed linear loss: ∂loss/∂e is the weight vector, by hand."""

    def __init__(self):
        super().__init__()
        self.embeddings = torch.nn.Embedding(10, 3)
        self.register_buffer("c", torch.tensor([0.5, -2.0, 0.0]))

    def get_input_embeddings(self):
        return self.embeddings

    def forward(self, input_ids):
        return (self.embeddings(input_ids) * self.c).sum()


def test_hook_reads_the_hand_computed_gradient_and_adds_the_perturbation():
    toy = Toy()
    hook = adv.EmbeddingHook(toy, target="word")
    ids = torch.tensor([[1, 2], [3, 4]])
    toy(ids).backward()
    (g,) = hook.grads()
    assert torch.equal(g, toy.c.expand(2, 2, 3))  # ∂(Σ e·c)/∂e = c at every position
    (delta,) = adv.fgsm_delta([g], epsilon=0.25, norm="linf", per="token")
    assert torch.equal(delta, 0.25 * torch.sign(toy.c).expand(2, 2, 3))
    (l2,) = adv.fgsm_delta([g], epsilon=0.25, norm="l2", per="token")
    assert torch.allclose(l2, 0.25 * toy.c / toy.c.norm())
    clean = float(toy(ids).detach())
    hook.deltas = [delta]
    perturbed = toy(ids)
    assert math.isclose(float(perturbed.detach()), clean + float((delta * toy.c).sum()), abs_tol=1e-5)
    assert float(perturbed) > clean  # an ascent step raises this (linear) loss
    hook.deltas = None
    toy.eval()
    with torch.no_grad():
        hook.deltas = [delta]
        assert float(toy(ids)) == clean  # inference: never perturbed, nothing recorded
    assert hook.outputs == [] or all(o.grad is None for o in hook.outputs)
    hook.remove()


# ------------------------------------------------------------------------------ the pipeline
HEADS = {"ner": "ner", "tagger": "bioner_tagger"}


def make(tiny, train_file, head="ner", adversarial="fgsm", **overrides):
    spacy.util.fix_random_seed(0)
    config, _ = fit_schedule(build_config(PROJECT / "configs" / "transformer.cfg", head=head,
                                          adversarial=adversarial, overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        "training.max_steps": 40, "training.optimizer.learn_rate.initial_rate": 0.003,
        "training.optimizer.learn_rate.warmup_fraction": 0.0, **overrides}))
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file, vocab=nlp.vocab)]
    return nlp, examples


def hf_model(nlp):
    return nlp.get_pipe("transformer").model.layers[0].shims[0]._model


def without_dropout(nlp):
    """Switch the backbone's own dropout off (spaCy's ``drop`` only reaches thinc layers), so that a pass
    with δ = 0 would repeat the clean pass exactly: what differs then is the perturbation's doing."""
    for module in hf_model(nlp).modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_prob"):  # scaled-dot-product attention's own dropout
            module.dropout_prob = 0.0


def relative_difference(a, b):
    """‖a − b‖ / ‖b‖ over dicts (or lists) of tensors."""
    a, b = (list(x.values()) if isinstance(x, dict) else list(x) for x in (a, b))
    diff = sum(float(((x - y) ** 2).sum()) for x, y in zip(a, b))
    return math.sqrt(diff / sum(float((y ** 2).sum()) for y in b))


def grads_of(nlp):
    return {k: p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
            for k, p in hf_model(nlp).named_parameters()}


def zero_grads(nlp, heads):
    adv.drop_grads([nlp.get_pipe(h).model for h in heads], list(hf_model(nlp).parameters()))


def step(nlp, examples, optimizer, **kwargs):
    """As spaCy's loop: update without a step, then finish_update on the trainable components."""
    losses = {}
    nlp.update(examples, sgd=False, losses=losses, drop=0.0, **kwargs)
    for _, proc in nlp.pipeline:
        if getattr(proc, "is_trainable", False):
            proc.finish_update(optimizer)
    return losses


@pytest.mark.parametrize("value", ["none", "None"])
def test_adversarial_none_trains_without_the_component(value):
    base = PROJECT / "configs" / "transformer.cfg"
    config = build_config(base, head="tagger", adversarial=value)
    assert NAME not in config["nlp"]["pipeline"] and NAME not in config["components"]
    assert config == build_config(base, head="tagger")
    assert NAME in build_config(base, head="tagger", adversarial="fgsm")["nlp"]["pipeline"]


@pytest.mark.parametrize("value,present", [("none", False), ("fgsm", True)])
def test_config_cli_takes_adversarial_none(tmp_path, value, present):
    from spacy.util import load_config
    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    out = tmp_path / "out.cfg"
    result = CliRunner().invoke(app, ["config", "transformer", str(out), "--head", "ner", "--adversarial", value])
    assert result.exit_code == 0, result.output
    assert (NAME in load_config(out, interpolate=False)["nlp"]["pipeline"]) is present


def test_config_puts_the_component_after_the_head(tiny, train_file):
    nlp, _ = make(tiny, train_file, head="tagger", adversarial="pgd")
    assert nlp.pipe_names == ["transformer", "bioner_tagger", NAME, "doc_cleaner"]
    s = nlp.get_pipe(NAME).strategy
    assert (s.method, s.steps) == ("pgd", 3)
    nlp, _ = make(tiny, train_file, adversarial="fgsm", **{f"components.{NAME}.strategy.epsilon": 0.1})
    assert nlp.pipe_names == ["transformer", "ner", NAME, "doc_cleaner"]
    assert nlp.get_pipe(NAME).strategy.epsilon == 0.1


@pytest.mark.parametrize("head", ["ner", "tagger"])
def test_adversarial_pass_adds_weighted_gradients(tiny, train_file, head):
    """Same clean pass: with the component the gradients differ by w × the adversarial ones, which are those of
    a higher loss on perturbed embeddings (not a second clean pass)."""
    nlp, examples = make(tiny, train_file, head=head, **{"training.dropout": 0.0})
    nlp.initialize(lambda: examples)
    without_dropout(nlp)
    heads = [HEADS[head]]
    torch.manual_seed(1)
    clean_losses = {}
    nlp.update(examples, sgd=False, losses=clean_losses, drop=0.0, exclude=[NAME])
    clean = grads_of(nlp)
    zero_grads(nlp, heads)
    torch.manual_seed(2)  # no dropout left: another seed repeats the clean pass exactly
    nlp.update(examples, sgd=False, drop=0.0, exclude=[NAME])
    assert relative_difference(grads_of(nlp), clean) < 1e-6
    zero_grads(nlp, heads)
    totals, adv_losses = {}, {}
    for weight in (0.0, 1.0, 2.0):
        nlp.get_pipe(NAME).strategy = adversarial_pipe.configure_fgsm(epsilon=0.5, weight=weight)
        torch.manual_seed(1)
        losses = {}
        nlp.update(examples, sgd=False, losses=losses, drop=0.0)
        assert losses[HEADS[head]] == pytest.approx(clean_losses[HEADS[head]])  # the clean pass is unchanged
        totals[weight] = grads_of(nlp)
        adv_losses[weight] = losses[NAME]
        zero_grads(nlp, heads)
        if weight:
            assert losses[NAME] > 0
    for k in clean:
        assert torch.allclose(totals[0.0][k], clean[k], atol=1e-6)  # weight 0: exactly the clean step
    adv1 = {k: totals[1.0][k] - clean[k] for k in clean}
    assert relative_difference(adv1, clean) > 1e-2  # the adversarial gradient is not the clean one (δ ≠ 0) ...
    assert adv_losses[1.0] > clean_losses[HEADS[head]]  # ... and δ raised the loss: an ascent step
    assert adv_losses[2.0] == pytest.approx(2 * adv_losses[1.0])
    for k in clean:  # linear in the weight: clean + 2·adv
        assert torch.allclose(totals[2.0][k], clean[k] + 2 * adv1[k], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("head", ["ner", "tagger"])
def test_an_adversarial_step_changes_the_weights_differently(tiny, train_file, head):
    after, grads, losses = {}, {}, {}
    for with_adv in (False, True):
        nlp, examples = make(tiny, train_file, head=head, adversarial="fgsm" if with_adv else None)
        optimizer = nlp.initialize(lambda: examples)
        without_dropout(nlp)
        before = {k: v.detach().clone() for k, v in hf_model(nlp).named_parameters()}
        torch.manual_seed(3)
        losses[with_adv] = {}
        nlp.update(examples, sgd=False, losses=losses[with_adv], drop=0.0)
        grads[with_adv] = grads_of(nlp)
        for _, proc in nlp.pipeline:
            if getattr(proc, "is_trainable", False):
                proc.finish_update(optimizer)
        after[with_adv] = {k: v.detach().clone() for k, v in hf_model(nlp).named_parameters()}
        assert any(not torch.equal(before[k], after[with_adv][k]) for k in before)
        assert (losses[with_adv].get(NAME, 0) > 0) == with_adv
    assert losses[True][HEADS[head]] == pytest.approx(losses[False][HEADS[head]])  # the same clean pass
    assert losses[True][NAME] > losses[True][HEADS[head]]  # the perturbed loss is higher than the clean one
    adversarial = {k: grads[True][k] - grads[False][k] for k in grads[False]}  # weight 1: clean + adversarial
    assert relative_difference(adversarial, grads[False]) > 1e-2  # (δ = 0 would give clean + clean)
    assert any(not torch.allclose(after[False][k], after[True][k]) for k in after[False])


def test_fgsm_in_the_pipeline_is_epsilon_times_the_normalised_gradient(tiny, train_file, monkeypatch):
    seen = []
    real = adv.fgsm_delta

    def spy(grads, **kwargs):
        out = real(grads, **kwargs)
        seen.append(([g.clone() for g in grads], [d.clone() for d in out], kwargs))
        return out

    monkeypatch.setattr(adv, "fgsm_delta", spy)
    nlp, examples = make(tiny, train_file, head="tagger")
    nlp.get_pipe(NAME).strategy = adversarial_pipe.configure_fgsm(epsilon=0.7)  # v1: ε a length, per sequence
    optimizer = nlp.initialize(lambda: examples)
    without_dropout(nlp)
    losses = step(nlp, examples, optimizer)
    assert losses[NAME] > losses["bioner_tagger"]  # the hook added δ: the perturbed loss is higher than the clean one
    (grads, deltas, kwargs), = seen
    assert kwargs == {"epsilon": 0.7, "norm": "l2", "per": "sequence"}
    for g, d in zip(grads, deltas):
        assert g.shape[-1] == 32 and g.abs().sum() > 0  # the embeddings' gradient [rows, positions, hidden]
        norms = g.flatten(1).norm(dim=1)
        assert torch.allclose(d, 0.7 * g / norms.view(-1, 1, 1), atol=1e-6)


@pytest.mark.parametrize("head", ["ner", "tagger"])
def test_pgd_iterates_stay_in_the_ball_in_the_pipeline(tiny, train_file, monkeypatch, head):
    seen, seen_grads = [], []
    real = adv.pgd_step

    def spy(deltas, grads, **kwargs):
        out = real(deltas, grads, **kwargs)
        seen.append([d.clone() for d in out])
        seen_grads.append([g.clone() for g in grads])
        return out

    monkeypatch.setattr(adv, "pgd_step", spy)
    nlp, examples = make(tiny, train_file, head=head, adversarial="pgd")
    nlp.get_pipe(NAME).strategy = adversarial_pipe.configure_pgd(epsilon=0.3, alpha=0.2, steps=4)  # v1: from δ = 0
    optimizer = nlp.initialize(lambda: examples)
    without_dropout(nlp)
    losses = step(nlp, examples, optimizer)
    assert len(seen) == 4 and losses[NAME] > 0
    assert losses[NAME] > losses[HEADS[head]]  # the last iterate's loss is higher than the clean one
    for later in seen_grads[1:]:  # each ascent pass saw perturbed embeddings: its gradient is not the clean one
        assert relative_difference(later, seen_grads[0]) > 1e-2
    for deltas in seen:
        assert all(float(n.max()) <= 0.3 + 1e-5 for n in adv.l2_norms(deltas, per="sequence"))
    assert max(float(n.max()) for n in adv.l2_norms(seen[-1], per="sequence")) == pytest.approx(0.3, rel=1e-4)


def test_warmup_steps_are_clean(tiny, train_file):
    nlp, examples = make(tiny, train_file, head="tagger", **{f"components.{NAME}.strategy.warmup_steps": 2})
    optimizer = nlp.initialize(lambda: examples)
    component = nlp.get_pipe(NAME)
    for i in range(3):
        losses = step(nlp, examples, optimizer)
        assert component.n_updates == i + 1
        assert component.n_perturbed == max(0, i - 1)
        assert (losses[NAME] > 0) == (i == 2)


def test_a_loop_that_steps_in_nlp_update_is_warned(tiny, train_file):
    """nlp.update(sgd=optimizer) steps the transformer before the component adds its gradients: say so once."""
    import warnings

    nlp, examples = make(tiny, train_file, head="tagger")
    optimizer = nlp.initialize(lambda: examples)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        step(nlp, examples, optimizer)  # as spaCy's loop: no warning
        assert not [w for w in caught if "stepped them already" in str(w.message)]
        for _ in range(2):
            nlp.update(examples, sgd=optimizer, drop=0.0, losses={})
    assert len([w for w in caught if "stepped them already" in str(w.message)]) == 1
    # a batch without gold tags has zero gradients everywhere: not a stepped loop
    from spacy_bioner.pipeline.adversarial import heads_were_stepped

    zeros = {("thinc", 1, "W"): numpy.zeros((2, 2))}
    assert not heads_were_stepped(zeros, [torch.zeros(3, 4)])
    assert heads_were_stepped(zeros, [torch.ones(3, 4)])
    assert not heads_were_stepped({("thinc", 1, "W"): numpy.ones((2, 2))}, [torch.ones(3, 4)])


def predictions(nlp, texts):
    docs = list(nlp.pipe(texts))
    return [[(e.start, e.end, e.label_) for e in d.ents] for d in docs]


def hidden(nlp, texts):
    trf = nlp.get_pipe("transformer")
    return [d._.trf_data.tensors[0].copy() for d in trf.pipe(nlp.make_doc(t) for t in texts)]


@pytest.mark.parametrize("head", ["ner", "tagger"])
def test_inference_is_identical_with_the_component_on_and_off(tiny, train_file, tmp_path, head):
    nlp, examples = make(tiny, train_file, head=head, adversarial="pgd")
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(6):
        step(nlp, examples, optimizer)
    texts = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma ."]
    with_it = predictions(nlp, texts)
    states = hidden(nlp, texts)
    nlp.to_disk(tmp_path / "model")
    with nlp.select_pipes(disable=[NAME]):
        assert predictions(nlp, texts) == with_it
    loaded = spacy.load(tmp_path / "model")
    assert NAME in loaded.pipe_names
    assert predictions(loaded, texts) == with_it
    assert all((a == b).all() for a, b in zip(hidden(loaded, texts), states))
    loaded.remove_pipe(NAME)  # dropped when packaging
    assert predictions(loaded, texts) == with_it
    assert all((a == b).all() for a, b in zip(hidden(loaded, texts), states))
    assert all((a == b).all() for a, b in zip(hidden(nlp, texts), states))


def test_composes_with_gradient_checkpointing(tiny, train_file):
    nlp, examples = make(tiny, train_file, head="tagger", adversarial="pgd",
                         **{"components.transformer.model.gradient_checkpointing": True})
    optimizer = nlp.initialize(lambda: examples)
    assert hf_model(nlp).is_gradient_checkpointing
    losses = step(nlp, examples, optimizer)
    assert losses[NAME] > 0 and nlp.get_pipe(NAME).n_perturbed == 1


def test_whole_embedding_output_target(tiny, train_file):
    nlp, examples = make(tiny, train_file, head="ner", **{f"components.{NAME}.strategy.target": "embeddings"})
    optimizer = nlp.initialize(lambda: examples)
    assert nlp.get_pipe(NAME).hook().layer is hf_model(nlp).embeddings
    assert step(nlp, examples, optimizer)[NAME] > 0


def test_spacy_training_loop_runs_it(tiny, train_file, tmp_path):
    from spacy_bioner.training.run import run_training

    config = build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", adversarial="fgsm", overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        "training.max_steps": 4, "training.eval_frequency": 2, "training.logger.progress_bar": False})
    record = run_training(config, tmp_path / "out")
    assert record.steps >= 4 and "ents_f" in record.dev_scores
    assert NAME not in spacy.load(record.model_best).pipe_names  # training only: never saved


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (mixed precision)")
def test_mixed_precision_on_gpu(tiny, train_file):
    from thinc.api import require_gpu

    require_gpu(0)
    nlp, examples = make(tiny, train_file, head="tagger", adversarial="pgd",
                         **{"components.transformer.model.mixed_precision": True})
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        losses = step(nlp, examples, optimizer)
    assert math.isfinite(losses[NAME]) and nlp.get_pipe(NAME).n_perturbed >= 1
