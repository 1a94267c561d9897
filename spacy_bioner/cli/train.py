"""``train`` and ``config``: base config + backbone overrides + ``--section.key`` overrides."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ._util import EXTRA_ARGS, app, config_overrides, friendly_errors

BASE = typer.Argument(..., help="Base config: a path, or a shipped name (transformer, tok2vec)")
BACKBONE = typer.Option(None, "--backbone", "-b",
                        help="Backbone overrides: a path, or a shipped name (minilm, biobert…; `spacy-bioner configs`)")
HEAD = typer.Option(None, "--head", help="Entity head: ner (transition-based, the default) or tagger (bioner_tagger)")
ADVERSARIAL = typer.Option(None, "--adversarial",
                           help="Adversarial training: fgsm or pgd (configs/adversarial/), or a file; "
                           "training only; none: without (the project's demo trains with fgsm)")
AUGMENT = typer.Option(None, "--augment",
                       help="Training-data augmentation: noise (configs/augment/), or a file")
MIX = typer.Option(None, "--mix", help="Train and evaluate on a corpus mix: a mix file (configs/mixes/) or a "
                   "shipped mix's name (huner, huner-gene…)")
PARTIAL_LABELS = typer.Option(None, "--partial-labels", help="how the bioner_tagger learns from corpora that "
                              "annotate only some types: naive (unannotated = O), partial (marginal likelihood) "
                              "prompt (a task prompt naming each corpus's types; needs --mix) or corpus-prompt "
                              "(prompt that also names the corpus, to learn each corpus's guideline)")
TOTAL_STEPS = "training.optimizer.learn_rate.total_steps"


@app.command("config", context_settings=EXTRA_ARGS)
def config_cli(
    ctx: typer.Context,
    base: str = BASE,
    output: Path = typer.Argument(..., help="Where to write the merged config"),
    backbone: Optional[str] = BACKBONE,
    head: Optional[str] = HEAD,
    adversarial: Optional[str] = ADVERSARIAL,
    augment: Optional[str] = AUGMENT,
    mix: Optional[str] = MIX,
    partial_labels: Optional[str] = PARTIAL_LABELS,
) -> None:
    """Write the merged config (base + backbone + overrides), for `spacy train`.

    With --training.max_epochs N and a readable --paths.train, the schedule's
    total_steps is fitted to N epochs of that corpus, as `train` does.
    """
    from ..training.config import build_config, fit_schedule

    with friendly_errors():
        overrides = config_overrides(ctx.args)
        config = build_config(base, backbone=backbone, head=head, adversarial=adversarial, augment=augment,
                              mix=mix, partial_labels=partial_labels, overrides=overrides)
        config, plan = fit_schedule(config, explicit=TOTAL_STEPS in overrides, need_corpus=False)
        output.parent.mkdir(parents=True, exist_ok=True)
        config.to_disk(output)
    if plan.source.startswith("unchanged"):
        msg.warn(f"The schedule's total_steps ({plan.total_steps}) is not fitted to this run: {plan.source}")
    msg.good(f"Wrote {output} (schedule: {plan.total_steps} steps, {plan.source})")


@app.command("train", context_settings=EXTRA_ARGS)
def train_cli(
    ctx: typer.Context,
    base: str = BASE,
    output_dir: Path = typer.Option(..., "--output", "-o", help="Output folder (model-best, model-last, config.cfg, run.json)"),
    backbone: Optional[str] = BACKBONE,
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    head: Optional[str] = HEAD,
    adversarial: Optional[str] = ADVERSARIAL,
    augment: Optional[str] = AUGMENT,
    mix: Optional[str] = MIX,
    partial_labels: Optional[str] = PARTIAL_LABELS,
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="Continue from this pipeline's transformer and head (a trained or import-hf "
                                  "pipeline; new labels get new classifier rows)"),
    embed_base: bool = typer.Option(
        False, "--embed-base", help="LoRA decoders: store the base weights in the pipeline (default: referenced "
                                    "by name and checksum)"),
) -> None:
    """Train a pipeline: merge the configs, check the backbone, fit the schedule, run spaCy's loop.

    Extra --section.key value options override the config (e.g. --paths.train
    corpus/X/train.spacy --training.batcher.size 16). The run's record (steps,
    epochs, words/s, peak memory, dev scores) is written to OUTPUT/run.json.
    """
    from ..training.config import build_config, embed_decoder_base
    from ..training.run import run_training

    with friendly_errors():
        overrides = config_overrides(ctx.args)
        config = build_config(base, backbone=backbone, head=head, adversarial=adversarial, augment=augment,
                              mix=mix, partial_labels=partial_labels, overrides=overrides)
        if embed_base:
            config = embed_decoder_base(config)
        record = run_training(config, output_dir, gpu_id=gpu_id, explicit_total_steps=TOTAL_STEPS in overrides,
                              init_from=init_from)
    if record.init_from:
        added = record.init_from["labels_added"]
        msg.info(f"Started from {record.init_from['init_from']} ({', '.join(record.init_from['sourced'])})"
                 + (f"; added labels: {', '.join(added)}" if added else ""))
    if record.backbone:
        msg.info(f"Backbone: {config['paths']['backbone']} → {record.backbone}")
    msg.info(f"{record.steps} steps ({record.epochs} epochs, schedule: {record.schedule['source']}), "
             f"{record.train_words_per_second:.0f} train words/s, peak RSS {record.peak_rss_mib:.0f} MiB"
             + (f", peak GPU {record.peak_gpu_mib:.0f} MiB" if record.peak_gpu_mib is not None else ""))
    msg.good(f"Best pipeline: {record.model_best} (run record: {output_dir / 'run.json'})")
