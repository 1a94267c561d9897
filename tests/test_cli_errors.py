"""Every CLI error is one line starting with ``✘``, exit code 1, no traceback.

These run the real command line in a subprocess: typer's ``CliRunner`` catches
exceptions itself, so its output never holds a traceback and a test looking for
one there could not fail.
"""
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

GOLD = "BRCA1\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n\n"


def run_cli(args: List[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "spacy_bioner", *map(str, args)], capture_output=True,
                          text=True, encoding="utf-8", cwd=cwd, env=env, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 1, no traceback, and stderr is the one ``✘`` line naming the problem."""
    both = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 1, both
    assert "Traceback" not in proc.stdout + proc.stderr, both
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, both
    assert lines[0].startswith("✘ "), both
    for needle in needles:
        assert needle in lines[0], both
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every kind of bad input, written once."""
    import spacy

    root = tmp_path_factory.mktemp("cli_errors")
    (root / "gold.tsv").write_text(GOLD, encoding="utf8")
    (root / "bad.tsv").write_text("BRCA1\tB-Gene\nmutations\tO\textra\n\n", encoding="utf8")
    (root / "corrupt.spacy").write_bytes(random.Random(0).randbytes(512))
    (root / "empty.spacy").write_bytes(b"")
    (root / "empty.tsv").write_text("", encoding="utf8")
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "Gene", "pattern": "BRCA1"}])
    nlp.to_disk(root / "pipeline")
    (root / "empty_dir").mkdir()
    shutil.copytree(root / "pipeline", root / "garbage_config")
    (root / "garbage_config" / "config.cfg").write_text("this is not [a config\n", encoding="utf8")
    # what `train -o trainout` leaves: config.cfg beside model-best/ and model-last/
    for name in ("model-best", "model-last"):
        shutil.copytree(root / "pipeline", root / "trainout" / name)
    shutil.copy(root / "pipeline" / "config.cfg", root / "trainout" / "config.cfg")
    (root / "trainout" / "run.json").write_text("{}\n", encoding="utf8")
    return root


# (arguments, what the one error line must say); paths are relative to the `files` folder.
CASES = {
    # (a) a model path that does not exist
    "evaluate-missing-model": (["evaluate", "no_such_model", "gold.tsv"],
                               ["no_such_model: no such pipeline folder"]),
    # (b) a folder that is not a pipeline
    "evaluate-empty-folder": (["evaluate", "empty_dir", "gold.tsv"],
                              ["empty_dir: not a spaCy pipeline folder", "no config.cfg"]),
    "evaluate-garbage-config": (["evaluate", "garbage_config", "gold.tsv"],
                                ["config.cfg: not a readable spaCy config"]),
    "evaluate-training-output": (["evaluate", "trainout", "gold.tsv"],
                                 ["trainout: a training output folder", "trainout/model-best"]),
    # (d) corrupt and empty DocBins
    "stats-corrupt": (["stats", "corrupt.spacy"], ["corrupt.spacy: not a readable spaCy DocBin"]),
    "stats-empty": (["stats", "empty.spacy"], ["empty.spacy: empty file, not a spaCy DocBin"]),
    "export-corrupt": (["export", "corrupt.spacy", "out.tsv"], ["corrupt.spacy: not a readable spaCy DocBin"]),
    "export-empty": (["export", "empty.spacy", "out.tsv"], ["empty.spacy: empty file"]),
    "score-corrupt-pred": (["score", "gold.tsv", "corrupt.spacy"], ["corrupt.spacy: not a readable spaCy DocBin"]),
    "score-empty-gold": (["score", "empty.spacy", "gold.tsv"], ["empty.spacy: empty file"]),
    "evaluate-corrupt-data": (["evaluate", "pipeline", "corrupt.spacy"],
                              ["corrupt.spacy: not a readable spaCy DocBin"]),
    # a config file that does not parse, and a training run without its corpus
    "config-unparsable": (["config", "garbage_config/config.cfg", "out.cfg"], ["invalid config"]),
    "train-no-paths-train": (["train", "tok2vec", "-o", "no_paths", "--training.max_epochs", "1",
                              "--training.max_steps", "0"], ["paths.train is not set"]),
    "train-empty-corpus": (["train", "tok2vec", "-o", "empty_corpus", "--paths.train", "empty.tsv",
                            "--paths.dev", "gold.tsv"], ["empty.tsv"]),
    # (e) a malformed corpus line
    "convert-malformed-line": (["convert", "bad.tsv", "out.spacy"],
                               ["bad.tsv:2: expected 2 TAB-separated columns", "'mutations\\tO\\textra'"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_cli_error_is_one_line_without_traceback(case, files):
    args, needles = CASES[case]
    assert_one_line_error(run_cli(args, cwd=files), *needles)
    assert not (files / "out.tsv").exists() and not (files / "out.spacy").exists()


def _gpu_extra_problem() -> str:
    """Skip unless ``--gpu-id 0`` fails here because CuPy (the GPU extra) is missing or sees no GPU."""
    from spacy_bioner.gpu import gpu_problem

    problem = gpu_problem(0) or ""
    if "gpu-cuda12" not in problem:
        pytest.skip(f"this machine can use GPU 0 or lacks something else ({problem or 'nothing'})")
    return problem


def test_evaluate_on_gpu_without_cupy_names_the_extra(files):
    """(c) The GPU check comes before loading the model, so any model path shows it."""
    _gpu_extra_problem()
    line = assert_one_line_error(run_cli(["evaluate", "no_such_model", "gold.tsv", "--gpu-id", "0"], cwd=files),
                                 "--gpu-id 0", "gpu-cuda12", "gpu-cuda13")
    assert "no_such_model" not in line


def test_train_on_gpu_without_cupy_names_the_extra(files):
    """(c) `train` checks the backbone, then the GPU, before spaCy builds anything."""
    from .tiny_models import build_tiny_backbone

    _gpu_extra_problem()
    backbone = build_tiny_backbone("bert", files / "backbone")
    proc = run_cli(["train", "transformer", "-o", "train_gpu", "--gpu-id", "0", "--paths.backbone", backbone,
                    "--paths.train", "gold.tsv", "--paths.dev", "gold.tsv"], cwd=files)
    assert_one_line_error(proc, "--gpu-id 0", "gpu-cuda12", "gpu-cuda13")
    assert not (files / "train_gpu").exists()
