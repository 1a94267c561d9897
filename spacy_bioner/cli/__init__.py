"""The ``spacy-bioner`` command line (also ``python -m spacy_bioner``)."""
import typer

app = typer.Typer(
    name="spacy-bioner",
    help="Biomedical NER with spaCy: convert corpora, fetch assets, train, evaluate.",
    no_args_is_help=True,
    add_completion=False,
)

# Sub-command modules register themselves on ``app`` when imported.
from . import assets as _assets  # noqa: E402,F401
from . import convert as _convert  # noqa: E402,F401
from . import evaluate as _evaluate  # noqa: E402,F401
from . import train as _train  # noqa: E402,F401


def main() -> None:
    app()
