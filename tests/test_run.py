"""The run builder: schedules fitted to the run's length, the run record, one path for
train / cross-validate, and predicted Docs that keep no transformer data."""
import json
import math

import pytest
import spacy
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.evaluation.predict import predict
from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.training.config import build_config, fit_schedule
from spacy_bioner.training.run import run_training

from .conftest import PROJECT

BASE = PROJECT / "configs" / "transformer.cfg"


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory):
    """22 one-sentence documents."""
    rows = []
    for i in range(22):
        rows.append(f"BRCA{i}\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n")
    path = tmp_path_factory.mktemp("corpus") / "train.tsv"
    path.write_text("\n".join(rows) + "\n", encoding="utf8")
    return path


def tiny_overrides(tiny, corpus_file, **extra):
    return {"paths.backbone": str(tiny["bert"]), "paths.train": str(corpus_file), "paths.dev": str(corpus_file),
            "training.logger.progress_bar": False, **extra}


def test_epoch_run_schedule_spans_the_real_number_of_steps(tiny, corpus_file):
    config = build_config(BASE, overrides=tiny_overrides(tiny, corpus_file, **{
        "training.max_steps": 0, "training.max_epochs": 3, "training.batcher.size": 4,
        "training.batcher.buffer": 0}))
    config, plan = fit_schedule(config)
    per_epoch = math.ceil(22 / 4)
    assert plan.steps_per_epoch == per_epoch and plan.epochs == 3
    assert config["training"]["optimizer"]["learn_rate"]["total_steps"] == 3 * per_epoch  # not the base's 20000
    assert plan.train_examples == 22 and plan.train_words == 22 * 6


def test_epochs_capped_by_max_steps_and_explicit_total_kept(tiny, corpus_file):
    overrides = tiny_overrides(tiny, corpus_file, **{"training.max_steps": 5, "training.max_epochs": 3,
                                                     "training.batcher.size": 4, "training.batcher.buffer": 0})
    config, plan = fit_schedule(build_config(BASE, overrides=overrides))
    assert config["training"]["optimizer"]["learn_rate"]["total_steps"] == 5
    config, plan = fit_schedule(build_config(BASE, overrides={
        **overrides, "training.optimizer.learn_rate.total_steps": 77}), explicit=True)
    assert config["training"]["optimizer"]["learn_rate"]["total_steps"] == 77 and plan.source == "explicit"


def test_run_builder_trains_records_and_decays_to_zero(tiny, corpus_file, tmp_path):
    config = build_config(BASE, overrides=tiny_overrides(tiny, corpus_file, **{
        "training.max_steps": 0, "training.max_epochs": 3, "training.batcher.size": 4,
        "training.batcher.buffer": 0, "training.eval_frequency": 4,
        "training.optimizer.learn_rate.initial_rate": 0.001}))
    record = run_training(config, tmp_path / "out")
    per_epoch = math.ceil(22 / 4)
    assert record.steps == 3 * per_epoch and record.epochs == pytest.approx(3.0)
    assert record.train_words == 3 * 22 * 6 and record.train_words_per_second > 0
    assert record.peak_rss_mib > 100 and record.peak_gpu_mib is None
    assert record.schedule["total_steps"] == 3 * per_epoch
    assert "ents_f" in record.dev_scores and record.best_step is not None
    rates = dict(record.learn_rates)
    assert rates[0] == 0.0  # warm-up starts at 0
    assert max(rates.values()) == pytest.approx(0.001, rel=0.2)  # reaches the peak, not stuck in warm-up
    assert rates[record.steps - 1] < 0.001 * 0.2  # and decays towards 0 by the last step
    saved = json.loads((tmp_path / "out" / "run.json").read_text())
    assert saved["steps"] == record.steps and saved["config"]["paths"]["train"] == str(corpus_file)
    assert (tmp_path / "out" / "model-best" / "config.cfg").exists()
    # the saved pipeline config has the fitted schedule, and no training-only wrapper
    saved_cfg = (tmp_path / "out" / "model-best" / "config.cfg").read_text()
    assert f"total_steps = {3 * per_epoch}" in saved_cfg


def test_train_cli_uses_the_run_builder(tiny, corpus_file, tmp_path):
    result = CliRunner().invoke(app, ["train", "transformer", "--backbone", "minilm", "-o", str(tmp_path / "o"),
                                      *sum(([f"--{k}", json.dumps(v) if isinstance(v, bool) else str(v)] for k, v in tiny_overrides(tiny, corpus_file, **{
                                          "training.max_steps": 0, "training.max_epochs": 1,
                                          "training.batcher.size": 8}).items()), [])])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "o" / "run.json").read_text())
    assert record["steps"] == record["schedule"]["steps_per_epoch"] == record["schedule"]["total_steps"]
    assert "train words/s" in " ".join(result.output.split())


def test_predicted_docs_carry_no_transformer_data(tiny, corpus_file, tmp_path):
    config, _ = fit_schedule(build_config(BASE, overrides=tiny_overrides(tiny, corpus_file, **{
        "training.max_steps": 2})))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    from spacy.training import Example
    from spacy.tokens import Doc

    gold = read_docs(corpus_file, vocab=nlp.vocab)
    nlp.initialize(lambda: [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in gold])
    # a pipeline saved before doc_cleaner was in the base config: predict() adds one
    nlp.remove_pipe("doc_cleaner")
    docs = predict(nlp, gold, batch_size=4)
    assert len(docs) == len(gold)
    assert all(doc._.trf_data is None for doc in docs)
    assert nlp.pipe_names == ["transformer", "ner"]  # the caller's pipeline is left as it was
    # and the base config's own cleaner does it during training-time dev scoring too
    nlp2 = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp2.initialize(lambda: [Example(Doc(nlp2.vocab, words=[t.text for t in d]), d) for d in gold])
    assert all(doc._.trf_data is None for doc in nlp2.pipe(["BRCA1 mutations cause breast cancer ."] * 3))
