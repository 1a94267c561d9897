"""Standoff corpora: PubTator, BioC, brat (and annotate's JSONL) in, Docs out, and back."""
import gzip
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.corpus.align import (AlignmentSummary, convert_standoff, default_tokenizer, doc_to_standoff,
                                       load_tokenizer, read_label_map, standoff_to_doc)
from spacy_bioner.corpus.splits import USER_DATA_DOCUMENT, document_groups
from spacy_bioner.corpus.standoff import (Mention, StandoffDocument, detect_format, read_documents,
                                          write_documents)
from spacy_bioner.errors import CorpusFormatError

from .conftest import CORPORA, require_shared

FIXTURES = Path(__file__).parent / "fixtures" / "standoff"
runner = CliRunner()


def _doc_facts(doc):
    return (doc.text, [t.text for t in doc], [t.whitespace_ for t in doc], [bool(t.is_sent_start) for t in doc],
            [(e.start_char, e.end_char, e.label_) for e in doc.ents], dict(doc.user_data))


def _convert(path, **kwargs):
    docs, summary = convert_standoff(path, **kwargs)
    return docs, summary.to_dict()


# ---------------------------------------------------------------- readers
def test_formats_from_names():
    assert detect_format(FIXTURES / "docs.pubtator") == "pubtator"
    assert detect_format(FIXTURES / "docs.xml") == "bioc"
    assert detect_format(FIXTURES / "brat") == "brat"
    assert detect_format(FIXTURES / "brat" / "100.txt") == "brat"
    assert detect_format(FIXTURES / "brat" / "100.ann") == "brat"


def test_pubtator_text_is_title_space_abstract_in_characters():
    docs = list(read_documents(FIXTURES / "docs.pubtator"))
    assert [d.id for d in docs] == ["100", "200"]
    doc = docs[0]
    assert doc.text == "Sjögren syndrome and β-catenin. TP53/BRCA1 loss in Selegiline-induced hepatotoxicity."
    for m in doc.mentions:
        assert doc.text[m.start:m.end] == m.text  # non-ASCII: characters, not bytes
    assert doc.mentions[2].source.endswith("docs.pubtator:5")


def test_the_same_documents_read_alike_in_every_format():
    read = {fmt: list(read_documents(path)) for fmt, path in
            (("pubtator", FIXTURES / "docs.pubtator"), ("bioc", FIXTURES / "docs.xml"), ("brat", FIXTURES / "brat"))}
    key = {fmt: [(d.id, d.text, [(m.start, m.end, m.type, m.text) for m in d.mentions]) for d in docs]
           for fmt, docs in read.items()}
    assert key["pubtator"] == key["bioc"] == key["brat"]
    assert read["brat"][0].ignored == {"# lines": 1}


def test_same_documents_in_three_formats_give_identical_docbins(tmp_path):
    outs = {}
    for fmt, path in (("pubtator", FIXTURES / "docs.pubtator"), ("bioc", FIXTURES / "docs.xml"),
                      ("brat", FIXTURES / "brat")):
        out = tmp_path / f"{fmt}.spacy"
        result = runner.invoke(app, ["convert", str(path), str(out)])
        assert result.exit_code == 0, result.output
        outs[fmt] = out
    from spacy_bioner.corpus.docbin import load_docbin

    facts = {fmt: [_doc_facts(d) for d in load_docbin(out)] for fmt, out in outs.items()}
    assert facts["pubtator"] == facts["bioc"] == facts["brat"]
    assert facts["pubtator"][0][5] == {USER_DATA_DOCUMENT: "100"}


def test_gzip_reads_as_the_plain_file(tmp_path):
    gz = tmp_path / "docs.pubtator.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "docs.pubtator").read_bytes()))
    plain = [(d.id, d.text, d.mentions) for d in read_documents(FIXTURES / "docs.pubtator")]
    zipped = [(d.id, d.text, [m for m in d.mentions]) for d in read_documents(gz)]
    assert [(i, t, [(m.start, m.end, m.type) for m in ms]) for i, t, ms in plain] == \
        [(i, t, [(m.start, m.end, m.type) for m in ms]) for i, t, ms in zipped]


def test_pubtator_crlf_composite_and_relations(tmp_path):
    text = ("7|t|Naïve T cells\r\n7|a|Breast and ovarian cancer.\r\n"
            "7\t0\t13\tNaïve T cells\tCellType\t-\r\n"
            "7\t14\t39\tBreast and ovarian cancer\tDisease\tD001943|D010051\r\n"
            "7\t33\t39\tcancer\tDisease\tD009369\r\n"
            "7\tCID\tD1\tD2\r\n\r\n")
    path = tmp_path / "c.pubtator"
    path.write_bytes(text.encode("utf8"))
    (doc,) = read_documents(path)
    assert doc.text == "Naïve T cells Breast and ovarian cancer."
    assert [m.composite for m in doc.mentions] == [False, True, False]
    assert doc.ignored == {"relation lines": 1}
    summary = AlignmentSummary()
    spacy_doc = standoff_to_doc(doc, default_tokenizer(), summary=summary)
    assert [e.text for e in spacy_doc.ents] == ["Naïve T cells", "cancer"]  # composite out, so no overlap
    counts = summary.to_dict()["total"]
    assert counts["read"] == 3 and counts["dropped_composite"] == 1 and counts["kept"] == 2
    assert summary.to_dict()["files"]["c.pubtator"]["ignored"] == {"relation lines": 1}


def test_bioc_passage_gap_and_discontinuous_annotation(tmp_path):
    xml = ("<?xml version='1.0'?><collection><source/><date/><key/><document><id>d1</id>"
           "<passage><offset>0</offset><text>Title here</text></passage>"
           "<passage><offset>20</offset><text>Lung and liver metastases.</text>\n"
           '<annotation id="a1"><infon key="type">Disease</infon>'
           '<location offset="20" length="4"/><location offset="35" length="10"/>'
           "<text>Lung metastases</text></annotation>\n"
           '<annotation id="a2"><infon key="type">Disease</infon><location offset="29" length="16"/>'
           "<text>liver metastases</text></annotation>\n"
           '<relation id="r1"><node refid="a1" role="x"/></relation>'
           "</passage></document></collection>")
    path = tmp_path / "x.xml"
    path.write_text(xml, encoding="utf8")
    (doc,) = read_documents(path)
    assert doc.text == "Title here" + " " * 10 + "Lung and liver metastases."
    assert doc.mentions[0].discontinuous and doc.mentions[0].segments == ((20, 24), (35, 45))
    assert doc.ignored == {"relations": 1}
    summary = AlignmentSummary()
    spacy_doc = standoff_to_doc(doc, default_tokenizer(), summary=summary)
    assert [e.text for e in spacy_doc.ents] == ["liver metastases"]
    total = summary.to_dict()["total"]
    assert total["dropped_discontinuous"] == 1 and total["kept"] == 1 and total["read"] == 2
    (example,) = summary.to_dict()["files"]["x.xml"]["examples"]["dropped_discontinuous"]
    assert "x.xml:2" in example and "20-24;35-45" in example


def test_bioc_passage_text_with_its_sentences_inside(tmp_path):
    xml = ("<collection><document><id>d1</id><passage><offset>0</offset><text>Aspirin helps. It works.</text>"
           "<sentence><offset>0</offset><text>Aspirin helps.</text></sentence>"
           "<sentence><offset>15</offset><text>It works.</text></sentence></passage></document></collection>")
    path = tmp_path / "s.xml"
    path.write_text(xml, encoding="utf8")
    (doc,) = read_documents(path)
    assert doc.text == "Aspirin helps. It works." and [p.offset for p in doc.passages] == [0]


def test_brat_crlf_non_ascii_and_other_lines(tmp_path):
    text = "Über p53.\r\nα-synuclein binds\r\nPARK2."
    (tmp_path / "d.txt").write_bytes(text.encode("utf8"))
    a = text.index("α-synuclein")
    p = text.index("PARK2")
    ann = (f"T1\tProtein {a} {a + 11}\tα-synuclein\nT2\tProtein {p} {p + 5}\tPARK2\n"
           "R1\tBinds Arg1:T1 Arg2:T2\nE1\tBinding:T1\nA1\tNegated E1\n")
    (tmp_path / "d.ann").write_text(ann, encoding="utf8")
    (doc,) = read_documents(tmp_path)
    assert doc.text == text and doc.id == "d"
    assert [(m.start, m.end) for m in doc.mentions] == [(a, a + 11), (p, p + 5)]
    assert doc.ignored == {"R lines": 1, "E lines": 1, "A lines": 1}
    spacy_doc = standoff_to_doc(doc, default_tokenizer())
    assert [(e.start_char, e.end_char) for e in spacy_doc.ents] == [(a, a + 11), (p, p + 5)]
    assert spacy_doc.text == text


def test_mention_text_mismatch_is_an_error_at_file_line(tmp_path):
    (tmp_path / "d.txt").write_text("BRCA1 mutations", encoding="utf8")
    (tmp_path / "d.ann").write_text("T1\tGene 0 5\tBRCA1\nT2\tGene 1 6\tBRCA1\n", encoding="utf8")
    with pytest.raises(CorpusFormatError, match=r"d\.ann:2: mention text 'BRCA1'"):
        list(read_documents(tmp_path))
    bad = tmp_path / "p.pubtator"
    bad.write_text("1|t|Aspirin\n1|a|\n1\t0\t7\tAspirim\tChemical\n", encoding="utf8")
    with pytest.raises(CorpusFormatError, match=r"p\.pubtator:3: "):
        list(read_documents(bad))


def test_annotate_jsonl_output_is_read():
    from spacy_bioner.annotate.formats import jsonl_record
    from spacy_bioner.types import AnnotatedRecord, Passage

    record = AnnotatedRecord(id="9", source="in.txt:1", passages=[Passage(offset=0, text="TP53 and BRCA1")],
                             entities=[(0, 4, "Gene", "TP53"), (9, 14, "Gene", "BRCA1")])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.jsonl"
        path.write_text(json.dumps(jsonl_record(record)) + "\n", encoding="utf8")
        (doc,) = read_documents(path)
    assert doc.id == "9" and doc.text is None
    assert [(m.start, m.end, m.type, m.text) for m in doc.mentions] == [(0, 4, "Gene", "TP53"), (9, 14, "Gene", "BRCA1")]


# ---------------------------------------------------------------- alignment
def _one(text, spans):
    return StandoffDocument(id="x", text=text, source="t.ann:1",
                            mentions=[Mention(start=s, end=e, type=t, text=text[s:e], source=f"t.ann:{i}")
                                      for i, (s, e, t) in enumerate(spans, start=1)])


@pytest.mark.parametrize("alignment,expected,outcome", [
    ("split", (0, 9), "split"),
    ("expand", (0, 11), "adjusted"),
    ("contract", (0, 5), "adjusted"),
])
def test_mid_word_boundary(alignment, expected, outcome):
    text = "blood cells are red"
    summary = AlignmentSummary()
    doc = standoff_to_doc(_one(text, [(0, 9, "Cell")]), default_tokenizer(), alignment=alignment, summary=summary)
    assert doc.text == text
    assert [(e.start_char, e.end_char) for e in doc.ents] == ([expected] if expected else [])
    counts = summary.to_dict()["total"]
    assert counts[outcome] == 1 and counts["read"] == 1
    assert counts["max_change_chars"] == {"split": 0, "expand": 2, "contract": 4}[alignment]


def test_contract_with_no_whole_token_drops_and_counts():
    summary = AlignmentSummary()
    doc = standoff_to_doc(_one("hepatotoxicity", [(0, 6, "X")]), default_tokenizer(), alignment="contract",
                          summary=summary)
    assert not doc.ents and summary.to_dict()["total"]["dropped_no_token"] == 1


def test_strict_alignment_is_an_error():
    with pytest.raises(CorpusFormatError, match=r"t\.ann:1: .*token boundaries"):
        standoff_to_doc(_one("blood cells", [(0, 9, "Cell")]), default_tokenizer(), alignment="strict")


def test_overlaps_longest_shortest_error():
    text = "paraxial mesoderm cells"
    spans = [(0, 17, "Anatomy"), (9, 17, "Anatomy"), (9, 23, "Cell")]  # nested and crossing
    for mode, kept in (("longest", [(0, 17)]), ("shortest", [(9, 17)])):
        summary = AlignmentSummary()
        doc = standoff_to_doc(_one(text, spans), default_tokenizer(), overlaps=mode, summary=summary)
        assert [(e.start_char, e.end_char) for e in doc.ents] == kept
        total = summary.to_dict()["total"]
        assert total["dropped_overlap"] == 2 and total["read"] == 3
    with pytest.raises(CorpusFormatError, match="overlaps"):
        standoff_to_doc(_one(text, spans), default_tokenizer(), overlaps="error")


def test_expansion_that_creates_an_overlap_is_counted():
    text = "hepatotoxicity"
    summary = AlignmentSummary()
    doc = standoff_to_doc(_one(text, [(0, 6, "Organ"), (6, 14, "Disease")]), default_tokenizer(), alignment="expand",
                          summary=summary)
    assert len(doc.ents) == 1
    total = summary.to_dict()["total"]
    assert total["adjusted"] == 1 and total["dropped_overlap"] == 1 and total["read"] == 2


def test_sentences_never_cut_a_mention():
    text = "He had Ca. 2 cells. Then it was fine. And more."
    s = text.index("Ca. 2")
    doc = standoff_to_doc(_one(text, [(s, s + 5, "X")]), default_tokenizer())
    (ent,) = doc.ents
    assert ent.sent.start <= ent.start and ent.end <= ent.sent.end
    assert len(list(doc.sents)) >= 2


def test_fixture_summary_adds_up_and_ids_group_documents():
    docs, summary = _convert(FIXTURES / "docs.pubtator")
    total = summary["total"]
    assert total["read"] == 11
    assert total["read"] == sum(total[k] for k in ("kept", "split", "adjusted", "dropped_overlap",
                                                   "dropped_composite", "dropped_discontinuous",
                                                   "dropped_label", "dropped_no_token"))
    assert total["dropped_overlap"] == 2  # Sjögren in Sjögren syndrome; Selegiline-induced crossing
    assert total["split"] == 1  # blood cel in blood cells (the biomedical tokenizer splits CD34+cells itself)
    groups = document_groups(docs)
    assert len(set(groups.groups)) == 2


def test_label_map_renames_and_drops(tmp_path):
    yml = tmp_path / "map.yml"
    yml.write_text("Gene: GGP\nSpecies: null\n", encoding="utf8")
    mapping = read_label_map(yml)
    assert mapping == {"Gene": "GGP", "Species": None}
    docs, summary = _convert(FIXTURES / "docs.pubtator", label_map=mapping)
    labels = {e.label_ for d in docs for e in d.ents}
    assert "GGP" in labels and "Gene" not in labels and "Species" not in labels
    assert summary["total"]["dropped_label"] == 1 and summary["label_map"] == mapping
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]", encoding="utf8")
    with pytest.raises(ValueError, match="bad.json"):
        read_label_map(bad)


def test_tokenizer_from_language_code_and_pipeline_folder(tmp_path):
    import spacy

    assert [t.text for t in load_tokenizer("en")("TP53-induced")] == [t.text for t in spacy.blank("en")("TP53-induced")]
    assert [t.text for t in load_tokenizer(None)("TP53/BRCA1-induced")] == ["TP53", "/", "BRCA1", "-", "induced"]
    nlp = spacy.blank("en")
    nlp.tokenizer.add_special_case("TP53/BRCA1", [{"ORTH": "TP53/BRCA1"}])
    nlp.to_disk(tmp_path / "pipe")
    assert [t.text for t in load_tokenizer(str(tmp_path / "pipe"))("TP53/BRCA1 x")] == ["TP53/BRCA1", "x"]
    with pytest.raises(ValueError, match="--tokenizer"):
        load_tokenizer(str(tmp_path / "nothing-here"))


# ---------------------------------------------------------------- writers and round trips
def test_round_trip_pubtator_docbin_pubtator(tmp_path):
    spacy_file = tmp_path / "c.spacy"
    summary = tmp_path / "summary.json"
    result = runner.invoke(app, ["convert", str(FIXTURES / "docs.pubtator"), str(spacy_file),
                                 "--summary-json", str(summary)])
    assert result.exit_code == 0, result.output
    assert "dropped_overlap" in result.output and "docs.pubtator:4" in result.output
    back = tmp_path / "back.pubtator"
    result = runner.invoke(app, ["export", str(spacy_file), str(back), "--format", "pubtator"])
    assert result.exit_code == 0, result.output
    original = {d.id: d for d in read_documents(FIXTURES / "docs.pubtator")}
    exported = list(read_documents(back))
    data = json.loads(summary.read_text())
    assert sum(len(d.mentions) for d in exported) == data["total"]["kept"] + data["total"]["split"]
    for doc in exported:
        source = original[doc.id]
        assert doc.text == source.text
        kept = {(m.start, m.end, m.type) for m in doc.mentions}
        assert kept <= {(m.start, m.end, m.type) for m in source.mentions}
    # the kept mentions are exactly those converted, offsets and types
    from spacy_bioner.corpus.docbin import load_docbin

    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in load_docbin(spacy_file)] == \
        [[(m.start, m.end, m.type) for m in d.mentions] for d in exported]


@pytest.mark.parametrize("fmt", ["bioc", "brat"])
def test_bioc_and_brat_writers_read_back(tmp_path, fmt):
    docs = list(read_documents(FIXTURES / "docs.pubtator"))
    out = tmp_path / ("out.xml" if fmt == "bioc" else "brat")
    assert write_documents(docs, out, fmt) == 2
    again = list(read_documents(out))
    assert [(d.id, d.text, [(m.start, m.end, m.type, m.text) for m in d.mentions]) for d in again] == \
        [(d.id, d.text, [(m.start, m.end, m.type, m.text) for m in d.mentions]) for d in docs]


def test_bioc_writer_keeps_crlf_and_discontinuous(tmp_path):
    doc = StandoffDocument(id="a&b", text="x\r\nLung and liver cancer",
                           mentions=[Mention(start=3, end=24, type="D", text="Lung cancer", segments=((3, 7), (18, 24)))])
    write_documents([doc], tmp_path / "o.xml", "bioc")
    (again,) = read_documents(tmp_path / "o.xml")
    assert again.id == "a&b" and again.text == doc.text and again.mentions[0].segments == ((3, 7), (18, 24))


def test_doc_to_standoff_uses_the_document_id():
    doc = standoff_to_doc(_one("TP53 is here", [(0, 4, "Gene")]), default_tokenizer())
    standoff = doc_to_standoff(doc, default_id="7")
    assert standoff.id == "x" and [(m.start, m.end, m.type) for m in standoff.mentions] == [(0, 4, "Gene")]
    del doc.user_data[USER_DATA_DOCUMENT]
    assert doc_to_standoff(doc, default_id="7").id == "7"


# ---------------------------------------------------------------- CLI
def test_cli_errors_are_one_line(tmp_path):
    result = runner.invoke(app, ["convert", str(FIXTURES / "docs.pubtator"), str(tmp_path / "o.spacy"),
                                 "--alignment", "nope"])
    assert result.exit_code != 0 and "--alignment" in result.output
    (tmp_path / "d.txt").write_text("BRCA1 mutations", encoding="utf8")
    (tmp_path / "d.ann").write_text("T1\tGene 1 6\tBRCA1\n", encoding="utf8")
    result = runner.invoke(app, ["convert", str(tmp_path), str(tmp_path / "o.spacy")])
    assert result.exit_code == 1
    assert "d.ann:1: mention text" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["convert", str(FIXTURES / "docs.pubtator"), str(tmp_path / "o.spacy"),
                                 "--tokenizer", str(tmp_path / "missing")])
    assert result.exit_code == 1 and "--tokenizer" in result.output and "Traceback" not in result.output


def test_cli_label_map_and_formats(tmp_path):
    label_map = tmp_path / "m.json"
    label_map.write_text(json.dumps({"Disease": None}), encoding="utf8")
    out = tmp_path / "o.spacy"
    result = runner.invoke(app, ["convert", str(FIXTURES / "docs.xml"), str(out), "--label-map", str(label_map),
                                 "--format", "bioc", "--alignment", "expand"])
    assert result.exit_code == 0, result.output
    assert "Disease → (dropped)" in result.output
    brat_out = tmp_path / "brat"
    result = runner.invoke(app, ["export", str(out), str(brat_out), "--format", "brat"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in brat_out.iterdir()) == ["100.ann", "100.txt", "200.ann", "200.txt"]


@pytest.mark.slow
def test_cellfinder_summary_adds_up_to_5898(tmp_path):
    corpus = require_shared(CORPORA / "CellFinder-brat")
    docs, summary = _convert(corpus)
    total = summary["total"]
    assert total["documents"] == len(docs) == 10
    assert total["read"] == 5898
    assert sum(v["read"] for v in summary["per_type"].values()) == 5898
    assert total["read"] == sum(total[k] for k in ("kept", "split", "adjusted", "dropped_overlap",
                                                   "dropped_composite", "dropped_discontinuous",
                                                   "dropped_label", "dropped_no_token"))
    assert total["split"] > 0 and total["dropped_overlap"] > 0
    for doc in docs:
        for ent in doc.ents:
            assert ent.sent.start <= ent.start and ent.end <= ent.sent.end
