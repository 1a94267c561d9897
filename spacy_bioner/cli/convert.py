"""``convert`` (token-per-line → DocBin) and ``export`` (DocBin → token-per-line)."""
import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..corpus.schemes import DEFAULT_UNTYPED_LABEL, SCHEMES, WRITE_SCHEMES
from ..types import ConversionStats
from ._util import app, friendly_errors


def print_summary(stats: ConversionStats, *, title: str, repairs: bool = True) -> None:
    """Print documents, sentences, tokens, entities per type and (after a conversion) repairs."""
    msg.divider(title)
    rows = [
        ("scheme", stats.scheme),
        ("documents", stats.documents),
        ("sentences", stats.sentences),
        ("tokens", stats.tokens),
        ("entities", sum(stats.entities.values())),
    ]
    if stats.empty_documents:
        rows.append(("empty documents (skipped)", stats.empty_documents))
    if stats.untyped_label:
        rows.append(("bare B/I tags labelled", stats.untyped_label))
    msg.table(rows)
    if not stats.tokens:
        msg.warn("No tokens: the input is empty (or holds only -DOCSTART- lines), so the output has no documents.")
    if stats.entities:
        msg.table(sorted(stats.entities.items(), key=lambda kv: -kv[1]), header=("type", "entities"))
    if not repairs:
        return
    if stats.repairs:
        msg.warn(f"{sum(stats.repairs.values())} tag repairs (use --strict to make them errors):")
        msg.table(sorted(stats.repairs.items()), header=("repair", "count"))
    else:
        msg.good("no repairs needed")


def _check_choice(value: str, choices, option: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(choices)}", param_hint=option)
    return value


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(..., help="Token-per-line file, or a directory of them"),
    output_path: Path = typer.Argument(..., help="Output .spacy file (a directory if INPUT is one)"),
    scheme: str = typer.Option("auto", "--scheme", "-s", help=f"Input tag scheme: {'/'.join(SCHEMES)}"),
    n_sents: int = typer.Option(0, "--n-sents", "-n", help="Sentences per Doc (0: by -DOCSTART-, else one)"),
    untyped_label: str = typer.Option(DEFAULT_UNTYPED_LABEL, "--untyped-label", help="Label for bare B/I tags"),
    strict: bool = typer.Option(False, "--strict", help="Scheme violations are errors, not repairs"),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Also write the summary as JSON"),
) -> None:
    """Convert IOB1/IOB2/BIOES/BILOU token-per-line corpora to spaCy DocBins."""
    from ..corpus.conll import corpus_files, read_docs
    from ..corpus.docbin import save_docbin

    _check_choice(scheme, SCHEMES, "--scheme")
    with friendly_errors():
        files = corpus_files(input_path)
        many = input_path.is_dir()
        total = ConversionStats(scheme=scheme)
        summaries = {}
        for file in files:
            start = time.perf_counter()
            stats = ConversionStats()
            docs = read_docs(file, scheme=scheme, untyped_label=untyped_label, n_sents=n_sents,
                             strict=strict, stats=stats)
            out = output_path / f"{file.stem}.spacy" if many else output_path
            save_docbin(docs, out)
            print_summary(stats, title=f"{file} → {out} ({time.perf_counter() - start:.1f}s)")
            summaries[str(file)] = stats.to_dict()
            total.merge(stats)
        if summary_json is not None:
            summary_json.parent.mkdir(parents=True, exist_ok=True)
            summary_json.write_text(json.dumps(summaries, indent=2) + "\n", encoding="utf8")


@app.command("export")
def export_cli(
    input_path: Path = typer.Argument(..., help="A .spacy DocBin"),
    output_path: Path = typer.Argument(..., help="Output token-per-line file ('-' for stdout)"),
    scheme: str = typer.Option("iob2", "--scheme", "-s", help=f"Output scheme: {'/'.join(WRITE_SCHEMES)}"),
    typed: bool = typer.Option(False, "--typed", help="Write B-LABEL even where the source had bare B/I tags"),
) -> None:
    """Write a DocBin back as token<TAB>tag lines, blank line between sentences."""
    from ..corpus.conll import write_docs
    from ..corpus.docbin import load_docbin

    _check_choice(scheme, WRITE_SCHEMES, "--scheme")
    with friendly_errors():
        docs = load_docbin(input_path)
        untyped: Optional[bool] = False if typed else None
        if str(output_path) == "-":
            import sys

            n = write_docs(docs, sys.stdout, scheme=scheme, untyped=untyped)
            return
        output_path.parent.mkdir(parents=True, exist_ok=True)
        with output_path.open("w", encoding="utf8", newline="\n") as out:
            n = write_docs(docs, out, scheme=scheme, untyped=untyped)
        msg.good(f"Wrote {len(docs)} documents, {n} tokens ({scheme}) to {output_path}")


@app.command("stats")
def stats_cli(
    paths: List[Path] = typer.Argument(..., help=".spacy DocBins or token-per-line files"),
) -> None:
    """Print documents, sentences, tokens and entities per type of corpora."""
    from spacy.vocab import Vocab

    from ..corpus.readers import load_corpus_docs
    from ..corpus.sentences import n_sentences

    with friendly_errors():
        for path in paths:
            stats = ConversionStats(scheme="(as stored)" if path.suffix == ".spacy" else "auto")
            for doc in load_corpus_docs(path, vocab=Vocab()):
                stats.documents += 1
                stats.tokens += len(doc)
                stats.sentences += n_sentences(doc)
                stats.entities.update(e.label_ for e in doc.ents)
            print_summary(stats, title=str(path), repairs=False)  # counts only; `convert` reports repairs
