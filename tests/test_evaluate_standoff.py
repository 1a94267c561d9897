"""``spacy-bioner evaluate MODEL GOLD`` on standoff gold: raw text vs gold tokens, character level, timing."""
import json

import pytest
import spacy
from spacy.tokenizer import Tokenizer
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.evaluation.rawtext import markdown_standoff_report, timing_summary

runner = CliRunner()
PATTERNS = [{"label": "Gene", "pattern": "BRCA1"}, {"label": "Gene", "pattern": "TP53"},
            {"label": "Disease", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}]}]
DOCS = [("1", "BRCA1 mutations cause breast cancer.", "TP53, BRCA1 and breast cancer."),
        ("2", "TP53 in breast cancer.", "No mutation of BRCA1 was found.")]


def pubtator(docs=DOCS) -> str:
    """PubTator gold: every BRCA1/TP53 a Gene, every 'breast cancer' a Disease (offsets computed)."""
    out = []
    for pmid, title, abstract in docs:
        text = f"{title} {abstract}"
        out += [f"{pmid}|t|{title}", f"{pmid}|a|{abstract}"]
        for word, label in (("BRCA1", "Gene"), ("TP53", "Gene"), ("breast cancer", "Disease")):
            start = text.find(word)
            while start >= 0:
                out.append(f"{pmid}\t{start}\t{start + len(word)}\t{word}\t{label}\t-")
                start = text.find(word, start + 1)
        out.append("")
    return "\n".join(out) + "\n"


def ruler_pipeline(path, *, whitespace: bool = False):
    nlp = spacy.blank("en")
    if whitespace:  # keeps 'TP53,' and 'cancer.' whole: raw text loses them, gold tokens do not
        nlp.tokenizer = Tokenizer(nlp.vocab)
    nlp.add_pipe("entity_ruler").add_patterns(PATTERNS)
    nlp.to_disk(path)
    return path


@pytest.fixture
def gold(write):
    return write(pubtator(), "gold.pubtator")


def evaluate(model, gold, tmp_path, *extra):
    out = tmp_path / "m.json"
    result = runner.invoke(app, ["evaluate", str(model), str(gold), "-o", str(out), "--bootstrap", "20", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


def test_evaluate_standoff_reports_raw_text_gold_tokens_and_timing(gold, tmp_path):
    model = ruler_pipeline(tmp_path / "model")
    m, output = evaluate(model, gold, tmp_path, "-r", str(tmp_path / "report.md"))
    assert m["level"] == "character" and m["gold_format"] == "pubtator" and m["n_documents"] == 2
    for side in ("raw_text", "gold_tokens"):
        o = m[side]["overall"]
        assert o["strict"]["tp"] == 8 and o["strict"]["fp"] == 0 and o["strict"]["fn"] == 0, side
        assert set(m[side]["per_type"]) == {"Gene", "Disease"} and m[side]["bootstrap"]["n_samples"] == 20
    assert m["overall"] == m["raw_text"]["overall"] and m["ents_f"] == 1.0  # the headline is the raw-text pass
    assert m["tokenization_cost"]["strict_f"] == 0.0
    t = m["timing"]
    assert t["unit"] == "document" and "method" in t and t["n_documents"] == 2
    for key in ("mean_ms", "p50_ms", "p95_ms", "docs_per_second", "words_per_second"):
        assert t[key] > 0, key
    assert m["gold_tokens"]["gold_mentions"]["read"] == 8 and m["gold_tokens"]["n_tokens"] > 0
    assert "F raw text" in output and "ms/doc" in output
    report = (tmp_path / "report.md").read_text()
    assert "## Raw text vs gold tokens" in report and "## Inference time (raw text)" in report
    assert "| strict | 100.00 | 100.00 | +0.00 |" in report


def test_pipeline_tokenizer_changes_raw_text_not_gold_token_scores(gold, tmp_path):
    base, _ = evaluate(ruler_pipeline(tmp_path / "model"), gold, tmp_path)
    ws, _ = evaluate(ruler_pipeline(tmp_path / "ws", whitespace=True), gold, tmp_path)
    # raw text, split on whitespace only: 'TP53,' and 'cancer.' hide two Genes... and three Diseases
    assert ws["raw_text"]["overall"]["strict"]["tp"] < base["raw_text"]["overall"]["strict"]["tp"]
    assert ws["raw_text"]["per_type"]["Disease"]["strict"]["tp"] == 0
    # gold tokens are the gold's, whatever the pipeline's tokenizer: same score
    assert ws["gold_tokens"]["overall"] == base["gold_tokens"]["overall"]
    assert ws["tokenization_cost"]["strict_f"] == pytest.approx(ws["raw_text"]["overall"]["strict"]["f"] - 1.0)
    assert ws["tokenization_cost"]["strict_f"] < 0


def test_evaluate_standoff_labels_and_gold_format(write, tmp_path):
    gold = write(pubtator(), "gold.data")  # no telling suffix: --gold-format names it
    model = ruler_pipeline(tmp_path / "model")
    m, _ = evaluate(model, gold, tmp_path, "--gold-format", "pubtator", "--labels", "Disease")
    assert set(m["raw_text"]["per_type"]) == {"Disease"} and m["n_gold"] == 3
    assert m["dropped"]["pred"] == {"Gene": 5}


def test_evaluate_standoff_timing_summary():
    t = timing_summary([0.01, 0.02, 0.03, 0.04], words=100)
    assert t["mean_ms"] == pytest.approx(25) and t["p50_ms"] == pytest.approx(25)
    assert t["p95_ms"] == pytest.approx(38.5) and t["docs_per_second"] == pytest.approx(40)
    assert t["words_per_second"] == pytest.approx(1000)


@pytest.mark.parametrize("text,name,extra,expected", [
    ("1|t|BRCA1 mutations.\n1\t0\t5\tTP53\tGene\t-\n", "bad.pubtator", [], "bad.pubtator:2"),
    ("1|t|BRCA1 mutations.\n", "gold.pubtator", ["--gold-format", "conll"], "choose one of"),
    ('{"id": "1", "entities": []}\n', "gold.jsonl", [], "has no text"),
    ("", "empty.pubtator", [], "no documents to evaluate on"),
    ("1|t|BRCA1 mutations.\n", "gold.pubtator", ["--noise", "typo"], "--noise: for IOB/.spacy gold only"),
])
def test_evaluate_standoff_bad_gold_is_one_line(write, tmp_path, text, name, extra, expected):
    model = ruler_pipeline(tmp_path / "model")
    result = runner.invoke(app, ["evaluate", str(model), str(write(text, name)), *extra])
    assert result.exit_code == 1, result.output
    assert expected in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("✘")]) == 1


def test_standoff_options_on_iob_gold_are_an_error(write, tmp_path):
    model = ruler_pipeline(tmp_path / "model")
    result = runner.invoke(app, ["evaluate", str(model), str(write("BRCA1\tB-Gene\n\n", "gold.tsv")),
                                 "--labels", "Gene"])
    assert result.exit_code == 1 and "--labels: for standoff gold only" in result.output


def test_markdown_standoff_report_per_type_delta(gold, tmp_path):
    ws, _ = evaluate(ruler_pipeline(tmp_path / "ws", whitespace=True), gold, tmp_path)
    report = markdown_standoff_report(ws, title="t")
    assert "| Disease | 0.00 | 100.00 | -100.00 |" in report


def test_evaluate_brat_gold_folder(tmp_path):
    folder = tmp_path / "brat"
    folder.mkdir()
    for pmid, title, abstract in DOCS:
        text = f"{title}\n{abstract}\n"
        (folder / f"{pmid}.txt").write_text(text, encoding="utf8")
        lines, n = [], 0
        for word, label in (("BRCA1", "Gene"), ("TP53", "Gene"), ("breast cancer", "Disease")):
            start = text.find(word)
            while start >= 0:
                n += 1
                lines.append(f"T{n}\t{label} {start} {start + len(word)}\t{word}")
                start = text.find(word, start + 1)
        (folder / f"{pmid}.ann").write_text("\n".join(lines) + "\n", encoding="utf8")
    m, _ = evaluate(ruler_pipeline(tmp_path / "model"), folder, tmp_path)
    assert m["gold_format"] == "brat" and m["n_documents"] == 2 and m["n_gold"] == 8
    assert m["raw_text"]["overall"]["strict"]["f"] == 1.0 and m["gold_tokens"]["overall"]["strict"]["f"] == 1.0
