"""Works when installed, not only in a clone: the configs ship inside the wheel
and `train`/`config` find them by name."""
import os
import re
import subprocess
import sys
import zipfile

import pytest

from spacy_bioner.errors import ConfigNotFoundError
from spacy_bioner.training.config import CONFIG_DIR, packaged_configs, resolve_config_path

from .conftest import PROJECT


def test_names_resolve_to_shipped_configs_and_paths_still_work():
    assert resolve_config_path("transformer") == CONFIG_DIR / "transformer.cfg"
    assert resolve_config_path("minilm", kind="backbone") == CONFIG_DIR / "backbones" / "minilm.cfg"
    assert resolve_config_path("configs/backbones/biobert.cfg", kind="backbone").name == "biobert.cfg"
    clone_path = PROJECT / "configs" / "transformer.cfg"
    assert resolve_config_path(clone_path) == clone_path  # the clone's path keeps working
    with pytest.raises(ConfigNotFoundError, match="minilm, "):
        resolve_config_path("no-such-backbone", kind="backbone")
    assert {p.stem for p in packaged_configs()["backbone"]} >= {"minilm", "biobert", "gpt2", "roberta-base"}


@pytest.mark.slow
def test_wheel_ships_configs_and_installed_copy_finds_them(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(PROJECT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("spacy_bioner-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "spacy_bioner/configs/transformer.cfg" in names and "spacy_bioner/configs/tok2vec.cfg" in names
    assert "spacy_bioner/configs/backbones/minilm.cfg" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(tmp_path / "site"),
                    str(wheel)], check=True, capture_output=True)
    code = ("import spacy_bioner, sys; from spacy_bioner.training.config import build_config; "
            "c = build_config('transformer', backbone='minilm'); "
            "print(spacy_bioner.__file__); print(c['paths']['backbone'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"}, check=True).stdout
    assert out.splitlines()[0].startswith(str(tmp_path / "site"))  # the installed copy, not the clone
    assert out.splitlines()[1] == "sentence-transformers/all-MiniLM-L6-v2"
    listing = subprocess.run([sys.executable, "-m", "spacy_bioner", "configs"], capture_output=True, text=True,
                             cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert listing.returncode == 0 and "minilm" in listing.stdout and str(tmp_path / "site") in listing.stdout


def setuptools_warnings(output: str) -> list:
    """Lines of a build's output that are setuptools warnings (not the byte-compiling notes that
    ``PYTHONDONTWRITEBYTECODE`` causes, nor pip's own notes about its configuration)."""
    python_warning = re.compile(r"^\S+\.py:\d+: \w+: ")  # path.py:123: Category: message (any category)
    return [line for line in output.splitlines()
            if (python_warning.match(line) or "warn" in line.lower() or "would be ignored" in line.lower())
            and "byte-compiling is disabled" not in line]


@pytest.mark.slow
@pytest.mark.parametrize("hook", ["build_wheel", "build_editable"])
def test_building_prints_no_setuptools_warnings(tmp_path, hook):
    """``python -m build`` and ``pip install -e .`` call these hooks; setuptools' warnings (a data folder
    "would be ignored", the editable finder's notice) come out as Python warnings, all shown here."""
    code = (f"from setuptools import build_meta; print(build_meta.{hook}({str(tmp_path)!r}))")
    extra = tmp_path / "extra.cfg"  # build/ under tmp_path: the clone's own build/ is left alone
    extra.write_text(f"[build]\nbuild_base = {tmp_path / 'build'}\n", encoding="utf8")
    proc = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=PROJECT, capture_output=True, text=True,
                          env={**os.environ, "DIST_EXTRA_CONFIG": str(extra)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert setuptools_warnings(proc.stdout + proc.stderr) == []
    if hook == "build_wheel":
        names = set(zipfile.ZipFile(tmp_path / proc.stdout.strip().splitlines()[-1]).namelist())
        assert {"spacy_bioner/configs/heads/tagger.cfg", "spacy_bioner/configs/sweeps/ncbi.yml"} <= names
