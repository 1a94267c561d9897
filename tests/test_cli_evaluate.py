import json

import pytest
import spacy
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.experiments.crossval import make_folds, summarise_folds

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


# Thin data: no entity anywhere, a single type, entities on one side only.
NO_ENTS = "".join(f"{line.split(chr(9))[0]}\tO\n" if line else "\n" for line in GOLD.split("\n"))[:-1]
ONE_TYPE_GOLD = GOLD.replace("B-Disease", "O").replace("I-Disease", "O")
ONE_TYPE_PRED = PRED.replace("B-Disease", "O")
THIN = {
    "no-entities": (NO_ENTS, NO_ENTS),
    "one-type": (ONE_TYPE_GOLD, ONE_TYPE_PRED),
    "gold-only": (GOLD, NO_ENTS),
    "pred-only": (NO_ENTS, PRED),
}
PLOT_FILES = ["confusion.png", "f1_by_length.png", "per_type.png"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def assert_outputs_written(out):
    assert json.loads((out / "m.json").read_text())["n_tokens"] == 10
    assert (out / "report.md").read_text().startswith("# ")
    assert sorted(p.name for p in (out / "plots").iterdir()) == PLOT_FILES
    for name in PLOT_FILES:
        assert (out / "plots" / name).read_bytes().startswith(PNG_MAGIC)


@pytest.mark.parametrize("case", list(THIN))
def test_score_thin_data_writes_json_report_and_plots(case, write, tmp_path):
    gold_text, pred_text = THIN[case]
    gold, pred = write(gold_text, "gold.tsv"), write(pred_text, "pred.tsv")
    out = tmp_path / "out"
    result = runner.invoke(app, ["score", str(gold), str(pred), "-o", str(out / "m.json"),
                                 "-r", str(out / "report.md"), "-p", str(out / "plots"), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert_outputs_written(out)
    m = json.loads((out / "m.json").read_text())
    report = (out / "report.md").read_text()
    if case == "no-entities":
        assert (m["n_gold"], m["n_pred"]) == (0, 0)
        assert "Neither the gold data nor the predictions have any entity" in report
    elif case == "one-type":
        assert set(m["seqeval"]["per_type"]) == {"Gene"}
        assert "| Gene | 100.00 | 100.00 | 100.00 | 2 |" in report
    elif case == "gold-only":
        assert (m["n_gold"], m["n_pred"]) == (3, 0)
        assert "No entity was predicted" in report
        assert "| Disease | 1 |" in report and "| Gene | 2 |" in report  # confusion rows: all missed
    else:
        assert (m["n_gold"], m["n_pred"]) == (0, 3)
        assert "The gold data has no entities" in report
        assert "| 1 | cancer | Disease |" in report  # false positives still listed


def test_evaluate_thin_data_writes_json_report_and_plots(ruler_model, write, tmp_path):
    """A pipeline that finds nothing on gold data without entities."""
    gold = write(NO_ENTS.replace("BRCA1", "ABC").replace("TP53", "XYZ").replace("breast", "lung"), "gold.tsv")
    out = tmp_path / "out"
    result = runner.invoke(app, ["evaluate", str(ruler_model), str(gold), "-o", str(out / "m.json"),
                                 "-r", str(out / "report.md"), "-p", str(out / "plots"), "--bootstrap", "20"])
    assert result.exit_code == 0, result.output
    assert_outputs_written(out)
    assert "Neither the gold data nor the predictions have any entity" in (out / "report.md").read_text()


def _thin_pairs(case):
    from spacy_bioner.evaluation.scoring import SentencePair

    words = ["BRCA1", "causes", "breast", "cancer"]
    gold = {"no-entities": [], "one-type": [(0, 1, "Gene")], "gold-only": [(0, 1, "Gene"), (2, 4, "Disease")],
            "pred-only": []}[case]
    pred = {"no-entities": [], "one-type": [(0, 1, "Gene")], "gold-only": [],
            "pred-only": [(0, 1, "Gene"), (3, 4, "Disease")]}[case]
    return [SentencePair(words=words, gold=gold, pred=pred)]


@pytest.mark.parametrize("case", list(THIN))
def test_write_plots_and_markdown_report_on_thin_data(case, tmp_path):
    from spacy_bioner.evaluation.report import markdown_report, write_plots
    from spacy_bioner.evaluation.scoring import score_pairs

    pairs = _thin_pairs(case)
    metrics = score_pairs(pairs, n_bootstrap=10)
    paths = write_plots(metrics, tmp_path / "plots")
    assert sorted(p.name for p in paths.values()) == PLOT_FILES
    for path in paths.values():
        assert path.read_bytes().startswith(PNG_MAGIC)
    report = markdown_report(metrics, pairs, plots=paths, relative_to=tmp_path)
    assert "![confusion](plots/confusion.png)" in report
    if case == "no-entities":
        assert "Neither the gold data nor the predictions have any entity" in report
        assert "No entities of any type" in report and "nothing to plot" in report
        assert "| gold \\ predicted |" not in report  # no header-only confusion table
    elif case == "one-type":
        assert "| Gene | 100.00 | 100.00 | 100.00 | 1 |" in report and "| Gene | 1 | 0 |" in report
        assert "any entity" not in report and "nothing to plot" not in report
    elif case == "gold-only":
        assert "No entity was predicted" in report
        assert "| Disease | 1 |" in report and "| Gene | 1 |" in report  # confusion rows: all missed
        assert "| 1 | breast cancer | Disease | BRCA1 causes [breast cancer] |" in report  # a false negative
    else:
        assert "The gold data has no entities" in report
        assert "| (spurious) | 1 | 1 |" in report
        assert "| 1 | cancer | Disease | BRCA1 causes breast [cancer] |" in report  # a false positive
