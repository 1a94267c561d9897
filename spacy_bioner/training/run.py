"""The one run builder: config → checks → spaCy's training loop → a run record.

``spacy-bioner train``, ``cross-validate``, the benchmarks and sweeps all call
:func:`run_training`, so each run gets the same backbone check, the same
schedule fitted to its length, and the same record: merged config, steps,
epochs, wall time, training words/s, peak RSS, peak GPU memory, dev scores.
"""
import json
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, List, Optional

from thinc.api import Config

from ..errors import CorpusConfigError
from ..gpu import peak_gpu_memory_mib, require_gpu, reset_peak_gpu_memory
from .config import SchedulePlan, check_backbone, fit_schedule

RUN_RECORD = "run.json"


@dataclass
class RunRecord:
    """What one training run did, written to ``OUTPUT/run.json``.

    ``train_seconds`` is the whole loop; ``eval_seconds`` and ``save_seconds`` are
    the dev scoring and checkpoint saves inside it; ``train_words_per_second``
    divides the words trained on by the loop's time without those two.
    ``peak_rss_mib`` is this process' peak so far (``spacy-bioner train`` is one
    process per run; folds of ``cross-validate`` share one, so theirs only grows).
    """

    output_dir: str
    model_best: str
    model_last: str
    gpu_id: int
    steps: int
    epochs: float
    train_words: int
    wall_seconds: float
    train_seconds: float
    eval_seconds: float
    save_seconds: float
    train_words_per_second: float
    peak_rss_mib: float
    peak_gpu_mib: Optional[float]
    best_step: Optional[int]
    dev_scores: Dict[str, Any]
    learn_rates: List[List[Any]]
    schedule: Dict[str, Any]
    backbone: Optional[str]
    config: Dict[str, Any] = field(repr=False, default_factory=dict)
    #: The first step whose loss was NaN or infinite (None: every loss was finite).
    nonfinite_loss_step: Optional[int] = None
    #: The losses of the last step, per component.
    final_losses: Dict[str, float] = field(default_factory=dict)
    #: ``--init-from``: the pipeline training started from, what was sourced, labels kept and added.
    init_from: Optional[Dict[str, Any]] = None
    #: ``{"trainable": n, "total": n}`` weights of the pipeline (frozen ones, e.g. under LoRA, not trainable).
    parameters: Optional[Dict[str, int]] = None
    #: ``--mix``: the corpus mix, its corpora, label maps, sizes per split and sampling probabilities.
    mix: Optional[Dict[str, Any]] = None

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def to_disk(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n", encoding="utf8")


def check_corpus_paths(config: Config) -> None:
    """``paths.train`` / ``paths.dev`` must be set when the config uses them (one clear line if not)."""
    paths = config.get("paths", {})
    corpora = json.dumps(config.get("corpora", {}), default=str)  # not interpolated: what reads which path
    for key in ("train", "dev"):
        if key in paths and paths[key] in (None, "") and f"${{paths.{key}}}" in corpora:
            raise CorpusConfigError(f"paths.{key} is not set: pass --paths.{key} (e.g. corpus/ncbi/{key}.spacy, "
                                    "or an IOB/CoNLL file)")


def count_parameters(nlp: Any) -> Dict[str, int]:
    """Trainable and total weights of a pipeline: each component's thinc parameters plus the torch modules
    its shims wrap (trainable where they require gradients: a LoRA base is frozen), each counted once.

    nlp (Language): the pipeline.
    RETURNS (Dict[str, int]): ``{"trainable": n, "total": n}``.
    """
    from ..models.inference import torch_modules

    trainable = total = 0
    for _, proc in nlp.pipeline:  # thinc weights (heads): all trainable
        model = getattr(proc, "model", None)
        for node in (model.walk() if hasattr(model, "walk") else []):
            for name in node.param_names:
                if node.has_param(name):
                    size = int(node.get_param(name).size)
                    trainable, total = trainable + size, total + size
    seen = set()
    for module in torch_modules(nlp):
        for param in module.parameters():
            if id(param) not in seen:
                seen.add(id(param))
                total += param.numel()
                trainable += param.numel() if param.requires_grad else 0
    return {"trainable": trainable, "total": total}


def peak_rss_mib() -> float:
    """This process' peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_training(
    config: Config,
    output_dir: Path,
    *,
    gpu_id: int = -1,
    explicit_total_steps: bool = False,
    stdout: Optional[IO] = None,
    stderr: Optional[IO] = None,
    init_from: Optional[Path] = None,
) -> RunRecord:
    """Train one pipeline and record the run.

    config (Config): the merged config (:func:`~spacy_bioner.training.config.build_config`).
    output_dir (Path): gets ``config.cfg``, ``model-best``, ``model-last`` and ``run.json``.
    gpu_id (int): GPU index, -1 for CPU.
    explicit_total_steps (bool): the schedule's ``total_steps`` was set on purpose.
    stdout (Optional[IO]): where spaCy's progress table goes (default: ``sys.stdout`` at call time).
    stderr (Optional[IO]): where spaCy's logger writes warnings (default: ``sys.stderr``).
    init_from (Optional[Path]): continue from this pipeline's transformer and head
        (:func:`~spacy_bioner.training.init_from.init_from_pipeline`); the backbone is not loaded.
    RETURNS (RunRecord): also written to ``output_dir/run.json``.
    """
    from spacy.training.initialize import init_nlp

    start = time.perf_counter()
    check_corpus_paths(config)
    init_record = None
    if init_from is not None:
        from .init_from import init_from_pipeline

        config, init_record = init_from_pipeline(config, Path(init_from), output_dir=output_dir)
    backbone = check_backbone(config) if init_record is None or "transformer" not in init_record["sourced"] \
        else None
    if any(isinstance(c, dict) and c.get("factory") == "bioner_adversarial"
           for c in config.get("components", {}).values()):
        from ..pipeline import adversarial  # noqa: F401  (registers the factory without the entry points)
        from . import callbacks  # noqa: F401  (and the before_to_disk callback its config names)
    require_gpu(gpu_id, need_torch=backbone is not None)
    config, plan = fit_schedule(config, explicit=explicit_total_steps)
    if plan.train_examples == 0:
        raise CorpusConfigError(f"{config['paths'].get('train')}: the training corpus has no examples "
                                "(an empty file, or only -DOCSTART- lines?)")
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / RUN_RECORD).unlink(missing_ok=True)  # never leave a previous run's record beside this one
    config.to_disk(output_dir / "config.cfg")
    try:
        nlp = init_nlp(config, use_gpu=gpu_id)
        reset_peak_gpu_memory(gpu_id)
        progress = train_nlp(nlp, output_dir, use_gpu=gpu_id, stdout=stdout, stderr=stderr)
    except (ValueError, AssertionError) as err:
        if "E986" in str(err) or "E923" in str(err):  # spaCy: no training examples / no initialisation sample
            raise CorpusConfigError(f"{config['paths'].get('train')}: the training corpus has no examples; "
                                    "check paths.train (an empty or unconverted file?)") from None
        raise
    steps = progress["steps"]
    per_epoch = plan.steps_per_epoch
    # words/s of the updates alone: dev scoring and checkpoint saves are timed apart
    updating = progress["seconds"] - progress["eval_seconds"] - progress["save_seconds"]
    record = RunRecord(
        output_dir=str(output_dir),
        model_best=str(output_dir / "model-best"),
        model_last=str(output_dir / "model-last"),
        gpu_id=gpu_id,
        steps=steps,
        epochs=round(steps / per_epoch, 3) if per_epoch else progress["epoch"] + 1,
        train_words=progress["words"],
        wall_seconds=time.perf_counter() - start,
        train_seconds=progress["seconds"],
        eval_seconds=progress["eval_seconds"],
        save_seconds=progress["save_seconds"],
        train_words_per_second=progress["words"] / updating if updating > 0 else 0.0,
        peak_rss_mib=peak_rss_mib(),
        peak_gpu_mib=peak_gpu_memory_mib(gpu_id),
        best_step=progress["best_step"],
        dev_scores=progress["best_scores"],
        learn_rates=sample_rates(progress["learn_rates"], steps=steps),
        schedule=plan.to_dict(),
        backbone=backbone,
        config=json.loads(json.dumps(config, default=str)),
        nonfinite_loss_step=progress.get("nonfinite_loss_step"),
        final_losses=progress.get("final_losses", {}),
        init_from=init_record,
        parameters=count_parameters(nlp),
        mix=mix_record(config, nlp),
    )
    record.to_disk(output_dir / RUN_RECORD)
    return record


def mix_record(config: Config, nlp) -> Optional[Dict[str, Any]]:
    """The run's corpus mix as the record names it (None: the training corpus is not a mix)."""
    train = config.get("corpora", {}).get("train", {})
    if not isinstance(train, dict) or train.get("@readers") != "spacy_bioner.MixedCorpus.v1":
        return None
    from ..corpus.mixes import load_mix, mix_summary

    resolved = config.interpolate()["corpora"]["train"]
    mix = load_mix(resolved["path"], corpora_dir=resolved.get("corpora_dir"))
    return mix_summary(mix, vocab=nlp.vocab, temperature=resolved.get("temperature"),
                       corpora=resolved.get("corpora"), limit=resolved.get("limit") or 0)


def train_nlp(nlp, output_path: Path, *, use_gpu: int = -1, stdout: Optional[IO] = None,
              stderr: Optional[IO] = None) -> Dict[str, Any]:
    """spaCy's training loop (``spacy.training.loop.train``), keeping count as it goes.

    The same steps as spaCy's own ``train``: its batches, evaluation callback,
    checkpoints (``model-best``, ``model-last``, without training-only components
    such as ``bioner_adversarial``), meta and logger. It also
    returns how many steps, epochs and words it saw, its seconds, and the dev
    scores of the best checkpoint.

    nlp (Language): an initialised pipeline with its full config.
    output_path (Path): where checkpoints go.
    RETURNS (Dict[str, Any]): ``steps``, ``epoch``, ``words``, ``seconds`` (the whole loop),
        ``eval_seconds`` and ``save_seconds`` (dev scoring and checkpoints, inside it), ``best_step``, ``best_scores``,
        ``learn_rates`` (the rate each step used, by step).
    """
    import shutil

    from spacy.schemas import ConfigSchemaTraining
    from spacy.training.loop import (DIR_MODEL_BEST, DIR_MODEL_LAST, clean_output_dir,
                                     create_before_to_disk_callback, create_evaluation_callback,
                                     create_train_batches, train_while_improving, update_meta)
    from spacy.util import registry, resolve_dot_names
    from thinc.api import fix_random_seed, set_gpu_allocator
    from wasabi import Printer

    from .callbacks import drop_training_only  # also registers the callback the adversarial configs name

    stdout = stdout if stdout is not None else sys.stdout
    stderr = stderr if stderr is not None else sys.stderr
    msg = Printer(no_print=True)
    config = nlp.config.interpolate()
    if config["training"]["seed"] is not None:
        fix_random_seed(config["training"]["seed"])
    if use_gpu >= 0 and config["training"]["gpu_allocator"]:
        set_gpu_allocator(config["training"]["gpu_allocator"])
    T = registry.resolve(config["training"], schema=ConfigSchemaTraining)
    train_corpus, dev_corpus = resolve_dot_names(config, [T["train_corpus"], T["dev_corpus"]])
    optimizer = T["optimizer"]
    configured_before_to_disk = create_before_to_disk_callback(T["before_to_disk"])

    def before_to_disk(nlp):
        # training-only components never reach a checkpoint, whatever the config's callback
        return drop_training_only(configured_before_to_disk(nlp))

    frozen = T["frozen_components"]

    def save_checkpoint(is_best: bool) -> None:
        began = time.perf_counter()
        _save_checkpoint(is_best)
        timers["save"] += time.perf_counter() - began

    def _save_checkpoint(is_best: bool) -> None:
        with nlp.use_params(optimizer.averages):
            before_to_disk(nlp).to_disk(output_path / DIR_MODEL_LAST)
        if is_best:
            if (output_path / DIR_MODEL_BEST).exists():
                shutil.rmtree(output_path / DIR_MODEL_BEST)
            shutil.copytree(output_path / DIR_MODEL_LAST, output_path / DIR_MODEL_BEST)

    timers = {"eval": 0.0, "save": 0.0}
    evaluate = create_evaluation_callback(nlp, dev_corpus, T["score_weights"])

    def timed_evaluate():
        began = time.perf_counter()
        try:
            return evaluate()
        finally:
            timers["eval"] += time.perf_counter() - began

    steps = create_train_batches(nlp, train_corpus, T["batcher"], T["max_epochs"])
    iterator = train_while_improving(
        nlp, optimizer, steps, timed_evaluate,
        dropout=T["dropout"], accumulate_gradient=T["accumulate_gradient"], patience=T["patience"],
        max_steps=T["max_steps"], eval_frequency=T["eval_frequency"], exclude=frozen,
        annotating_components=T["annotating_components"], before_update=T["before_update"],
    )
    clean_output_dir(output_path)
    stdout.write(msg.info(f"Pipeline: {nlp.pipe_names}") + "\n")
    stdout.write(msg.info(f"Initial learn rate: {optimizer.learn_rate}") + "\n")
    with nlp.select_pipes(disable=frozen):
        log_step, finalize_logger = T["logger"](nlp, stdout, stderr)
    progress: Dict[str, Any] = {"steps": 0, "epoch": 0, "words": 0, "seconds": 0.0, "best_step": None,
                                "best_scores": {}, "learn_rates": {0: _rate(optimizer)},
                                "nonfinite_loss_step": None, "final_losses": {}}
    start = time.perf_counter()
    try:
        for _batch, info, is_best in iterator:
            progress.update(steps=info["step"] + 1, epoch=info["epoch"], words=info["words"],
                            seconds=time.perf_counter() - start)
            losses = {name: float(value) for name, value in (info.get("losses") or {}).items()}
            progress["final_losses"] = losses
            if progress["nonfinite_loss_step"] is None and not all(math.isfinite(v) for v in losses.values()):
                progress["nonfinite_loss_step"] = info["step"]
            # the rate the next step will use (step_schedules has run)
            progress["learn_rates"][info["step"] + 1] = _rate(optimizer)
            if is_best is not None:
                if is_best:  # spaCy's own rule (ties count): model-best is this checkpoint
                    progress["best_step"] = info["step"]
                    progress["best_scores"] = _plain_scores(info["other_scores"])
                with nlp.select_pipes(disable=frozen):
                    update_meta(T, nlp, info)
                save_checkpoint(is_best)
                info["output_path"] = str(output_path / DIR_MODEL_LAST)
            log_step(info if is_best is not None else None)
    except Exception as err:
        stdout.write(msg.warn(f"Aborting and saving the final best model. Encountered exception: {err!r}") + "\n")
        raise
    finally:
        progress["seconds"] = time.perf_counter() - start
        finalize_logger()
        save_checkpoint(False)
    progress["eval_seconds"], progress["save_seconds"] = timers["eval"], timers["save"]
    if optimizer.averages:
        nlp.use_params(optimizer.averages)
    stdout.write(msg.good("Saved pipeline to output directory", output_path / DIR_MODEL_LAST) + "\n")
    return progress


def _rate(optimizer) -> Optional[float]:
    rate = getattr(optimizer, "learn_rate", None)
    return float(rate) if isinstance(rate, (int, float)) else None


def sample_rates(rates: Dict[int, Optional[float]], *, steps: int, points: int = 20) -> List[List[Any]]:
    """``[step, rate]`` at step 0, about ``points`` evenly spaced steps, and the last step run."""
    every = max(1, steps // points)
    keep = sorted({0, max(steps - 1, 0), *range(0, steps, every)})
    return [[k, rates.get(k)] for k in keep if k in rates]


def _plain_scores(scores: Dict[str, Any]) -> Dict[str, Any]:
    """Scores as JSON-friendly values (spaCy's include numpy floats and None)."""
    out: Dict[str, Any] = {}
    for key, value in (scores or {}).items():
        if isinstance(value, dict):
            out[key] = _plain_scores(value)
        elif value is None or isinstance(value, (str, bool)):
            out[key] = value
        else:
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                out[key] = str(value)
    return out


def read_run_record(output_dir: Path) -> Dict[str, Any]:
    """The ``run.json`` of a finished run."""
    return json.loads((output_dir / RUN_RECORD).read_text(encoding="utf8"))


__all__: List[str] = ["RunRecord", "SchedulePlan", "read_run_record", "run_training", "train_nlp"]
