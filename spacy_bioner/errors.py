"""Errors raised for bad input, each naming where the problem is."""
from pathlib import Path
from typing import Optional, Union


class CorpusFormatError(ValueError):
    """A token-per-line corpus file could not be read.

    The message always starts with ``file:line`` so editors and terminals can
    jump to the offending line.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Union[str, Path, None] = None,
        line: Optional[int] = None,
        text: Optional[str] = None,
    ) -> None:
        self.path = str(path) if path is not None else "<input>"
        self.line = line
        self.text = text
        self.reason = message
        where = self.path if line is None else f"{self.path}:{line}"
        shown = "" if text is None else f": {text[:200]!r}"
        super().__init__(f"{where}: {message}{shown}")


class BackboneNotFoundError(OSError):
    """A transformer backbone could not be found locally or on the hub."""


class ConfigNotFoundError(FileNotFoundError):
    """A config file is neither a path nor the name of one shipped with the package."""


class GPUUnavailableError(RuntimeError):
    """``--gpu-id N`` was asked for but this machine cannot run on that GPU."""


class ModelLoadError(OSError):
    """A trained pipeline could not be loaded (missing folder, not a pipeline…)."""


class ConfigValueError(ValueError):
    """A setting in the config (or on the command line) has a value that cannot work."""


class CorpusConfigError(ValueError):
    """The config's corpus is not usable: no path set, or no examples in it."""


class PackagingError(RuntimeError):
    """Building a wheel failed (``spacy package``, ``pip wheel``) or wrote no wheel; says why in one line."""


def config_problem(err: Exception) -> str:
    """One line saying what is wrong in a config (confection's errors span many lines).

    err (Exception): a ``confection.ConfigValidationError`` or any config error.
    """
    problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', []))}: {e.get('msg')}"
                         for e in (getattr(err, "errors", None) or []))
    text = problems or str(getattr(err, "desc", None) or err)
    text = text.replace("Make sure the sections and values are formatted correctly.", "")
    title = getattr(err, "title", None)
    text = f"{title}: {text}" if title and problems else text
    return " ".join(text.split())[:400]
