"""``annotate``: tag a literature dump with a trained pipeline (streaming, resumable)."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ._util import app, fail, friendly_errors


@app.command("annotate")
def annotate_cli(
    model: str = typer.Argument(..., help="A trained pipeline (folder or installed package name)"),
    input_path: Path = typer.Argument(..., help="Input file or folder: text, JSONL, PubTator or BioC XML (.gz too)"),
    output: Path = typer.Argument(..., help="Output file"),
    fmt: Optional[str] = typer.Option(None, "--format", "-f",
                                      help="Input format: text, jsonl, pubtator, bioc (default: from the suffixes)"),
    output_format: Optional[str] = typer.Option(
        None, "--output-format", "-F",
        help="jsonl, pubtator or bioc (default: from OUTPUT's suffix: .pubtator, .xml/.bioc, else jsonl)"),
    id_field: str = typer.Option("id", "--id-field", help="JSONL key of the document id"),
    text_field: str = typer.Option("text", "--text-field", help="JSONL key of the text"),
    resume: bool = typer.Option(False, "--resume",
                                help="Continue a killed or stopped job: skip what OUTPUT and the error file hold"),
    retry_errors: bool = typer.Option(False, "--retry-errors",
                                      help="Annotate the error file's records again (read from INPUT): those that "
                                           "work are appended to OUTPUT, the error file keeps the others"),
    errors: Optional[Path] = typer.Option(None, "--errors", help="Error file (default: OUTPUT.errors.jsonl)"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Texts per nlp.pipe batch"),
    buffer_size: int = typer.Option(1024, "--buffer-size", help="Records read, annotated and flushed together"),
    n_process: int = typer.Option(1, "--n-process", "-n", help="Worker processes (CPU)"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    length_buckets: float = typer.Option(0.8, "--length-buckets", help="Sub-batch by length (0 = off)"),
    int8: bool = typer.Option(False, "--int8", help="int8 dynamic quantization (CPU)"),
    runtime: str = typer.Option("torch", "--runtime", help="Inference runtime: torch, onnx (ONNX Runtime, the spacy-bioner[onnx] extra) or auto (onnx where it can run)"),
    max_chars: int = typer.Option(1_000_000, "--max-chars", help="Longer documents go to the error file"),
    backend: str = typer.Option("local", "--backend", help="local (this machine) or ray (Ray Data, sharded)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (default: local Ray)"),
    gpus_per_actor: float = typer.Option(0.0, "--gpus-per-actor", help="Ray: GPUs per actor"),
    shard_size: int = typer.Option(2000, "--shard-size", help="Ray: records per shard (the resume unit)"),
    min_confidence: Optional[float] = typer.Option(
        None, "--min-confidence", help="Drop entities scored below it (pipelines that set entity scores only)"),
) -> None:
    """Annotate every document of INPUT; entities with character offsets into the original text."""
    from ..annotate.job import annotate, default_errors_path
    from ..annotate.worker import JobFailure

    output_format = output_format or output_format_of(output)
    with friendly_errors():
        try:
            stats = annotate(model, input_path, output, fmt=fmt, output_format=output_format, id_field=id_field,
                             text_field=text_field, resume=resume, errors=errors, batch_size=batch_size,
                             buffer_size=buffer_size, n_process=n_process, gpu_id=gpu_id,
                             length_buckets=length_buckets, int8=int8, max_chars=max_chars, backend=backend,
                             address=address, gpus_per_actor=gpus_per_actor, shard_size=shard_size,
                             min_confidence=min_confidence, retry_errors=retry_errors, runtime=runtime)
        except (ValueError, FileExistsError, ImportError, JobFailure) as err:
            fail(" ".join(str(err).split("\n")))
    error_file = errors or default_errors_path(output)
    if retry_errors:
        msg.good(f"{stats.retried:,} records of {error_file} retried: {stats.documents:,} annotated "
                 f"({stats.entities:,} entities) and appended to {output}, {stats.errors:,} still failing"
                 + (f"; {stats.not_found:,} no longer in INPUT" if stats.not_found else "")
                 + (f"; {stats.settled:,} were already in {output} (a retry stopped before it could note them)"
                    if stats.settled else ""))
        return
    msg.good(f"{stats.documents:,} documents annotated ({stats.entities:,} entities) in {stats.seconds:.1f}s: "
             f"{stats.docs_per_second:,.1f} docs/s, {stats.words_per_second:,.0f} words/s; peak RSS "
             f"{stats.peak_rss_mib:,.0f} MiB ({stats.peak_rss_of})"
             + (f"; {stats.skipped:,} already done" if stats.skipped else ""))
    if stats.errors:
        msg.warn(f"{stats.errors:,} records could not be annotated: see {error_file} (--retry-errors annotates "
                 "them again)")


def output_format_of(output: Path) -> str:
    """The output format OUTPUT's name asks for: ``.pubtator`` → pubtator, ``.xml``/``.bioc`` → bioc (``.gz`` after
    them too), anything else jsonl."""
    suffixes = [s.lower() for s in output.suffixes if s.lower() != ".gz"]
    last = suffixes[-1] if suffixes else ""
    return {".pubtator": "pubtator", ".xml": "bioc", ".bioc": "bioc"}.get(last, "jsonl")
