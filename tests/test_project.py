"""project.yml is valid and every command's inputs are real files."""
import re
from pathlib import Path

import pytest
from weasel.util import load_project_config

from .conftest import PROJECT


@pytest.fixture(scope="module")
def project():
    return load_project_config(PROJECT)


def test_deps_and_outputs_are_single_paths(project):
    for cmd in project["commands"]:
        for key in ("deps", "outputs"):
            for path in cmd.get(key, []):
                assert ", " not in path, f"{cmd['name']}.{key}: {path!r} (weasel merged two ${{var}} items)"


def test_source_deps_exist(project):
    for cmd in project["commands"]:
        for dep in cmd.get("deps", []):
            if dep.startswith(("configs/", "scripts/", "spacy_bioner/")) or dep == "project.yml":
                assert (PROJECT / dep).exists(), f"{cmd['name']}: {dep} missing"


def test_demo_workflow_runs_convert_to_package(project):
    demo = project["workflows"]["demo"]
    assert demo[:2] == ["assets", "convert"] and {"train", "evaluate", "package"} <= set(demo)
    commands = {c["name"] for c in project["commands"]}
    assert set(demo) <= commands


def test_gpu_and_seed_only_from_vars():
    text = (PROJECT / "project.yml").read_text()
    scripts = "\n".join(line for line in text.splitlines() if "python -m" in line)
    assert not re.search(r"--gpu-id -?\d", scripts) and not re.search(r"--seed \d", scripts)
    assert "--gpu-id ${vars.gpu_id}" in scripts


def test_assets_have_urls_and_checksums(project):
    for asset in project["assets"]:
        assert asset["url"].startswith("https://raw.githubusercontent.com/")
        assert re.fullmatch(r"[0-9a-f]{32}", asset["checksum"])
        assert Path(asset["dest"]).parts[0] == "assets"


def test_demo_trains_with_the_measured_default(project):
    """Issue 24: FGSM paid on the benchmark, so the project's recipe trains with it (``none`` switches it off)."""
    assert project["vars"]["adversarial"] == "fgsm"
    train = next(c for c in project["commands"] if c["name"] == "train")
    assert any("--adversarial fgsm " in line for line in train["script"])  # the variable, interpolated
    assert "--adversarial ${vars.adversarial}" in (PROJECT / "project.yml").read_text()
