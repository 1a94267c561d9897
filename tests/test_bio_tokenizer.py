"""The biomedical tokenizer (``spacy_bioner.BioTokenizer.v1``) and the raw-text sentence splitter."""
import subprocess
import sys

import pytest
import spacy

from spacy_bioner.corpus.sentences import sentence_offsets, sentence_starts, set_sentence_starts
from spacy_bioner.corpus.tokenizer import create_bio_tokenizer

from .conftest import CORPORA, PROJECT, require_shared

TEXT = "Selegiline-induced hypotension in TP53/BRCA1 carriers (IL-2, p<0.05; 50mg 3beta), e.g. E. coli."
TOKENS = ["Selegiline", "-", "induced", "hypotension", "in", "TP53", "/", "BRCA1", "carriers", "(", "IL", "-",
          "2", ",", "p", "<", "0", ".", "05", ";", "50mg", "3beta", ")", ",", "e", ".", "g", ".", "E", ".",
          "coli", "."]
CONFIG = {"nlp": {"tokenizer": {"@tokenizers": "spacy_bioner.BioTokenizer.v1"}}}


def words(nlp, text):
    return [t.text for t in nlp(text)]


@pytest.fixture(scope="module")
def bio():
    return spacy.blank("en", config=CONFIG)


def test_splits_like_the_corpora(bio):
    assert words(bio, TEXT) == TOKENS
    # spaCy's English tokenizer does not (the reason for this one)
    assert words(spacy.blank("en"), TEXT) != TOKENS


@pytest.mark.parametrize("text,expected", [
    ("Crohn's", ["Crohn", "'", "s"]),
    ("cannot", ["cannot"]),  # spaCy English: can not; the corpora keep the word
    ("Id proteins", ["Id", "proteins"]),  # spaCy English: I d
    ("B.cereus and http://x.org/a", ["B", ".", "cereus", "and", "http", ":", "/", "/", "x", ".", "org", "/", "a"]),
    ("a...b --", ["a", ".", ".", ".", "b", "-", "-"]),
    ("x_y 5°C", ["x", "_", "y", "5", "°", "C"]),
    # invisible format characters are never a token of their own
    ("Selegi\u00adline-induced .\u200b", ["Selegi\u00adline", "-", "induced", ".\u200b"]),
])
def test_every_punctuation_character_is_a_token(bio, text, expected):
    assert words(bio, text) == expected


def test_registered_function_returns_the_factory():
    make = spacy.registry.tokenizers.get("spacy_bioner.BioTokenizer.v1")()
    assert make is create_bio_tokenizer


def test_tokenizer_round_trip(bio, tmp_path):
    """A saved pipeline keeps the rules (to_disk/from_disk, to_bytes/from_bytes), and ``spacy.load`` in a
    fresh process resolves the tokenizer through the entry point."""
    bio.to_disk(tmp_path / "nlp")
    assert words(spacy.load(tmp_path / "nlp"), TEXT) == TOKENS
    fresh = spacy.blank("en")
    fresh.tokenizer.from_bytes(bio.tokenizer.to_bytes())
    assert words(fresh, TEXT) == TOKENS
    code = ("import json, sys, spacy; nlp = spacy.load(sys.argv[1]); "
            "print(json.dumps([t.text for t in nlp(sys.argv[2])]))")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "nlp"), TEXT],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == __import__("json").dumps(TOKENS)


def test_reproduces_ncbi_disease_sentences(bio):
    """The NCBI-disease test sentences, joined back to text, are split exactly as the corpus split them."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_tokenizer", PROJECT / "benchmarks" / "bench_tokenizer.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    path = require_shared(CORPORA / "MTL-NCBI-disease-IOB" / "test.tsv")
    for n, sentence in enumerate(bench.read_sentences(path)):
        text, _ = bench.detokenize(sentence)
        assert words(bio, text) == sentence, text
        if n == 300:
            break


# --- sentences of raw text ---------------------------------------------------------------------------

RAW = ("Selegiline-induced hypotension (Fig. 1) was seen, e.g. in E. coli and S. cerevisiae (Smith et al. "
       "2005). P < 0.05 was used! Next one?  Yes.\nTitle line\nApprox. 5 mg. Mr. X came.")


def texts(text, spans):
    return [text[a:b] for a, b in spans]


def test_sentence_offsets_guard_abbreviations():
    assert texts(RAW, sentence_offsets(RAW)) == [
        "Selegiline-induced hypotension (Fig. 1) was seen, e.g. in E. coli and S. cerevisiae (Smith et al. 2005).",
        "P < 0.05 was used!", "Next one?", "Yes.", "Title line", "Approx. 5 mg.", "Mr. X came."]


def test_no_boundary_inside_a_mention():
    start = RAW.index("used!")
    mention = (start, RAW.index("Next") + 4)
    spans = sentence_offsets(RAW, mentions=[mention])
    assert texts(RAW, spans)[1] == "P < 0.05 was used! Next one?"
    assert not any(a < s < b for s in (span[0] for span in spans) for a, b in [mention])


def test_forced_starts_and_line_breaks():
    text = "A title without a period The abstract starts here. It goes on."
    assert len(sentence_offsets(text)) == 2
    spans = sentence_offsets(text, starts=[text.index("The")])
    assert texts(text, spans) == ["A title without a period", "The abstract starts here.", "It goes on."]
    assert len(sentence_offsets("One line\nanother line", line_breaks=False)) == 1
    assert len(sentence_offsets("One line\nanother line")) == 2


def test_set_sentence_starts_on_a_doc(bio):
    doc = set_sentence_starts(bio.make_doc("First one.  Second one. third"), mentions=[])
    assert [s.text for s in doc.sents] == ["First one.  ", "Second one. third"]
    assert sentence_starts(bio.make_doc("")) == []


@pytest.mark.parametrize("name", ["transformer.cfg", "tok2vec.cfg"])
def test_shipped_configs_use_the_biomedical_tokenizer(name):
    """Train as you predict: every shipped config's pipeline splits raw text as the corpora are split."""
    from spacy.util import load_config

    config = load_config(PROJECT / "spacy_bioner" / "configs" / name)
    assert config["nlp"]["tokenizer"] == {"@tokenizers": "spacy_bioner.BioTokenizer.v1"}
    nlp = spacy.blank("en", config={"nlp": {"tokenizer": config["nlp"]["tokenizer"]}})
    assert words(nlp, TEXT) == TOKENS


def test_every_shipped_config_sets_a_tokenizer():
    """Backbone, head and adversarial files are merged into transformer.cfg and must not undo its tokenizer."""
    for path in sorted((PROJECT / "spacy_bioner" / "configs").rglob("*.cfg")):
        text = path.read_text(encoding="utf8")
        if path.parent.name == "configs":
            assert "spacy_bioner.BioTokenizer.v1" in text, path
        else:
            assert "@tokenizers" not in text, path
