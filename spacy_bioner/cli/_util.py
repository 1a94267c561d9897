"""Shared helpers for the CLI: turning known errors into one clear line."""
import contextlib
from typing import Iterator

import typer

from ..errors import BackboneNotFoundError, CorpusFormatError


@contextlib.contextmanager
def friendly_errors() -> Iterator[None]:
    """Print known input errors as one line and exit 1, without a traceback."""
    try:
        yield
    except (CorpusFormatError, BackboneNotFoundError, FileNotFoundError) as err:
        # One unwrapped line, so editors and terminals can jump to file:line.
        typer.secho(f"✘ {err}", err=True, fg=typer.colors.RED)
        raise typer.Exit(1)
