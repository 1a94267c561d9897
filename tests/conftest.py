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
