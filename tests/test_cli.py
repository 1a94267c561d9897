import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from spacy_bioner.cli import app
from spacy_bioner.corpus.docbin import load_docbin

from .conftest import PROJECT, require_shared, CORPORA

runner = CliRunner()


def test_convert_then_export(write, tmp_path):
    src = write("BRCA1\tB-Gene\nmutations\tO\n\nIt\tI-Gene\n\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "out.spacy"),
                                 "--summary-json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "sentences" in result.output and "1 tag repairs" in result.output
    summary = json.loads((tmp_path / "s.json").read_text())[str(src)]
    assert summary["tokens"] == 3 and summary["repairs"] == {"I- opening an entity": 1}
    assert len(load_docbin(tmp_path / "out.spacy")) == 2
    result = runner.invoke(app, ["export", str(tmp_path / "out.spacy"), str(tmp_path / "back.tsv")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "back.tsv").read_text() == "BRCA1\tB-Gene\nmutations\tO\n\nIt\tB-Gene\n\n"


def test_convert_directory(tmp_path):
    (tmp_path / "in").mkdir()
    for split in ("train", "dev"):
        (tmp_path / "in" / f"{split}.tsv").write_text("a\tB-X\n\n")
    result = runner.invoke(app, ["convert", str(tmp_path / "in"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dev.spacy", "train.spacy"]


def test_bad_input_is_one_line_not_a_traceback(write, tmp_path):
    src = write("a\tO\nb\tB-X\tx\n\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.spacy")])
    assert result.exit_code == 1
    assert "input.tsv:2: expected 2 TAB-separated columns" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "o.spacy").exists()


def test_strict_flag(write, tmp_path):
    # a B- after O makes the file IOB2 (auto), so the I- after O on line 4 is a violation
    src = write("a\tB-X\nb\tO\n\nc\tO\nd\tI-X\n\n")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.spacy")])
    assert result.exit_code == 0 and "1 tag repairs" in result.output
    result = runner.invoke(app, ["convert", str(src), str(tmp_path / "o.spacy"), "--strict"])
    assert result.exit_code == 1 and "input.tsv:5: I-X after O" in result.output


def test_unknown_scheme_rejected(write, tmp_path):
    result = runner.invoke(app, ["convert", str(write("a\tO\n")), str(tmp_path / "o.spacy"), "--scheme", "bio"])
    assert result.exit_code != 0 and "bio" in result.output


def test_empty_input_converts_with_a_warning(write, tmp_path):
    result = runner.invoke(app, ["convert", str(write("-DOCSTART-\tO\n\n", "empty.tsv")), str(tmp_path / "e.spacy")])
    assert result.exit_code == 0, result.output
    assert "No tokens: the input is empty" in " ".join(result.output.split())
    assert len(load_docbin(tmp_path / "e.spacy")) == 0


def test_missing_input(tmp_path):
    result = runner.invoke(app, ["convert", str(tmp_path / "nope.tsv"), str(tmp_path / "o.spacy")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "spacy_bioner", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "convert" in out.stdout


def test_assets_from_mirror_verify_checksum(tmp_path):
    mirror = tmp_path / "mirror" / "C"
    mirror.mkdir(parents=True)
    (mirror / "train.tsv").write_text("a\tO\n\n")
    import hashlib

    md5 = hashlib.md5(b"a\tO\n\n").hexdigest()
    project = tmp_path / "proj"
    project.mkdir()
    (project / "project.yml").write_text(
        "title: t\nassets:\n"
        f"  - dest: assets/C/train.tsv\n    url: https://example.invalid/train.tsv\n    checksum: {md5}\n"
        "commands: []\n"
    )
    result = runner.invoke(app, ["assets", str(project), "--corpus", "C", "--mirror", str(tmp_path / "mirror")])
    assert result.exit_code == 0, result.output
    assert (project / "assets" / "C" / "train.tsv").read_text() == "a\tO\n\n"
    (mirror / "train.tsv").write_text("tampered\tO\n\n")
    (project / "assets" / "C" / "train.tsv").unlink()
    result = runner.invoke(app, ["assets", str(project), "--corpus", "C", "--mirror", str(tmp_path / "mirror")])
    assert result.exit_code == 1 and "does not match" in result.output


@pytest.mark.slow
def test_spacy_debug_data_runs_clean_on_ncbi(tmp_path):
    src = require_shared(CORPORA / "MTL-NCBI-disease-IOB")
    result = runner.invoke(app, ["convert", str(src), str(tmp_path)])
    assert result.exit_code == 0, result.output
    out = subprocess.run(
        [sys.executable, "-m", "spacy", "debug", "data", str(PROJECT / "configs" / "tok2vec.cfg"),
         "--paths.train", str(tmp_path / "train.spacy"), "--paths.dev", str(tmp_path / "dev.spacy")],
        capture_output=True, text=True, cwd=PROJECT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "✘" not in out.stdout, out.stdout
    assert "5424 training docs" in out.stdout and "923 evaluation docs" in out.stdout
    assert "No entities crossing sentence boundaries" in out.stdout
