import json

import pytest
import spacy
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.evaluation.crossval import make_folds, summarise_folds

from .conftest import PROJECT

runner = CliRunner()
GOLD = "BRCA1\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n\nTP53\tB-Gene\nis\tO\nmutated\tO\n.\tO\n\n"
PRED = "BRCA1\tB-Gene\nmutations\tO\ncause\tO\nbreast\tO\ncancer\tB-Disease\n.\tO\n\nTP53\tB-Gene\nis\tO\nmutated\tO\n.\tO\n\n"


def test_score_writes_json_report_and_plots(write, tmp_path):
    gold, pred = write(GOLD, "gold.tsv"), write(PRED, "pred.tsv")
    out = tmp_path / "out"
    result = runner.invoke(app, ["score", str(gold), str(pred), "-o", str(out / "m.json"),
                                 "-r", str(out / "report.md"), "-p", str(out / "plots"), "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    m = json.loads((out / "m.json").read_text())
    assert m["spacy"]["ents_p"] == pytest.approx(2 / 3) and m["seqeval"]["recall"] == pytest.approx(2 / 3)
    assert m["relaxed"]["partial"]["f"] == pytest.approx(2.5 / 3)
    for key in ("by_length", "untyped", "token_accuracy", "confusion", "n_gold", "n_pred", "bootstrap"):
        assert key in m
    report = (out / "report.md").read_text()
    assert "| seqeval (strict, IOB2) | 66.67 | 66.67 | 66.67 |" in report
    assert "| 1 | cancer | Disease | BRCA1 mutations cause breast [cancer] . |" in report  # a false positive with context
    assert "![confusion](plots/confusion.png)" in report
    assert sorted(p.name for p in (out / "plots").iterdir()) == ["confusion.png", "f1_by_length.png", "per_type.png"]
    # written once, not appended: a second run leaves valid JSON
    runner.invoke(app, ["score", str(gold), str(pred), "-o", str(out / "m.json"), "--bootstrap", "50"])
    assert json.loads((out / "m.json").read_text()) == m


def test_score_docbin_against_iob(write, tmp_path):
    gold = write(GOLD, "gold.tsv")
    runner.invoke(app, ["convert", str(write(PRED, "pred.tsv")), str(tmp_path / "pred.spacy")])
    result = runner.invoke(app, ["score", str(gold), str(tmp_path / "pred.spacy"), "-o", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["n_pred"] == 3


def test_score_token_mismatch_is_clear(write):
    pred = write(PRED.replace("TP53", "TP63"), "pred.tsv")
    result = runner.invoke(app, ["score", str(write(GOLD, "gold.tsv")), str(pred)])
    assert result.exit_code == 1
    assert "tokens differ in sentence 2 (document 2), token 1: gold 'TP53 is mutated .'" in result.output


def test_score_empty_gold_is_an_error(write):
    result = runner.invoke(app, ["score", str(write("", "gold.tsv")), str(write(PRED, "pred.tsv"))])
    assert result.exit_code == 1
    assert "gold.tsv: no tokens to score" in result.output


def test_score_truncated_predictions_say_where_they_end(write):
    pred = write(PRED.split("\n\n")[0] + "\n\n", "pred.tsv")
    result = runner.invoke(app, ["score", str(write(GOLD, "gold.tsv")), str(pred)])
    assert result.exit_code == 1
    assert "the predicted side ends after 6 tokens; gold goes on with sentence 2 (document 2): 'TP53 is mutated .'" \
        in result.output


@pytest.fixture
def ruler_model(tmp_path):
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "Gene", "pattern": "BRCA1"}, {"label": "Gene", "pattern": "TP53"},
                        {"label": "Disease", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}]}])
    nlp.to_disk(tmp_path / "model")
    return tmp_path / "model"


def test_evaluate_runs_pipeline_on_gold_tokens(ruler_model, write, tmp_path):
    result = runner.invoke(app, ["evaluate", str(ruler_model), str(write(GOLD, "gold.tsv")),
                                 "-o", str(tmp_path / "m.json"), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["ents_f"] == 1.0 and m["seqeval"]["f1"] == 1.0
    assert m["words_per_second"] > 0 and "words/s" in result.output


def test_evaluate_warns_about_gold_labels_the_model_cannot_predict(ruler_model, write, tmp_path):
    gold = write(GOLD.replace("B-Gene", "B-Chemical", 1), "gold.tsv")
    result = runner.invoke(app, ["evaluate", str(ruler_model), str(gold), "-o", str(tmp_path / "m.json"),
                                 "-r", str(tmp_path / "r.md"), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "labels the pipeline never predicts: Chemical (1 in gold)" in out
    assert "predicts Disease, Gene" in out
    assert "CI:" not in out  # --bootstrap 0: no interval to show
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["unknown_gold_labels"] == {"Chemical": 1}
    assert m["seqeval"]["per_type"]["Chemical"]["recall"] == 0.0
    report = (tmp_path / "r.md").read_text()
    assert "never predicts** (counted as misses): Chemical (1)." in report and "bootstrap" not in report


def test_evaluate_missing_model_is_clear(tmp_path, write):
    result = runner.invoke(app, ["evaluate", str(tmp_path / "nope"), str(write(GOLD, "gold.tsv"))])
    assert result.exit_code != 0
    assert "Traceback" not in result.output


def test_make_folds_partition_and_seed():
    folds = make_folds(23, 5, seed=3)
    assert sorted(i for f in folds for i in f) == list(range(23))
    assert {len(f) for f in folds} <= {4, 5}
    assert make_folds(23, 5, seed=3) == folds and make_folds(23, 5, seed=4) != folds
    with pytest.raises(ValueError):
        make_folds(3, 5, seed=0)


def test_summarise_folds_mean_std():
    base = {"spacy": {"ents_p": 0, "ents_r": 0, "ents_f": 0}, "seqeval": {"precision": 0, "recall": 0, "f1": 0},
            "untyped": {"f": 0}, "relaxed": {"partial": {"f": 0}, "type": {"f": 0}}, "token_accuracy": 0}
    a = json.loads(json.dumps(base)); a["seqeval"]["f1"] = 0.5
    b = json.loads(json.dumps(base)); b["seqeval"]["f1"] = 0.7
    s = summarise_folds([a, b])
    assert s["seqeval.f1"]["mean"] == pytest.approx(0.6)
    assert s["seqeval.f1"]["std"] == pytest.approx(0.1414213562)


@pytest.mark.slow
def test_cross_validate_tiny_tok2vec(write, tmp_path):
    data = write(GOLD * 6, "data.tsv")
    result = runner.invoke(app, [
        "cross-validate", str(PROJECT / "configs" / "tok2vec.cfg"), str(data), "--folds", "3",
        "--output-dir", str(tmp_path / "cv"), "--bootstrap", "10",
        "--training.max_steps", "6", "--training.eval_frequency", "3",
    ])
    assert result.exit_code == 0, result.output
    cv = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert cv["folds"] == 3 and cv["n_documents"] == 12 and len(cv["per_fold"]) == 3
    assert set(cv["summary"]["seqeval.f1"]) == {"mean", "std"}
    for k in range(3):
        assert (tmp_path / "cv" / f"fold_{k}" / "metrics.json").exists()
