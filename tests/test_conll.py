import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spacy_bioner.corpus.conll import read_docs, read_documents, write_docs
from spacy_bioner.corpus.docbin import load_docbin, save_docbin
from spacy_bioner.errors import CorpusFormatError
from spacy_bioner.corpus.schemes import encode
from spacy_bioner.types import ConversionStats


def ents(doc):
    return [(e.start, e.end, e.label_) for e in doc.ents]


def export(docs, scheme="iob2", untyped=None):
    buf = io.StringIO()
    write_docs(docs, buf, scheme=scheme, untyped=untyped)
    return buf.getvalue()


TWO_SENTS = "BRCA1\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n\nIt\tO\nis\tO\nrare\tO\n.\tO\n\n"


def test_two_column_tsv_sentences_and_entities(write):
    stats = ConversionStats()
    docs = read_docs(write(TWO_SENTS), stats=stats)
    assert len(docs) == 2  # one Doc per sentence without -DOCSTART-
    assert [t.text for t in docs[0]] == ["BRCA1", "mutations", "cause", "breast", "cancer", "."]
    assert ents(docs[0]) == [(0, 1, "Gene"), (3, 5, "Disease")]
    assert (stats.documents, stats.sentences, stats.tokens) == (2, 2, 10)
    assert dict(stats.entities) == {"Gene": 1, "Disease": 1}
    assert export(docs) == TWO_SENTS


def test_n_sents_groups_and_keeps_sentence_starts(write):
    docs = read_docs(write(TWO_SENTS), n_sents=10)
    assert len(docs) == 1
    assert [s.text for s in docs[0].sents] == ["BRCA1 mutations cause breast cancer .", "It is rare ."]
    assert export(docs) == TWO_SENTS


def test_docstart_documents_round_trip(write):
    text = "-DOCSTART-\tO\n\nA\tB-X\n\nB\tO\n\n-DOCSTART-\tO\n\nC\tO\n\n"
    stats = ConversionStats()
    docs = read_docs(write(text), stats=stats)
    assert [len(list(d.sents)) for d in docs] == [2, 1]
    assert stats.documents == 2 and stats.sentences == 3
    assert export(docs) == text


def test_docstart_without_blank_line_and_empty_document(write):
    text = "-DOCSTART- -X- -X- O\n-DOCSTART- -X- -X- O\nA -X- -X- B-X\nB -X- -X- O\n"
    stats = ConversionStats()
    docs = read_docs(write(text), stats=stats)
    assert len(docs) == 1 and stats.empty_documents == 1
    assert ents(docs[0]) == [(0, 1, "X")]


def test_conll_multi_column_token_first_tag_last(write):
    text = "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n"
    docs = read_docs(write(text))
    assert [t.text for t in docs[0]] == ["EU", "rejects", "German"]
    assert ents(docs[0]) == [(0, 1, "ORG"), (2, 3, "MISC")]


def test_four_column_offsets_give_whitespace(write):
    text = "IL-2\t0\t4\tB-protein\ngene\t5\t9\tI-protein\n(\t10\t11\tO\nhuman\t11\t16\tO\n)\t16\t17\tO\n\n"
    docs = read_docs(write(text))
    assert docs[0].text == "IL-2 gene (human)"
    assert ents(docs[0]) == [(0, 2, "protein")]


def test_four_column_offsets_must_be_integers(write):
    text = "IL-2\t0\t4\tB-protein\ngene\t5\tx\tI-protein\n\n"
    with pytest.raises(CorpusFormatError, match=r"input.tsv:2: expected integer character offsets"):
        read_docs(write(text))


def test_iob1_file_keeps_touching_entities_apart(write):
    text = "a\tI-X\nb\tI-X\nc\tB-X\nd\tO\ne\tI-Y\n\n"
    stats = ConversionStats()
    docs = read_docs(write(text), stats=stats)
    assert stats.scheme == "iob1" and not stats.repairs
    assert ents(docs[0]) == [(0, 2, "X"), (2, 3, "X"), (4, 5, "Y")]
    assert export(docs, scheme="iob1") == text
    assert export(docs, scheme="iob2") == "a\tB-X\nb\tI-X\nc\tB-X\nd\tO\ne\tB-Y\n\n"


@pytest.mark.parametrize("scheme", ["bioes", "bilou"])
def test_bioes_and_bilou_round_trip(write, scheme):
    s, e = ("U", "L") if scheme == "bilou" else ("S", "E")
    text = f"a\t{s}-X\nb\tB-Y\nc\tI-Y\nd\t{e}-Y\ne\tO\n\n"
    stats = ConversionStats()
    docs = read_docs(write(text), stats=stats)
    assert ents(docs[0]) == [(0, 1, "X"), (1, 4, "Y")]
    assert export(docs, scheme=scheme) == text


def test_untyped_tags_use_label_and_export_bare(write):
    text = "Methanoregula\tB\nformicica\tI\nsp\tO\n\n"
    stats = ConversionStats()
    docs = read_docs(write(text), untyped_label="SPECIES", stats=stats)
    assert ents(docs[0]) == [(0, 2, "SPECIES")]
    assert stats.untyped_label == "SPECIES"
    assert export(docs) == text
    assert export(docs, untyped=False) == "Methanoregula\tB-SPECIES\nformicica\tI-SPECIES\nsp\tO\n\n"


def test_untyped_marker_survives_docbin(write, tmp_path):
    docs = read_docs(write("a\tB\nb\tO\n\n"))
    save_docbin(docs, tmp_path / "x.spacy")
    assert export(load_docbin(tmp_path / "x.spacy")) == "a\tB\nb\tO\n\n"


def test_zero_for_o(write):
    docs = read_docs(write("The\t0\nGP\tB-GP\nbinds\t0\n\n"))
    assert ents(docs[0]) == [(1, 2, "GP")]
    assert export(docs) == "The\tO\nGP\tB-GP\nbinds\tO\n\n"


def test_hash_lines_are_tokens(write):
    docs = read_docs(write("#\tB-GENE\n# comment-like\tI-GENE\nx\tO\n\n"))
    assert [t.text for t in docs[0]] == ["#", "# comment-like", "x"]
    assert ents(docs[0]) == [(0, 2, "GENE")]


def test_crlf_no_final_blank_line_and_bom(write):
    docs = read_docs(write("\ufeffa\tB-X\r\nb\tO\r\n\r\nc\tO".encode("utf8")))
    assert [[t.text for t in d] for d in docs] == [["a", "b"], ["c"]]
    assert [t.text for t in docs[0]][0] == "a"


def test_multiple_blank_lines_and_whitespace_only_lines(write):
    docs = read_docs(write("\n\na\tO\n\n\n   \nb\tO\n"))
    assert [[t.text for t in d] for d in docs] == [["a"], ["b"]]


def test_spanish_non_ascii(write, tmp_path):
    text = "Los\tO\nhallazgos\tO\nanalíticos\tO\ncalcitonina\tB-PROTEINAS\nniño\tO\n\n"
    docs = read_docs(write(text))
    save_docbin(docs, tmp_path / "es.spacy")
    assert export(load_docbin(tmp_path / "es.spacy")) == text


def test_repair_counted_and_strict_error(write):
    path = write("a\tO\nb\tI-X\nc\tI-Y\n\n")
    stats = ConversionStats()
    docs = read_docs(path, scheme="iob2", stats=stats)
    assert ents(docs[0]) == [(1, 2, "X"), (2, 3, "Y")]
    assert stats.repairs == {"I- opening an entity": 2}
    with pytest.raises(CorpusFormatError, match=r"input.tsv:2: I-X after O: .*--strict"):
        read_docs(path, scheme="iob2", strict=True)


def test_bioes_unterminated_is_repair_and_strict_error(write):
    path = write("a\tB-X\nb\tO\n\n")
    stats = ConversionStats()
    docs = read_docs(path, scheme="bioes", stats=stats)
    assert ents(docs[0]) == [(0, 1, "X")]
    assert stats.repairs == {"entity not closed by E-/S-": 1}
    with pytest.raises(CorpusFormatError, match=r":1: B-X ends the entity"):
        read_docs(path, scheme="bioes", strict=True)


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("a\tO\nb\tO\tx\n\n", 2, "expected 2 TAB-separated columns"),
        ("a\tO\nb\n\n", 2, "expected 2 TAB-separated columns"),
        ("lonely\n", 1, "expected at least 2 columns"),
        ("a\tO\n\tB-X\n\n", 2, "empty token"),
        ("a\tO\n \tB-X\n\n", 2, "empty token"),
        ("a\tO\n\nb\tB-X\nc\tGENE\n\n", 4, "invalid tag 'GENE'"),
        ("a\tO\nb\tb-x\n\n", 2, "invalid tag 'b-x'"),
        ("a O\nb O extra\n\n", 2, "expected 2 whitespace-separated columns"),
        ("a\tB-X\nb\tE-X\n\n", 2, "not part of scheme iob2"),
    ],
)
def test_bad_input_names_file_and_line(write, text, line, message):
    scheme = "iob2" if "E-X" in text else "auto"
    with pytest.raises(CorpusFormatError) as err:
        read_docs(write(text), scheme=scheme)
    assert f"input.tsv:{line}: " in str(err.value)
    assert message in str(err.value)
    assert err.value.line == line


def test_invalid_utf8_names_line(write):
    with pytest.raises(CorpusFormatError, match=r"input.tsv:2: invalid UTF-8 \(byte 0xe9 at column 3\)"):
        read_docs(write(b"ok\tO\nna\xefve\tO\n\n".replace(b"\xef", b"\xe9")))


def test_empty_file_gives_no_docs(write):
    assert read_docs(write("")) == []
    assert read_documents(write("\n\n"))[0].sentences == []


def test_long_document_kept_whole(write):
    n = 100_000
    lines = "".join(f"w{i}\t{'B-X' if i % 7 == 0 else 'O'}\n" for i in range(n))
    docs = read_docs(write("-DOCSTART-\tO\n\n" + lines + "\n"))
    assert len(docs) == 1 and len(docs[0]) == n
    assert len(docs[0].ents) == len(range(0, n, 7))


@st.composite
def corpora(draw):
    """Random documents of sentences with random entities, as token/tag lines."""
    sents = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, 12))
        spans, i = [], 0
        while i < n:
            if draw(st.booleans()):
                k = draw(st.integers(1, min(3, n - i)))
                spans.append((i, i + k, draw(st.sampled_from(["Gene", "Disease", "cell_type"]))))
                i += k
            else:
                i += 1
        words = draw(st.lists(st.text(alphabet="abcXYZé#-0.()", min_size=1, max_size=6), min_size=n, max_size=n))
        sents.append((words, spans))
    return sents


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(corpora(), st.sampled_from(["iob1", "iob2", "bioes", "bilou"]), st.sampled_from([0, 1, 3]))
def test_files_in_any_scheme_survive_convert_and_export(write, tmp_path, sents, scheme, n_sents):
    text = "".join(
        "".join(f"{w}\t{t}\n" for w, t in zip(words, encode(spans, len(words), scheme=scheme))) + "\n"
        for words, spans in sents
    )
    stats = ConversionStats()
    docs = read_docs(write(text, f"c_{scheme}.tsv"), n_sents=n_sents, stats=stats)
    assert not stats.repairs
    save_docbin(docs, tmp_path / "c.spacy")
    assert export(load_docbin(tmp_path / "c.spacy"), scheme=scheme) == text


def doc_summary(docs):
    return [([t.text for t in d], ents(d), [s.text for s in d.sents]) for d in docs]


def assert_export_round_trips(docs, write):
    """Exported TSV reads back into the same documents, tokens, sentences and entities."""
    text = export(docs)
    again = read_docs(write(text, "again.tsv"))
    assert doc_summary(again) == doc_summary(docs)
    assert export(again) == text


BARE_DOCSTART_TSV = (
    "-DOCSTART-\n\nBRCA1\tB-Gene\nmutations\tO\n\ncause\tO\ncancer\tB-Disease\n\n"
    "-DOCSTART-\n\nTP53\tB-Gene\nbinds\tO\nDNA\tO\n\n"
)


def test_bare_docstart_in_two_column_tsv(write):
    stats = ConversionStats()
    docs = read_docs(write(BARE_DOCSTART_TSV), stats=stats)
    assert len(docs) == 2 and stats.documents == 2 and stats.empty_documents == 0
    assert [len(list(d.sents)) for d in docs] == [2, 1]
    assert (stats.sentences, stats.tokens) == (3, 7)
    assert [ents(d) for d in docs] == [[(0, 1, "Gene"), (3, 4, "Disease")], [(0, 1, "Gene")]]
    assert dict(stats.entities) == {"Gene": 2, "Disease": 1}
    assert all(not any(t.text == "-DOCSTART-" for t in d) for d in docs)
    assert_export_round_trips(docs, write)
    assert export(docs) == BARE_DOCSTART_TSV.replace("-DOCSTART-\n", "-DOCSTART-\tO\n")


def test_bare_docstart_without_blank_lines_and_at_end(write):
    text = "-DOCSTART-\na\tB-X\nb\tO\n-DOCSTART-\nc\tO\n-DOCSTART-\n"
    stats = ConversionStats()
    docs = read_docs(write(text), stats=stats)
    assert [[t.text for t in d] for d in docs] == [["a", "b"], ["c"]]
    assert stats.empty_documents == 1 and stats.tokens == 3
    assert ents(docs[0]) == [(0, 1, "X")]


def test_four_field_docstart_in_two_column_file(write):
    """``-DOCSTART- -X- O O`` first must not make the file a 4-column one."""
    text = (
        "-DOCSTART- -X- O O\n\nIL-2 B-protein\ngene I-protein\nbinds O\n\n"
        "-DOCSTART- -X- O O\n\nNF-kB B-protein\n. O\n\n"
    )
    stats = ConversionStats()
    docs = read_docs(write(text, "input.iob2"), stats=stats)
    assert len(docs) == 2 and (stats.sentences, stats.tokens) == (2, 5)
    assert [[t.text for t in d] for d in docs] == [["IL-2", "gene", "binds"], ["NF-kB", "."]]
    assert [ents(d) for d in docs] == [[(0, 2, "protein")], [(0, 1, "protein")]]
    assert_export_round_trips(docs, write)


@pytest.mark.parametrize("lead", [True, False], ids=["docstart-first", "tokens-first"])
@pytest.mark.parametrize("sep", [" ", "\t"], ids=["space", "tab"])
@pytest.mark.parametrize("docstart", ["-DOCSTART- -X- O O", "-DOCSTART-", "-DOCSTART- -X- -X- O"])
def test_docstart_any_width_in_four_column_conll(write, sep, docstart, lead):
    """word POS chunk tag, with ``-DOCSTART-`` lines of any width, always space-separated
    (as exports write them), first in the file or only between documents."""
    rows1 = [("EU", "NNP", "B-NP", "B-ORG"), ("rejects", "VBZ", "B-VP", "O"), ("German", "JJ", "B-NP", "B-MISC")]
    rows2 = [("Peter", "NNP", "B-NP", "B-PER"), ("Blackburn", "NNP", "I-NP", "I-PER")]
    rows3 = [("BRUSSELS", "NNP", "B-NP", "B-LOC"), ("1996-08-22", "CD", "I-NP", "O")]

    def block(rows):
        return "".join(sep.join(r) + "\n" for r in rows) + "\n"

    text = f"{docstart}\n\n" if lead else ""
    text += f"{block(rows1)}{block(rows2)}{docstart}\n\n{block(rows3)}"
    stats = ConversionStats()
    docs = read_docs(write(text, "input.conll"), stats=stats)
    assert stats.empty_documents == 0 and (stats.sentences, stats.tokens) == (3, 7)
    if lead:
        assert [t.text for t in docs[0]] == ["EU", "rejects", "German", "Peter", "Blackburn"]
        assert [ents(d) for d in docs] == [[(0, 1, "ORG"), (2, 3, "MISC"), (3, 5, "PER")], [(0, 1, "LOC")]]
    else:  # sentences before the first -DOCSTART- are one document each, as in a file without any
        assert [t.text for t in docs[0]] == ["EU", "rejects", "German"]
        assert [ents(d) for d in docs] == [[(0, 1, "ORG"), (2, 3, "MISC")], [(0, 2, "PER")], [(0, 1, "LOC")]]
    assert [t.text for t in docs[-1]] == ["BRUSSELS", "1996-08-22"]
    assert_export_round_trips(docs, write)
