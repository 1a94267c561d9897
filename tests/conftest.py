from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
SHARED = PROJECT.parent / "shared"
CORPORA = SHARED / "corpora"
MODELS = SHARED / "models"


def require_shared(path: Path) -> Path:
    """Skip (with the reason) when the real data beside the project is absent."""
    if not path.exists():
        pytest.skip(f"{path} not found: real-data tests need ../shared beside the project")
    return path


TRAIN = (
    "BRCA1\tB-Gene\nmutations\tO\ncause\tO\nhereditary\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n\n"
    "TP53\tB-Gene\nis\tO\nmutated\tO\nin\tO\novarian\tB-Disease\ncarcinoma\tI-Disease\n.\tO\n\n"
)


@pytest.fixture(scope="session")
def fresh_venv(tmp_path_factory):
    """A venv without the project, with the CPU build of torch (as `make` installs it first), shared by the
    wheel-install tests: ``(python, pip install command, env without the checkout)``."""
    import os
    import subprocess
    import sys

    venv = tmp_path_factory.mktemp("fresh_venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--no-compile"]  # no .pyc: faster
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(pip + ["torch==2.13.0"], check=True, env=env, cwd=venv)
    return venv, pip, env


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Tiny random-init backbones of each tokenizer family (built offline, once per session)."""
    from .tiny_models import FAMILIES, build_tiny_backbone

    root = tmp_path_factory.mktemp("backbones")
    return {family: build_tiny_backbone(family, root / family, max_length=1024 if family == "gpt2" else 512)
            for family in FAMILIES}


@pytest.fixture(scope="session")
def train_file(tmp_path_factory):
    """Two annotated sentences (Gene, Disease) as a 2-column TSV."""
    path = tmp_path_factory.mktemp("data") / "train.tsv"
    path.write_text(TRAIN, encoding="utf8")
    return path


@pytest.fixture
def corpora_dir() -> Path:
    return require_shared(CORPORA)


@pytest.fixture
def write(tmp_path):
    """Write text (or bytes) to a file in tmp_path and return its path."""

    def _write(content, name: str = "input.tsv") -> Path:
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf8", newline="")
        return path

    return _write
