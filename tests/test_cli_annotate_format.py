"""``annotate`` writes the format OUTPUT's suffix names unless ``--output-format`` says otherwise."""
from pathlib import Path

import pytest

from spacy_bioner.cli.annotate import output_format_of


@pytest.mark.parametrize("name,fmt", [("out.pubtator", "pubtator"), ("out.PubTator.gz", "pubtator"),
                                      ("out.xml", "bioc"), ("out.bioc.xml.gz", "bioc"), ("out.bioc", "bioc"),
                                      ("out.jsonl", "jsonl"), ("out.jsonl.gz", "jsonl"), ("out.txt", "jsonl"),
                                      ("out", "jsonl")])
def test_output_format_follows_the_suffix(name, fmt):
    assert output_format_of(Path(name)) == fmt
