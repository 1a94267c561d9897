"""The ``spacy-bioner`` command line (also ``python -m spacy_bioner``).

Sub-command modules register themselves on :data:`app` (:mod:`._util`) when imported; they
import spaCy, torch and friends inside the commands, so ``--help`` is instant.
Commands that never touch a model (``LIGHT_COMMANDS``) also keep torch out of
the process: spaCy's thinc imports torch eagerly when it is installed (~1.5 s).
"""
import importlib.abc
import sys
from typing import List, Optional

from ._util import app  # noqa: F401  (the command modules register on it)

#: Commands that read and write corpora and scores only: they run without torch.
LIGHT_COMMANDS = frozenset({"convert", "export", "stats", "score", "assets", "configs", "sweep-report"})


class _NoTorch(importlib.abc.MetaPathFinder):
    """Makes ``import torch`` fail, so thinc records that torch is absent (as it does without it)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (spacy-bioner: not needed by this command)",
                                      name=name)
        return None


def keep_torch_out() -> Optional[_NoTorch]:
    """Block torch imports until :func:`let_torch_in` (light commands only).

    RETURNS (Optional[_NoTorch]): the blocker, or None when torch or thinc is
        already imported (then blocking would change nothing, or hide torch from thinc).
    """
    if {"torch", "thinc", "spacy"} & set(sys.modules):
        return None
    blocker = _NoTorch()
    sys.meta_path.insert(0, blocker)
    return blocker


def let_torch_in(blocker: Optional[_NoTorch]) -> None:
    if blocker is not None and blocker in sys.meta_path:
        sys.meta_path.remove(blocker)


def _command(argv: List[str]) -> Optional[str]:
    return next((a for a in argv if not a.startswith("-")), None)


from . import assets as _assets  # noqa: E402,F401
from . import configs as _configs  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import evaluate as _evaluate  # noqa: E402,F401
from . import huggingface as _huggingface  # noqa: E402,F401
from . import package as _package  # noqa: E402,F401
from . import split as _split  # noqa: E402,F401
from . import annotate as _annotate  # noqa: E402,F401
from . import sweep as _sweep  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the console script (and ``python -m spacy_bioner``).

    A light command runs with torch blocked, in a process that has not imported
    spaCy yet (a fresh CLI process); the blocker is removed when it returns.
    """
    argv = sys.argv[1:] if argv is None else argv
    blocker = keep_torch_out() if _command(argv) in LIGHT_COMMANDS else None
    try:
        app(args=argv, prog_name="spacy-bioner")
    finally:
        let_torch_in(blocker)
