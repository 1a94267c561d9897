"""``train`` and ``config``: base config + backbone overrides + ``--section.key`` overrides."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ..training import build_config, check_backbone, train_pipeline
from . import app
from ._util import friendly_errors

EXTRA = {"allow_extra_args": True, "ignore_unknown_options": True}


def _overrides(ctx: typer.Context):
    from spacy.cli._util import parse_config_overrides

    return parse_config_overrides(ctx.args)


@app.command("config", context_settings=EXTRA)
def config_cli(
    ctx: typer.Context,
    base: Path = typer.Argument(..., help="Base config, e.g. configs/transformer.cfg", exists=True),
    output: Path = typer.Argument(..., help="Where to write the merged config"),
    backbone: Optional[Path] = typer.Option(None, "--backbone", "-b", help="Backbone overrides, e.g. configs/backbones/biobert.cfg", exists=True),
) -> None:
    """Write the merged config (base + backbone + overrides), for `spacy train`."""
    config = build_config(base, backbone=backbone, overrides=_overrides(ctx))
    output.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(output)
    msg.good(f"Wrote {output}")


@app.command("train", context_settings=EXTRA)
def train_cli(
    ctx: typer.Context,
    base: Path = typer.Argument(..., help="Base config, e.g. configs/transformer.cfg", exists=True),
    output_dir: Path = typer.Option(..., "--output", "-o", help="Output folder (model-best, model-last, config.cfg)"),
    backbone: Optional[Path] = typer.Option(None, "--backbone", "-b", help="Backbone overrides file", exists=True),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
) -> None:
    """Train a pipeline: merge the configs, check the backbone is reachable, run spaCy's loop.

    Extra --section.key value options override the config (e.g. --paths.train
    corpus/X/train.spacy --training.batcher.size 16).
    """
    with friendly_errors():
        config = build_config(base, backbone=backbone, overrides=_overrides(ctx))
        where = check_backbone(config)
        if where:
            msg.info(f"Backbone: {config['paths']['backbone']} → {where}")
        best = train_pipeline(config, output_dir, gpu_id=gpu_id)
        msg.good(f"Best pipeline: {best}")
