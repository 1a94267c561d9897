"""``import-hf`` and ``export-hf``: Hugging Face token-classification checkpoints ↔ spaCy pipelines."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ._util import EXTRA_ARGS, app, config_overrides, friendly_errors


@app.command("import-hf", context_settings=EXTRA_ARGS)
def import_hf_cli(
    ctx: typer.Context,
    source: str = typer.Argument(..., help="A token-classification checkpoint: local folder or hub name"),
    output: Path = typer.Argument(..., help="Pipeline folder to write"),
    constrained: bool = typer.Option(True, "--constrained/--no-constrained",
                                     help="Constrained Viterbi (default), or HF's per-token argmax"),
    bare_label: str = typer.Option("ENTITY", "--bare-label",
                                   help="Entity type for a checkpoint whose labels are bare O/B/I"),
) -> None:
    """Turn a Hugging Face token-classification checkpoint into a spaCy pipeline.

    The pipeline (transformer → bioner_tagger → doc_cleaner) holds every weight:
    spacy.load reads it with no network and without the checkpoint. Labels come
    from config.id2label (IOB2, IOB1, BIOES, BILOU or bare B/I/O). Extra
    --section.key value options override the config (e.g.
    --components.transformer.model.get_spans.window 256).
    """
    from ..packaging.huggingface import import_hf

    with friendly_errors():
        record = import_hf(source, output, constrained=constrained, bare_label=bare_label,
                           overrides=config_overrides(ctx.args))
    msg.info(f"{record['architecture']} ({record['model_type']}), labels {record['scheme'].upper()}: "
             f"{', '.join(record['labels'])}")
    if record["tags_without_row"]:
        msg.warn(f"Tags the checkpoint has no row for (never predicted): {', '.join(record['tags_without_row'])}")
    msg.good(f"Wrote {output}; spacy.load(\"{output}\")")


@app.command("export-hf")
def export_hf_cli(
    pipeline: str = typer.Argument(..., help="A bioner_tagger pipeline folder (first-subword pooling) or package"),
    output: Path = typer.Argument(..., help="Folder for the Hugging Face checkpoint"),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub",
                                              help="Also upload to this hub repository (needs a token and network)"),
    private: bool = typer.Option(False, "--private", help="With --push-to-hub: create the repository private"),
) -> None:
    """Write a pipeline as a Hugging Face token-classification checkpoint.

    The folder holds config.json (id2label), model.safetensors, the tokenizer and a
    model card (README.md). AutoModelForTokenClassification + pipeline(...,
    aggregation_strategy="first") gives the entities of the spaCy pipeline with
    unconstrained decoding.
    """
    from ..packaging.huggingface import export_hf, push_to_hub as push

    with friendly_errors():
        record = export_hf(pipeline, output)
        url = push(output, push_to_hub, private=private) if push_to_hub else None
    msg.good(f"Wrote {output} ({record['architecture']}, tags: {', '.join(record['tags'])})")
    if url:
        msg.good(f"Uploaded to {url}")
