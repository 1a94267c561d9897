"""``convert`` (token-per-line → DocBin) and ``export`` (DocBin → token-per-line)."""
import json
import time
from pathlib import Path
from typing import List, Optional

from contextlib import contextmanager
from typing import Iterator

import typer
from wasabi import msg

from ..errors import ConfigValueError, CorpusFormatError

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


CONVERT_FORMATS = ("auto", "iob", "pubtator", "bioc", "brat", "jsonl")
EXPORT_FORMATS = ("iob", "pubtator", "bioc", "brat")


def _standoff_format(path: Path, fmt: str) -> Optional[str]:
    """The standoff format to read ``path`` as, or None for token-per-line (``auto``: by the file names)."""
    from ..corpus.standoff import detect_format

    if fmt == "iob":
        return None
    if fmt != "auto":
        return fmt
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    return detect_format(path)


def print_alignment_summary(summary, *, title: str) -> None:
    """Print per file and per type: mentions read, kept, split, adjusted, dropped, and examples."""
    from ..corpus.align import OUTCOMES

    data = summary.to_dict()
    header = ("type", "read") + tuple(o.replace("dropped_", "drop ") for o in OUTCOMES) + ("max Δchars",)
    for file, info in data["files"].items():
        msg.divider(f"{file}: {info['documents']} documents")
        rows = [(kind,) + tuple(v[k] for k in ("read",) + OUTCOMES + ("max_change_chars",))
                for kind, v in info["per_type"].items()]
        if rows:
            msg.table(rows, header=header)
        for kind, n in sorted(info["ignored"].items()):
            msg.info(f"ignored: {n} {kind}")
        for outcome, shown in info["examples"].items():
            for line in shown:
                msg.text(f"  {outcome}: {line}")
    msg.divider(title)
    if data["label_map"]:
        msg.info("label map: " + ", ".join(f"{k} → {v if v is not None else '(dropped)'}"
                                           for k, v in data["label_map"].items()))
    total = data["total"]
    msg.table([(kind,) + tuple(v[k] for k in ("read",) + OUTCOMES + ("max_change_chars",))
               for kind, v in data["per_type"].items()]
              + [("all",) + tuple(total[k] for k in ("read",) + OUTCOMES + ("max_change_chars",))], header=header)


@contextmanager
def _one_line_value_errors() -> Iterator[None]:
    """Bad option values and unreadable standoff input (ValueError) as one-line errors."""
    try:
        yield
    except CorpusFormatError:
        raise
    except ValueError as err:
        raise ConfigValueError(str(err)) from None


def _convert_standoff(input_path: Path, output_path: Path, *, fmt: str, alignment: str, overlaps: str,
                      tokenizer: Optional[str], label_map: Optional[Path], summary_json: Optional[Path]) -> None:
    from ..corpus.align import convert_standoff, load_tokenizer, read_label_map
    from ..corpus.docbin import save_docbin

    start = time.perf_counter()
    with _one_line_value_errors():
        mapping = read_label_map(label_map) if label_map is not None else None
        docs, summary = convert_standoff(input_path, fmt=fmt, tokenizer=load_tokenizer(tokenizer),
                                         alignment=alignment, overlaps=overlaps, label_map=mapping)
    if not docs:
        raise ValueError(f"{input_path}: no documents")
    save_docbin(docs, output_path)
    print_alignment_summary(summary, title=f"{input_path} ({fmt}) → {output_path}: {len(docs)} documents "
                                           f"({time.perf_counter() - start:.1f}s)")
    if summary_json is not None:
        summary_json.parent.mkdir(parents=True, exist_ok=True)
        summary_json.write_text(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf8")


@app.command("convert")
def convert_cli(
    input_path: Path = typer.Argument(..., help="Token-per-line file, or a directory of them"),
    output_path: Path = typer.Argument(..., help="Output .spacy file (a directory if INPUT is one)"),
    scheme: str = typer.Option("auto", "--scheme", "-s", help=f"Input tag scheme: {'/'.join(SCHEMES)}"),
    n_sents: int = typer.Option(0, "--n-sents", "-n", help="Sentences per Doc (0: by -DOCSTART-, else one)"),
    untyped_label: str = typer.Option(DEFAULT_UNTYPED_LABEL, "--untyped-label", help="Label for bare B/I tags"),
    strict: bool = typer.Option(False, "--strict", help="Scheme violations are errors, not repairs"),
    summary_json: Optional[Path] = typer.Option(None, "--summary-json", help="Also write the summary as JSON"),
    fmt: str = typer.Option("auto", "--format", "-f", help=f"Input format: {'/'.join(CONVERT_FORMATS)}"),
    alignment: str = typer.Option("split", "--alignment", help="Standoff mention boundary inside a token: "
                                  "split/expand/contract/strict"),
    overlaps: str = typer.Option("longest", "--overlaps", help="Nested/crossing standoff mentions: keep the "
                                 "longest/shortest, or error"),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Standoff text: a spaCy pipeline name/path "
                                            "or a language code (default: the biomedical English tokenizer)"),
    label_map: Optional[Path] = typer.Option(None, "--label-map", help="YAML/JSON: source type → target type "
                                             "(null drops it)"),
) -> None:
    """Convert IOB1/IOB2/BIOES/BILOU token-per-line corpora, or PubTator / BioC / brat standoff, to DocBins."""
    from ..corpus.conll import corpus_files, read_docs
    from ..corpus.docbin import save_docbin

    _check_choice(scheme, SCHEMES, "--scheme")
    _check_choice(fmt, CONVERT_FORMATS, "--format")
    from ..corpus.align import ALIGNMENTS, OVERLAPS

    _check_choice(alignment, ALIGNMENTS, "--alignment")
    _check_choice(overlaps, OVERLAPS, "--overlaps")
    with friendly_errors():
        standoff = _standoff_format(input_path, fmt)
        if standoff is not None:
            _convert_standoff(input_path, output_path, fmt=standoff, alignment=alignment, overlaps=overlaps,
                              tokenizer=tokenizer, label_map=label_map, summary_json=summary_json)
            return
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
    fmt: str = typer.Option("iob", "--format", "-f", help=f"Output format: {'/'.join(EXPORT_FORMATS)}"),
) -> None:
    """Write a DocBin back as token<TAB>tag lines (blank line between sentences), or as PubTator, BioC or
    brat standoff (the Doc text, entities at character offsets)."""
    from ..corpus.conll import write_docs
    from ..corpus.docbin import load_docbin

    _check_choice(scheme, WRITE_SCHEMES, "--scheme")
    _check_choice(fmt, EXPORT_FORMATS, "--format")
    with friendly_errors():
        docs = load_docbin(input_path)
        if fmt != "iob":
            from ..corpus.align import doc_to_standoff
            from ..corpus.standoff import write_documents

            with _one_line_value_errors():
                n = write_documents((doc_to_standoff(doc, default_id=str(i)) for i, doc in enumerate(docs, start=1)),
                                    output_path, fmt)
            msg.good(f"Wrote {n} documents, {sum(len(d.ents) for d in docs)} entities ({fmt}) to {output_path}")
            return
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
