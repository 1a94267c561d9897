"""Character-level scoring: strict, relaxed, HunFlair2's lenient match, the official
BioCreative V CDR mention counts, and agreement with the token-level scores."""
import os
import random
import shutil
import subprocess

import pytest
from spacy.vocab import Vocab

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.evaluation.charlevel import (DocumentPair, bc5cdr_counts, collect_mentions, lenient_matches,
                                               markdown_char_report, score_char_pairs, score_mentions)
from spacy_bioner.evaluation.scoring import align_docs, score_pairs

# The same documents as gold and as a system's output (PubTator). Verified with the official
# tool, bc5cdr_eval.jar 0.0.3 (`Evaluate mention TYPES PubTator gold pred`), which prints:
#   Disease: TP 2 FP 3 FN 1; Chemical: TP 1 FP 2 FN 3; Chemical|Disease: TP 3 FP 6 FN 4.
# It shows: a duplicated gold line counts once, a composite mention (7th column) is one mention,
# relation lines are ignored, predictions in a document without gold mentions of the chosen
# types (document 2's Disease, documents 3 and 4) are ignored.
GOLD_PUBTATOR = (
    "1|t|Selegiline-induced hypotension and breast or ovarian cancer.\n"
    "1|a|Naloxone reverses the antihypertensive effect of clonidine in hypertensive rats.\n"
    "1\t0\t10\tSelegiline\tChemical\tD1\n1\t19\t30\thypotension\tDisease\tD2\n"
    "1\t35\t59\tbreast or ovarian cancer\tDisease\tD3|D4\tbreast cancer|ovarian cancer\n"
    "1\t61\t69\tNaloxone\tChemical\t-1\n1\t110\t119\tclonidine\tChemical\t-1\n"
    "1\t87\t99\thypertensive\tDisease\t-1\n1\t19\t30\thypotension\tDisease\tD9\n1\tCID\tD1\tD2\n\n"
    "2|t|Lidocaine given.\n2|a|Nothing else happened to the patients.\n2\t0\t9\tLidocaine\tChemical\t-1\n\n"
    "3|t|Aspirin and headache.\n3|a|No abstract.\n\n"
)
PRED_PUBTATOR = (
    "1|t|Selegiline-induced hypotension and breast or ovarian cancer.\n"
    "1|a|Naloxone reverses the antihypertensive effect of clonidine in hypertensive rats.\n"
    "1\t0\t11\tSelegiline-\tChemical\t-1\n1\t19\t30\thypotension\tDisease\t-1\n"
    "1\t19\t30\thypotension\tDisease\t-1\n1\t35\t59\tbreast or ovarian cancer\tDisease\t-1\n"
    "1\t61\t69\tNaloxone\tDisease\t-1\n1\t111\t119\tlonidine\tChemical\t-1\n"
    "1\t86\t99\tihypertensive\tDisease\t-1\n1\t83\t99\tantihypertensive\tDisease\t-1\n\n"
    "2|t|Lidocaine given.\n2|a|Nothing else happened to the patients.\n"
    "2\t0\t9\tLidocaine\tChemical\t-1\n2\t0\t9\tLidocaine\tDisease\t-1\n\n"
    "3|t|Aspirin and headache.\n3|a|No abstract.\n3\t0\t7\tAspirin\tChemical\t-1\n3\t12\t20\theadache\tDisease\t-1\n\n"
    "4|t|Aspirin and headache.\n4|a|No abstract.\n4\t12\t20\theadache\tDisease\t-1\n\n"
)
#: What bc5cdr_eval.jar prints for these files, per type list.
OFFICIAL = {("Disease",): (2, 3, 1), ("Chemical",): (1, 2, 3), ("Chemical", "Disease"): (3, 6, 4)}


def pubtator_spans(text):
    """(id, spans) per document of a PubTator string (mention lines only; for the fixtures above)."""
    docs = {}
    for line in text.splitlines():
        if "|t|" in line or "|a|" in line:
            docs.setdefault(line.split("|")[0], [])
            continue
        cols = line.split("\t")
        if len(cols) >= 5 and cols[1].isdigit():
            docs[cols[0]].append((int(cols[1]), int(cols[2]), cols[4]))
    return list(docs.items())


def scored(gold_text=GOLD_PUBTATOR, pred_text=PRED_PUBTATOR, **kwargs):
    gold = collect_mentions(pubtator_spans(gold_text), **kwargs)
    pred = collect_mentions(pubtator_spans(pred_text), **kwargs)
    return score_mentions(gold, pred, n_bootstrap=50)


@pytest.mark.parametrize("types", sorted(OFFICIAL))
def test_bc5cdr_mode_gives_the_official_counts(types):
    m = scored(labels=set(types))
    got = m["overall"]["bc5cdr"] if len(types) > 1 else m["per_type"][types[0]]["bc5cdr"]
    assert (got["tp"], got["fp"], got["fn"]) == OFFICIAL[types]
    if len(types) == 1:  # per type = the tool run with that type alone
        assert (m["per_type"][types[0]]["bc5cdr"]["tp"],) == (OFFICIAL[types][0],)


def test_strict_counts_every_scored_document_and_collapses_duplicates():
    m = scored()
    strict = m["overall"]["strict"]
    # 7 gold (a duplicate collapsed); 11 predictions in gold's documents (document 4 is not in gold)
    assert (strict["tp"], strict["fp"], strict["fn"]) == (3, 8, 4)
    assert m["duplicates"] == {"gold": 1, "pred": 1}
    assert m["pred_documents_not_in_gold"]["ids"] == ["4"]
    assert m["per_type"]["Chemical"]["strict"]["tp"] == 1 and m["per_type"]["Disease"]["strict"]["tp"] == 2


def test_lenient_allows_one_character_at_each_end_same_type_only():
    m = scored()
    # Selegiline 0-10 vs 0-11, clonidine 110-119 vs 111-119, hypertensive 87-99 vs 86-99; not 83-99
    assert m["per_type"]["Chemical"]["lenient"]["tp"] == 3 and m["per_type"]["Disease"]["lenient"]["tp"] == 3
    assert lenient_matches([(10, 20, "A")], [(11, 19, "A")]) == 1  # both ends off by one
    assert lenient_matches([(10, 20, "A")], [(12, 20, "A")]) == 0
    assert lenient_matches([(10, 20, "A")], [(10, 20, "B")]) == 0
    # one-to-one, exact first: the exact pair is not broken up by a near one
    assert lenient_matches([(10, 20, "A"), (11, 20, "A")], [(10, 20, "A")]) == 1
    assert lenient_matches([(10, 20, "A"), (11, 21, "A")], [(10, 20, "A"), (10, 21, "A")]) == 2


def test_relaxed_schemes_match_the_token_level_definitions():
    pair = DocumentPair("d", gold=[(0, 10, "A"), (20, 30, "B"), (40, 50, "A")],
                        pred=[(0, 10, "B"), (22, 30, "B"), (40, 50, "A"), (60, 70, "A")])
    o = score_char_pairs([pair], n_bootstrap=0)["overall"]
    assert o["strict"]["tp"] == 1
    assert o["exact"]["p"] == pytest.approx(2 / 4) and o["exact"]["r"] == pytest.approx(2 / 3)
    assert o["partial"]["p"] == pytest.approx(2.5 / 4)
    assert o["type"]["r"] == pytest.approx(2 / 3)


def test_labels_and_label_map_apply_to_both_sides():
    m = scored(label_map={"Chemical": "Drug", "Disease": None})
    assert set(m["per_type"]) == {"Drug"}
    assert m["dropped"]["gold"] == {"Disease (mapped to null)": 4}  # mentions as read
    only = scored(labels={"Disease"})
    assert set(only["per_type"]) == {"Disease"} and only["dropped"]["pred"] == {"Chemical": 4}


def test_bootstrap_resamples_documents_and_report_lists_every_scheme():
    m = scored()
    assert m["bootstrap"]["n_samples"] == 50 and 0 <= m["bootstrap"]["low"] <= m["bootstrap"]["high"] <= 1
    assert set(m["bootstrap_per_type"]) == {"Chemical", "Disease"}
    report = markdown_char_report(m)
    for scheme in ("strict", "exact", "partial", "type", "lenient", "bc5cdr"):
        assert f"| {scheme} |" in report
    assert "| bc5cdr | 3 | 6 | 4 |" in report
    assert "1 predicted documents are not in gold" in report


@pytest.mark.skipif(not (os.environ.get("BC5CDR_EVAL_JAR") and shutil.which("java")),
                    reason="set BC5CDR_EVAL_JAR to the official bc5cdr_eval.jar (and have java) to compare live")
def test_bc5cdr_mode_against_the_official_jar(tmp_path):
    (tmp_path / "g.txt").write_text(GOLD_PUBTATOR, encoding="utf8")
    (tmp_path / "p.txt").write_text(PRED_PUBTATOR, encoding="utf8")
    for types, expected in OFFICIAL.items():
        out = subprocess.run(["java", "-cp", os.environ["BC5CDR_EVAL_JAR"], "ncbi.bc5cdr_eval.Evaluate", "mention",
                              "|".join(types), "PubTator", str(tmp_path / "g.txt"), str(tmp_path / "p.txt")],
                             capture_output=True, text=True, check=True).stdout
        counts = {k: int(v) for k, v in (line.split(": ") for line in out.splitlines() if line[:3] in ("TP:", "FP:", "FN:"))}
        assert (counts["TP"], counts["FP"], counts["FN"]) == expected


def random_tags(rng, n, labels=("Gene", "Disease", "Chemical")):
    tags, prev = [], "O"
    for _ in range(n):
        r = rng.random()
        tag = f"B-{rng.choice(labels)}" if r < 0.25 else f"I-{prev[2:]}" if r < 0.4 and prev != "O" else "O"
        tags.append(tag)
        prev = tag
    return tags


def random_iob_pair(rng, n_docs):
    """Gold and predicted IOB text over the same tokens: documents of a few sentences,
    gold tags random, predictions gold's with a fifth of the sentences tagged anew."""
    gold, pred = [], []
    for d in range(n_docs):
        gold.append("-DOCSTART-\tO\n")
        pred.append("-DOCSTART-\tO\n")
        for s in range(rng.randint(1, 3)):
            n = rng.randint(3, 9)
            words = [f"w{d}_{s}_{t}" for t in range(n)]
            g = random_tags(rng, n)
            p = random_tags(rng, n) if rng.random() < 0.5 else g
            gold.extend(f"{w}\t{t}\n" for w, t in zip(words, g))
            pred.extend(f"{w}\t{t}\n" for w, t in zip(words, p))
            gold.append("\n")
            pred.append("\n")
    return "".join(gold), "".join(pred)


@pytest.mark.parametrize("seed", range(4))
def test_char_strict_and_relaxed_equal_token_level_on_iob_documents(tmp_path, seed):
    rng = random.Random(seed)
    gold_text, pred_text = random_iob_pair(rng, 8)
    (tmp_path / "g.tsv").write_text(gold_text, encoding="utf8")
    (tmp_path / "p.tsv").write_text(pred_text, encoding="utf8")
    vocab = Vocab()
    gold_docs = read_docs(tmp_path / "g.tsv", vocab=vocab)
    pred_docs = read_docs(tmp_path / "p.tsv", vocab=vocab)
    token = score_pairs(align_docs(gold_docs, pred_docs), n_bootstrap=0)

    def as_chars(docs):  # IOB Docs as documents: text + character mentions
        return [(f"doc{i}", [(e.start_char, e.end_char, e.label_) for e in doc.ents]) for i, doc in enumerate(docs)]

    char = score_mentions(collect_mentions(as_chars(gold_docs)), collect_mentions(as_chars(pred_docs)), n_bootstrap=0)
    assert char["n_gold"] == token["n_gold"] > 0 and char["n_pred"] == token["n_pred"]
    strict = char["overall"]["strict"]
    assert (strict["p"], strict["r"], strict["f"]) == pytest.approx(
        (token["spacy"]["ents_p"], token["spacy"]["ents_r"], token["spacy"]["ents_f"]))
    assert strict["f"] == pytest.approx(token["seqeval"]["f1"])
    for scheme in ("exact", "partial", "type"):
        assert char["overall"][scheme] == pytest.approx(token["relaxed"][scheme])
    for label, v in token["seqeval"]["per_type"].items():
        assert char["per_type"][label]["strict"]["f"] == pytest.approx(v["f1"])


def jsonl_of(pubtator_text):
    """The predictions of a PubTator string as annotate's JSONL (offsets only)."""
    import json

    return "".join(json.dumps({"id": doc_id, "entities": [{"start": s, "end": e, "label": t} for s, e, t in spans]}) + "\n"
                   for doc_id, spans in pubtator_spans(pubtator_text))


def test_score_cli_scores_standoff_at_character_level_formats_may_differ(tmp_path):
    import json

    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    (tmp_path / "gold.pubtator").write_text(GOLD_PUBTATOR, encoding="utf8")
    (tmp_path / "pred.pubtator").write_text(PRED_PUBTATOR, encoding="utf8")
    (tmp_path / "pred.jsonl").write_text(jsonl_of(PRED_PUBTATOR), encoding="utf8")
    runner = CliRunner()
    results = {}
    for pred in ("pred.pubtator", "pred.jsonl"):
        out = tmp_path / pred
        result = runner.invoke(app, ["score", str(tmp_path / "gold.pubtator"), str(tmp_path / pred), "--labels", "Disease",
                                     "-o", f"{out}.json", "-r", f"{out}.md", "--bootstrap", "20"])
        assert result.exit_code == 0, result.output
        results[pred] = json.loads(open(f"{out}.json").read())
        assert "| bc5cdr | 2 | 3 | 1 |" in open(f"{out}.md").read()
    for m in results.values():
        m.pop("dropped")
    assert results["pred.pubtator"] == results["pred.jsonl"]
    mapped = tmp_path / "map.json"
    mapped.write_text('{"Chemical": "Drug", "Disease": null}', encoding="utf8")
    result = runner.invoke(app, ["score", str(tmp_path / "gold.pubtator"), str(tmp_path / "pred.jsonl"),
                                 "--label-map", str(mapped), "-o", str(tmp_path / "m.json"), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert list(json.loads((tmp_path / "m.json").read_text())["per_type"]) == ["Drug"]


def test_score_cli_standoff_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    (tmp_path / "gold.pubtator").write_text(GOLD_PUBTATOR, encoding="utf8")
    (tmp_path / "pred.tsv").write_text("Aspirin\tB-Chemical\n\n", encoding="utf8")
    (tmp_path / "bad.pubtator").write_text(GOLD_PUBTATOR.replace("\tSelegiline\t", "\tSelegilin\t"), encoding="utf8")
    runner = CliRunner()
    cases = {
        ("gold.pubtator", "pred.tsv"): "pred.tsv: not a standoff file",
        ("bad.pubtator", "gold.pubtator"): "bad.pubtator:3",
        ("gold.pubtator", "missing.pubtator"): "missing.pubtator: no such file or folder",
    }
    for (gold, pred), expected in cases.items():
        result = runner.invoke(app, ["score", str(tmp_path / gold), str(tmp_path / pred)])
        assert result.exit_code == 1 and expected in result.output, result.output
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(app, ["score", str(tmp_path / "gold.pubtator"), str(tmp_path / "gold.pubtator"),
                                 "--gold-format", "conll"])
    assert result.exit_code == 1 and "format 'conll'" in result.output
