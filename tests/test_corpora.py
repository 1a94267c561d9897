"""Every real corpus in ../shared/corpora: counts equal SOURCES.md, and
convert → DocBin → export reproduces the file."""
import io
import re
from collections import Counter

import pytest

from spacy_bioner.corpus.conll import read_docs, write_docs
from spacy_bioner.corpus.docbin import load_docbin, save_docbin
from spacy_bioner.types import ConversionStats

from .conftest import CORPORA

pytestmark = pytest.mark.slow


def sources_counts():
    """Per-split rows of SOURCES.md §3: {(corpus, file): (sents, tokens, ents, {type: n})}."""
    path = CORPORA / "SOURCES.md"
    if not path.exists():
        return {}
    rows = {}
    for line in path.read_text(encoding="utf8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 10 or not cells[3].isdigit() and not cells[3].endswith((".tsv", ".txt")):
            continue
        corpus, _split, file, sents, tokens, n_ents, types = cells[:7]
        if not sents.isdigit():
            continue
        per_type = {m[0]: int(m[1]) for m in re.findall(r"(\S+?|\(untyped\)) (\d+)(?:,|$)", types)}
        rows[(corpus, file)] = (int(sents), int(tokens), int(n_ents), per_type)
    return rows


COUNTS = sources_counts()


def test_sources_table_was_parsed(corpora_dir):
    # 16 MTL folders with 3 splits (MTL-JNLPBA: 2) + 2 BioBERT folders + PharmaCoNER.
    assert len(COUNTS) == 15 * 3 + 2 + 2 * 3 + 3
    standoff = {p.parent for p in corpora_dir.glob("*/*") if p.suffix in (".ann", ".a1")}  # brat: .txt is raw text
    files = {(p.parent.name, p.name) for p in corpora_dir.glob("*/*")
             if p.suffix in (".tsv", ".txt") and p.name != "labels.txt" and p.parent not in standoff}
    assert files == set(COUNTS)


@pytest.mark.parametrize("corpus,file", sorted(COUNTS) or [pytest.param("-", "-", marks=pytest.mark.skip("no ../shared/corpora"))])
def test_corpus_round_trip_and_counts(corpora_dir, tmp_path, corpus, file):
    path = corpora_dir / corpus / file
    stats = ConversionStats()
    docs = read_docs(path, untyped_label="ENTITY", stats=stats)
    sents, tokens, n_ents, per_type = COUNTS[(corpus, file)]
    assert (stats.sentences, stats.tokens, sum(stats.entities.values())) == (sents, tokens, n_ents)
    expected_types = {("ENTITY" if t == "(untyped)" else t): n for t, n in per_type.items()}
    assert dict(stats.entities) == expected_types
    assert not stats.repairs
    # through a DocBin on disk, then back to text in the file's own scheme
    save_docbin(docs, tmp_path / "c.spacy")
    reloaded = load_docbin(tmp_path / "c.spacy")
    assert sum(len(d) for d in reloaded) == tokens
    assert Counter(e.label_ for d in reloaded for e in d.ents) == Counter(expected_types)
    buf = io.StringIO()
    write_docs(reloaded, buf, scheme="bioes" if stats.scheme == "bioes" else "iob2")
    original = path.read_text(encoding="utf8")
    if not original.endswith("\n\n"):  # MTL-NCBI-disease-IOBES has no final blank line
        original += "\n"
    assert buf.getvalue() == original
