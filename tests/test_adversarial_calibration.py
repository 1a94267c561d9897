"""Calibrated adversarial training (``spacy_bioner.FGSM.v2`` / ``PGD.v2``): the relative scale, the per-token
ratio the component logs, the warnings, warm-up in optimizer steps, the order check, PGD's random start,
and the test-time attack of ``evaluate --attack``."""
import json
import math
import warnings

import numpy
import pytest
import spacy
import torch
from spacy.training import Example
from typer.testing import CliRunner

import spacy_bioner.models.adversarial as adv
import spacy_bioner.pipeline.adversarial as adversarial_pipe
from spacy_bioner.errors import ConfigValueError

from .test_adversarial import NAME, hf_model, make, step, without_dropout

RELATIVE = {"norm": "l2", "scale": "relative"}


# ------------------------------------------------------------------------------------------- maths
def test_relative_radii_by_hand():
    # row 0: tokens of norm 5 and 3 (gradient ≠ 0) and a padding position; row 1: one token of norm 1
    e = torch.tensor([[[3.0, 4.0], [0.0, 3.0], [9.0, 9.0]], [[1.0, 0.0], [7.0, 7.0], [7.0, 7.0]]])
    g = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    mask = adv.token_mask([g])[0].squeeze(-1)
    assert mask.tolist() == [[True, True, False], [True, False, False]]
    assert adv.mean_token_norm([e], [mask.unsqueeze(-1)]) == pytest.approx(3.0)  # (5 + 3 + 1) / 3
    (tok,) = adv.radii([e], [g], epsilon=0.1, norm="l2", per="token", scale="relative")
    assert torch.allclose(tok.squeeze(-1), torch.tensor([[0.3, 0.3, 0.0], [0.3, 0.0, 0.0]]))
    (seq,) = adv.radii([e], [g], epsilon=0.1, norm="l2", per="sequence", scale="relative")
    assert torch.allclose(seq.flatten(), torch.tensor([0.3 * math.sqrt(2), 0.3]))
    (batch,) = adv.radii([e], [g], epsilon=0.1, norm="l2", per="batch", scale="relative")
    assert float(batch) == pytest.approx(0.3 * math.sqrt(3))
    (linf,) = adv.radii([e], [g], epsilon=0.1, norm="linf", per="sequence", scale="relative")
    assert float(linf[0, 0, 0]) == pytest.approx(0.3 / math.sqrt(2)) and float(linf[0, 2, 0]) == 0.0
    assert adv.radii([e], [g], epsilon=0.1, norm="l2", per="token", scale="absolute") == 0.1


def test_ratios_by_hand():
    e = [torch.tensor([[[6.0, 8.0], [0.0, 2.0], [5.0, 5.0]]])]  # norms 10, 2, (padding)
    d = [torch.tensor([[[3.0, 4.0], [0.0, 1.0], [100.0, 0.0]]])]  # norms 5, 1, (ignored)
    g = [torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 0.0]]])]
    mean, top = adv.ratios(d, e, adv.token_mask(g))
    assert (mean, top) == (pytest.approx(0.5), pytest.approx(0.5))
    d[0][0, 1] = torch.tensor([0.0, 2.0])  # the second token now moves by its whole length
    mean, top = adv.ratios(d, e, adv.token_mask(g))
    assert (mean, top) == (pytest.approx(0.75), pytest.approx(1.0))
    assert adv.ratios([torch.zeros(1, 2, 2)], [torch.ones(1, 2, 2)], [torch.zeros(1, 2, 1, dtype=torch.bool)]) == (0.0, 0.0)


def scope_norms(delta, per):
    return adv.l2_norms(delta, per=per)


@pytest.mark.parametrize("norm", adv.NORMS)
@pytest.mark.parametrize("per", adv.SCOPES)
@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_relative_perturbation_stays_within_its_bound(norm, per, method):
    """FGSM and every PGD iterate (random start included) stay within ε·n̄ per token (L2 per token),
    ε·n̄·√T per sequence / batch of T tokens, ε·n̄/√D per element (L∞); padding is never moved."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 6, 8), (2, 4, 8)]
    outputs = [torch.randn(*s, generator=gen) for s in shapes]
    grads = [torch.randn(*s, generator=gen) for s in shapes]
    for g in grads:
        g[:, -2:] = 0.0  # padding: no gradient
    masks = adv.token_mask(grads)
    nbar = adv.mean_token_norm(outputs, masks)
    eps = 0.1
    s = (adversarial_pipe.configure_fgsm_v2(epsilon=eps, norm=norm, per=per) if method == "fgsm" else
         adversarial_pipe.configure_pgd_v2(epsilon=eps, alpha=0.04, steps=4, norm=norm, per=per))
    iterates = []

    def ascend(delta):
        iterates.append(delta)
        return [torch.randn(*g.shape, generator=gen) * m for g, m in zip(grads, masks)]

    delta = adversarial_pipe.perturbation(s, grads, outputs, ascend=ascend)
    iterates.append(delta)
    if method == "pgd":
        assert len(iterates) == 5  # the random start and three further iterates were ascended from, plus the last
        assert all(float(d.abs().sum()) > 0 for d in iterates[0])  # the random start is not δ = 0
    for delta in iterates:
        for d, m in zip(delta, masks):
            assert float(d[~m.expand_as(d)].abs().max()) == 0.0  # padding untouched
        if norm == "linf":
            assert all(float(d.abs().max()) <= eps * nbar / math.sqrt(8) + 1e-6 for d in delta)
            continue
        for d, n, m in zip(delta, scope_norms(delta, per), masks):
            count = {"token": torch.ones_like(m, dtype=torch.float32), "sequence": m.float().sum(dim=(1, 2)),
                     "batch": torch.tensor(float(sum(int(x.sum()) for x in masks)))}[per]
            bound = eps * nbar * torch.sqrt(count).view(-1) + 1e-5
            assert bool((n.reshape(-1) <= bound.expand_as(n.reshape(-1)) if per != "token" else
                         n.reshape(-1) <= bound.reshape(-1)).all())
    if method == "fgsm" and norm == "l2" and per == "token":  # FGSM sits on the bound: every token moves ε·n̄
        n = adv.l2_norms(delta, per="token")
        assert all(torch.allclose(x[m], torch.full_like(x[m], eps * nbar), rtol=1e-5) for x, m in zip(n, masks))


def test_strategies_v2_resolve_with_calibrated_defaults():
    f = spacy.registry.resolve({"s": {"@misc": "spacy_bioner.FGSM.v2"}})["s"]
    assert (f.method, f.scale, f.per, f.norm, f.epsilon, f.max_ratio) == ("fgsm", "relative", "token", "l2",
                                                                          0.03, 0.25)
    p = spacy.registry.resolve({"s": {"@misc": "spacy_bioner.PGD.v2"}})["s"]
    assert (p.method, p.random_start, p.steps, p.scale, p.epsilon, p.alpha) == ("pgd", True, 3, "relative", 0.03, 0.01)
    assert adversarial_pipe.DEFAULT_STRATEGY["@misc"] == "spacy_bioner.FGSM.v2"
    assert adversarial_pipe.DEFAULT_STRATEGY["epsilon"] == f.epsilon  # the factory default is the v2 default


def test_an_over_large_setting_warns():
    with pytest.warns(UserWarning, match="above max_ratio"):
        adversarial_pipe.configure_fgsm_v2(epsilon=0.5)  # certain: every token moves by half the mean norm
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adversarial_pipe.configure_fgsm_v2()  # the default does not
        adversarial_pipe.configure_pgd_v2()


# ------------------------------------------------------------------------------ the pipeline
def test_logged_ratio_matches_a_hand_computation(tiny, train_file, monkeypatch):
    seen = []
    real = adversarial_pipe.perturbation

    def spy(s, grads, outputs, **kwargs):
        delta = real(s, grads, outputs, **kwargs)
        seen.append(([g.clone() for g in grads], [o.clone() for o in outputs], [d.clone() for d in delta]))
        return delta

    monkeypatch.setattr(adversarial_pipe, "perturbation", spy)
    nlp, examples = make(tiny, train_file, head="tagger", **{f"components.{NAME}.strategy.epsilon": 0.1})
    optimizer = nlp.initialize(lambda: examples)
    without_dropout(nlp)
    losses = step(nlp, examples, optimizer)
    (grads, outputs, deltas), = seen
    ratios = []  # token by token, by hand
    for g, o, d in zip(grads, outputs, deltas):
        for r in range(g.shape[0]):
            for t in range(g.shape[1]):
                if float(g[r, t].norm()) > 0:
                    ratios.append(float(d[r, t].norm()) / float(o[r, t].norm()))
    assert losses[f"{NAME}.ratio_mean"] == pytest.approx(sum(ratios) / len(ratios), rel=1e-5)
    assert losses[f"{NAME}.ratio_max"] == pytest.approx(max(ratios), rel=1e-5)
    # ε 0.1 relative per token: ‖δ_t‖ = 0.1 n̄ for every token, so the mean ratio is 0.1 × mean(n̄ / ‖e_t‖)
    norms = [float(o[r, t].norm()) for g, o in zip(grads, outputs) for r in range(g.shape[0])
             for t in range(g.shape[1]) if float(g[r, t].norm()) > 0]
    nbar = sum(norms) / len(norms)
    assert losses[f"{NAME}.ratio_mean"] == pytest.approx(sum(0.1 * nbar / n for n in norms) / len(norms), rel=1e-4)
    component = nlp.get_pipe(NAME)
    assert component.ratio_mean == pytest.approx(losses[f"{NAME}.ratio_mean"])


def test_v1_setting_that_moves_tokens_too_far_warns_once(tiny, train_file):
    nlp, examples = make(tiny, train_file, head="tagger")
    nlp.get_pipe(NAME).strategy = adversarial_pipe.configure_fgsm(epsilon=0.5)  # the old default
    optimizer = nlp.initialize(lambda: examples)
    with pytest.warns(UserWarning, match="moved a token's embedding by") as record:
        step(nlp, examples, optimizer)
        step(nlp, examples, optimizer)
    assert len([w for w in record if "moved a token" in str(w.message)]) == 1
    assert nlp.get_pipe(NAME).ratio_max > 0.25


def test_warmup_counts_optimizer_steps_not_update_calls(tiny, train_file):
    """With two sub-batches per step (accumulate_gradient = 2), warm-up 1 leaves both updates of step 1 clean."""
    nlp, examples = make(tiny, train_file, head="tagger", **{f"components.{NAME}.strategy.warmup_steps": 1})
    optimizer = nlp.initialize(lambda: examples)
    component = nlp.get_pipe(NAME)
    half = len(examples) // 2
    for i in range(2):
        losses = {}
        for sub in (examples[:half], examples[half:]):  # as spaCy's loop: nlp.update per sub-batch ...
            nlp.update(sub, sgd=False, losses=losses, drop=0.0)
        for _, proc in nlp.pipeline:  # ... then one finish_update per trainable component
            if getattr(proc, "is_trainable", False):
                proc.finish_update(optimizer)
        assert component.n_steps == i + 1 and component.n_updates == 2 * (i + 1)
        assert component.n_perturbed == (0 if i == 0 else 2)


def test_spacy_loop_counts_steps_with_accumulated_gradients(tiny, train_file, tmp_path):
    from spacy_bioner.training.config import build_config
    from spacy_bioner.training.run import run_training

    from .conftest import PROJECT

    def run(steps, warmup, out):
        config = build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", adversarial="fgsm", overrides={
            "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
            "training.max_steps": steps, "training.eval_frequency": steps, "training.accumulate_gradient": 2,
            "training.logger.progress_bar": False, f"components.{NAME}.strategy.warmup_steps": warmup})
        record = run_training(config, tmp_path / out)
        assert record.steps == steps + 1  # spaCy's loop stops after step max_steps, counting from 0
        return record.final_losses

    warm = run(1, 2, "warm")  # 2 steps = 4 update calls, all inside a 2-step warm-up: never perturbed
    assert warm[NAME] == 0 and f"{NAME}.ratio_mean" not in warm
    losses = run(2, 2, "after")  # the third step's two updates are perturbed, and the ratio is logged in run.json
    assert losses[NAME] > 0 and 0 < losses[f"{NAME}.ratio_mean"] <= losses[f"{NAME}.ratio_max"]


def test_placed_before_the_head_is_an_error_at_initialize(tiny, train_file):
    nlp, examples = make(tiny, train_file, head="ner", **{"nlp.pipeline": ["transformer", NAME, "ner",
                                                                          "doc_cleaner"]})
    with pytest.raises(ConfigValueError, match=r"must come after .*ner comes after it.*'ner', 'bioner_adversarial'"):
        nlp.initialize(lambda: examples)


def test_pgd_v2_random_start_trains(tiny, train_file, monkeypatch):
    starts = []
    real = adv.random_start

    def spy(grads, **kwargs):
        out = real(grads, **kwargs)
        starts.append(out)
        return out

    monkeypatch.setattr(adv, "random_start", spy)
    nlp, examples = make(tiny, train_file, head="tagger", adversarial="pgd")
    optimizer = nlp.initialize(lambda: examples)
    losses = step(nlp, examples, optimizer)
    assert len(starts) == 1 and losses[NAME] > 0
    assert all(float(d.abs().sum()) > 0 for d in starts[0])


# ------------------------------------------------------------------------------ test-time attack
@pytest.fixture(scope="module")
def trained(tiny, train_file, tmp_path_factory):
    nlp, examples = make(tiny, train_file, head="tagger", adversarial=None)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(15):
        step(nlp, examples, optimizer)
    path = tmp_path_factory.mktemp("attack") / "model"
    nlp.to_disk(path)
    return path, examples


def weights(nlp):
    state = {f"hf.{k}": v.detach().clone() for k, v in hf_model(nlp).state_dict().items()}
    for name in nlp.pipe_names:
        proc = nlp.get_pipe(name)
        for node in getattr(getattr(proc, "model", None), "walk", lambda: [])():
            for p in node.param_names:
                if node.has_param(p):
                    state[f"{name}.{node.id}.{p}"] = node.get_param(p).copy()
    return state


def test_attack_leaves_the_weights_and_predictions_unchanged(trained):
    path, examples = trained
    nlp = spacy.load(path)
    texts = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma ."]
    before, clean = weights(nlp), [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)]
    gold = [Example(eg.predicted.copy(), eg.reference) for eg in examples]
    strategy = adversarial_pipe.configure_fgsm_v2(epsilon=3.0, max_ratio=100.0)
    result = adversarial_pipe.attack(nlp, gold, strategy=strategy, batch_size=2)
    assert [[t.text for t in d] for d in result["docs"]] == [[t.text for t in eg.reference] for eg in gold]
    assert result["ratio_mean"] > 1.0  # ε 3 relative: tokens moved by about three mean norms
    after = weights(nlp)
    assert after.keys() == before.keys()
    assert all((before[k] == after[k]).all() for k in before)
    assert all(p.grad is None for p in hf_model(nlp).parameters())
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(texts)] == clean


def test_attack_is_applied_when_predicting(trained, monkeypatch):
    """The perturbation reaches the predicting pass: the tagger's scores stay put for a vanishing ε and move
    for a large one."""
    path, examples = trained
    nlp = spacy.load(path)
    gold = [Example(eg.predicted.copy(), eg.reference) for eg in examples]
    tagger = nlp.get_pipe("bioner_tagger")
    scores = []
    real = tagger.decode

    def spy(batch_scores, **kwargs):
        scores.append([numpy.asarray(x).copy() for x in batch_scores])
        return real(batch_scores, **kwargs)

    monkeypatch.setattr(tagger, "decode", spy)
    for eps in (1e-7, 1.0):
        adversarial_pipe.attack(nlp, gold, strategy=adversarial_pipe.configure_fgsm_v2(epsilon=eps, max_ratio=100.0),
                                batch_size=len(gold))
    ordered = sorted(gold, key=lambda eg: len(eg.reference))  # the attack's batch order
    list(nlp.pipe([eg.predicted.copy() for eg in ordered], batch_size=len(gold)))
    vanishing, large, clean = scores
    assert all(numpy.allclose(a, b, atol=1e-4) for a, b in zip(vanishing, clean))
    assert max(float(numpy.abs(a - b).max()) for a, b in zip(large, clean)) > 1e-2


def test_evaluate_attack_cli_writes_the_attack_row(trained, tmp_path):
    from spacy_bioner.cli import app

    path, _ = trained
    gold = tmp_path / "gold.tsv"
    gold.write_text("BRCA1\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n\n")
    result = CliRunner().invoke(app, ["evaluate", str(path), str(gold), "-o", str(tmp_path / "m.json"),
                                      "-r", str(tmp_path / "r.md"), "--bootstrap", "20", "--attack", "0.05"])
    assert result.exit_code == 0, result.output
    attack = json.loads((tmp_path / "m.json").read_text())["robustness"]["attack"]
    assert attack["strategy"]["epsilon"] == 0.05 and 0 < attack["ratio_mean"] <= attack["ratio_max"]
    assert "FGSM attack, ε 0.05" in (tmp_path / "r.md").read_text()
    bad = CliRunner().invoke(app, ["evaluate", str(path), str(gold), "--attack", "0.05", "--int8"])
    assert bad.exit_code != 0 and "--attack needs gradients" in bad.output and "Traceback" not in bad.output


def test_attack_survives_the_transformers_own_regrouping(trained):
    """``Transformer.pipe`` regroups Docs by padded size (``max_batch_items``); the attack lays δ out by the
    batch it was computed on, so it must predict that same batch (a regrouped one fails the shape check)."""
    path, examples = trained
    nlp = spacy.load(path)
    nlp.get_pipe("transformer").cfg["max_batch_items"] = 1  # pipe() would predict each Doc on its own
    gold = [Example(eg.predicted.copy(), eg.reference) for eg in examples]
    result = adversarial_pipe.attack(nlp, gold, strategy=adversarial_pipe.configure_fgsm_v2(), batch_size=len(gold))
    assert len(result["docs"]) == len(gold) and result["ratio_mean"] > 0


def test_continues_from_a_pipeline_with_adversarial_training(trained, tiny, train_file, tmp_path):
    """``train --init-from PIPELINE --adversarial fgsm``: spaCy disables the sourced heads while initialising, and
    the order check must still see them."""
    from spacy_bioner.training.config import build_config
    from spacy_bioner.training.run import run_training

    from .conftest import PROJECT

    path, _ = trained
    config = build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", adversarial="fgsm", overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        "training.max_steps": 2, "training.eval_frequency": 2, "training.logger.progress_bar": False})
    record = run_training(config, tmp_path / "out", init_from=path)
    assert record.steps == 3 and record.final_losses[NAME] > 0


def test_gold_labels_the_pipeline_does_not_know_are_missing_for_the_attack():
    from spacy_bioner.evaluation.predict import known_entities

    nlp = spacy.blank("en")
    doc = spacy.tokens.Doc(nlp.vocab, words=["BRCA1", "binds", "aspirin", "."], ents=["B-Gene", "O", "B-Chemical", "O"])
    out = known_entities(doc, {"Gene"})
    assert [(e.text, e.label_) for e in out.ents] == [("BRCA1", "Gene")]
    assert [t.ent_iob_ for t in out] == ["B", "O", "", "O"]  # aspirin: missing (no loss), not O
    assert known_entities(doc, {"Gene", "Chemical"}) is doc and len(doc.ents) == 2


def test_attack_on_ner_with_gold_labels_it_does_not_know(tiny, train_file, tmp_path):
    """Plain ``evaluate`` warns about unknown gold labels; the attack runs the ner head's update on that gold."""
    from spacy_bioner.evaluation.predict import evaluate_model

    nlp, examples = make(tiny, train_file, head="ner", adversarial=None)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(3):
        step(nlp, examples, optimizer)
    nlp.to_disk(tmp_path / "model")
    gold = tmp_path / "gold.tsv"
    gold.write_text("BRCA1\tB-Gene\nbinds\tO\naspirin\tB-Chemical\nin\tO\ncancer\tB-Disease\n.\tO\n\n")
    _, metrics = evaluate_model(tmp_path / "model", gold, n_bootstrap=10, attack=0.05)
    assert "attack" in metrics["robustness"] and metrics["unknown_gold_labels"] == {"Chemical": 1}
