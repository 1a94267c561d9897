"""The ``spacy-bioner`` command line (also ``python -m spacy_bioner``).

Sub-command modules register themselves on :data:`app` when imported; they
import spaCy, torch and friends inside the commands, so ``--help`` is instant.
Commands that never touch a model (``LIGHT_COMMANDS``) also keep torch out of
the process: spaCy's thinc imports torch eagerly when it is installed (~1.5 s).
"""
import importlib.abc
import sys
from typing import List, Optional

import typer

app = typer.Typer(
    name="spacy-bioner",
    help="Biomedical NER with spaCy: convert corpora, fetch assets, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Commands that read and write corpora and scores only: they run without torch.
LIGHT_COMMANDS = frozenset({"convert", "export", "stats", "score", "assets", "configs"})


class _NoTorch(importlib.abc.MetaPathFinder):
    """Makes ``import torch`` fail, so thinc records that torch is absent (as it does without it)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (spacy-bioner: not needed by this command)",
                                      name=name)
        return None


def keep_torch_out() -> None:
    """Block torch imports for the rest of this process (light commands only)."""
    if "torch" not in sys.modules and not any(isinstance(f, _NoTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _NoTorch())


def _command(argv: List[str]) -> Optional[str]:
    return next((a for a in argv if not a.startswith("-")), None)


from . import assets as _assets  # noqa: E402,F401
from . import configs as _configs  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import evaluate as _evaluate  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else argv
    if _command(argv) in LIGHT_COMMANDS:
        keep_torch_out()
    app(args=argv, prog_name="spacy-bioner")
