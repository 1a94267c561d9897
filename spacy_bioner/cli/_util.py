"""Shared helpers for the CLI: the typer app, known errors as one clear line, and config overrides."""
import contextlib
from typing import Any, Dict, Iterator, List

import typer

from ..errors import (BackboneNotFoundError, ConfigNotFoundError, ConfigValueError, CorpusConfigError,
                      CorpusFormatError, GPUUnavailableError, ModelLoadError, PackagingError, config_problem)

#: The ``spacy-bioner`` command; each command module registers its commands on it.
app = typer.Typer(
    name="spacy-bioner",
    help="Biomedical NER with spaCy: convert corpora, fetch assets, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Errors that mean "bad input": shown as one line, exit code 1.
INPUT_ERRORS = (CorpusFormatError, CorpusConfigError, BackboneNotFoundError, ConfigNotFoundError,
                FileNotFoundError, GPUUnavailableError, ModelLoadError, ConfigValueError, PackagingError)
#: Let a command take ``--section.key value`` options it does not declare.
EXTRA_ARGS = {"allow_extra_args": True, "ignore_unknown_options": True}


def fail(message: str) -> None:
    """Print ``✘ message`` to stderr and exit 1."""
    typer.secho(f"✘ {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(1)


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Print known input errors as one line and exit 1, without a traceback."""
    from confection import ConfigValidationError

    try:
        yield
    except INPUT_ERRORS as err:
        # One unwrapped line, so editors and terminals can jump to file:line.
        fail(" ".join(str(err).split("\n")))
    except ConfigValidationError as err:
        fail(f"invalid config: {config_problem(err)}")


def config_overrides(args: List[str]) -> Dict[str, Any]:
    """``--section.key value`` pairs as a dict of dotted keys (spaCy's own parser)."""
    from spacy.cli._util import parse_config_overrides

    try:
        return parse_config_overrides(args)
    except SystemExit:  # spaCy's parser exits with its own message on a malformed option
        raise typer.Exit(1)
