"""Build a training config from the shared base, a backbone file and overrides, then train."""
from pathlib import Path
from typing import Any, Dict, Optional

from thinc.api import Config

from .backbones import resolve_backbone


def build_config(base: Path, *, backbone: Optional[Path] = None, overrides: Optional[Dict[str, Any]] = None) -> Config:
    """The base config merged with a backbone's overrides, then ``--section.key`` overrides.

    base (Path): e.g. ``configs/transformer.cfg``.
    backbone (Optional[Path]): e.g. ``configs/backbones/biobert.cfg`` (only what differs).
    overrides (Optional[Dict[str, Any]]): dotted keys, as from the command line.
    RETURNS (Config): the merged config, not interpolated.
    """
    config = Config().from_disk(base, interpolate=False)
    if backbone is not None:
        config = config.merge(Config().from_disk(backbone, interpolate=False))
    overrides = dict(overrides or {})
    if overrides:
        config = Config().from_str(config.to_str(), overrides=overrides, interpolate=False)
    return sync_total_steps(config, explicit="training.optimizer.learn_rate.total_steps" in overrides)


def sync_total_steps(config: Config, *, explicit: bool = False) -> Config:
    """Make a learning-rate schedule's ``total_steps`` follow ``training.max_steps``.

    The schedule needs the run's length for its warm-up fraction and decay; the
    value must be a literal (``nlp.resume_training()`` resolves the optimizer
    block alone), so it is copied here unless it was set explicitly.
    """
    schedule = config.get("training", {}).get("optimizer", {}).get("learn_rate")
    max_steps = config.get("training", {}).get("max_steps")
    if not explicit and isinstance(schedule, dict) and "total_steps" in schedule and isinstance(max_steps, int) and max_steps > 0:
        schedule["total_steps"] = max_steps
    return config


def check_backbone(config: Config) -> Optional[str]:
    """Fail fast, before spaCy starts, if the config's backbone cannot be found."""
    name = config.get("paths", {}).get("backbone")
    return resolve_backbone(str(name)) if name else None


def train_pipeline(config: Config, output_dir: Path, *, gpu_id: int = -1) -> Path:
    """Write the merged config to ``output_dir/config.cfg`` and run spaCy's training loop.

    RETURNS (Path): the ``model-best`` folder.
    """
    from spacy.cli.train import train

    output_dir.mkdir(parents=True, exist_ok=True)
    config_path = output_dir / "config.cfg"
    config.to_disk(config_path)
    train(config_path, output_dir, use_gpu=gpu_id)
    return output_dir / "model-best"
