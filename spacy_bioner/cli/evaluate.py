"""``score`` (gold vs predictions, no model), ``evaluate`` (run a pipeline, then
score) and ``cross-validate`` (k-fold train + score)."""
import random
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import typer
from spacy.tokens import Doc
from spacy.vocab import Vocab
from wasabi import msg

from ..conll import save_docbin
from ..errors import CorpusFormatError
from ..readers import load_corpus_docs
from ..report import write_json, write_outputs
from ..scoring import TokenMismatchError, align_docs, score_pairs
from . import app
from ._util import friendly_errors

# Options shared by `score` and `evaluate`.
OUTPUT = typer.Option(None, "--output", "-o", help="Write metrics as JSON")
REPORT = typer.Option(None, "--report", "-r", help="Write a Markdown report")
PLOTS = typer.Option(None, "--plots", "-p", help="Write PNG plots to this folder")
BOOTSTRAP = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the F1 interval")
SEED = typer.Option(0, "--seed", help="Bootstrap seed")
HEADLINE = {
    "spacy.ents_p": ("spacy", "ents_p"),
    "spacy.ents_r": ("spacy", "ents_r"),
    "spacy.ents_f": ("spacy", "ents_f"),
    "seqeval.precision": ("seqeval", "precision"),
    "seqeval.recall": ("seqeval", "recall"),
    "seqeval.f1": ("seqeval", "f1"),
    "untyped.f": ("untyped", "f"),
    "relaxed.partial.f": ("relaxed", "partial", "f"),
    "relaxed.type.f": ("relaxed", "type", "f"),
    "token_accuracy": ("token_accuracy",),
}


def print_headline(metrics: Dict[str, Any]) -> None:
    sp, sq = metrics["spacy"], metrics["seqeval"]
    msg.table(
        [
            ("spaCy strict", f"{100 * sp['ents_p']:.2f}", f"{100 * sp['ents_r']:.2f}", f"{100 * sp['ents_f']:.2f}"),
            ("seqeval strict", f"{100 * sq['precision']:.2f}", f"{100 * sq['recall']:.2f}", f"{100 * sq['f1']:.2f}"),
            ("relaxed partial", *(f"{100 * metrics['relaxed']['partial'][k]:.2f}" for k in "prf")),
            ("untyped", *(f"{100 * metrics['untyped'][k]:.2f}" for k in "prf")),
        ],
        header=("", "P", "R", "F"),
        aligns=("l", "r", "r", "r"),
    )
    b = metrics["bootstrap"]
    if b.get("n_samples"):
        msg.info(f"strict F1 95% CI: {100 * b['low']:.2f}–{100 * b['high']:.2f} ({b['n_samples']} resamples)")


def require_tokens(docs: Sequence[Doc], path: Path) -> Sequence[Doc]:
    """Gold data with nothing in it is a mistake, not a score of 0."""
    if not any(len(doc) for doc in docs):
        raise CorpusFormatError("no tokens to score (an empty file, or only -DOCSTART- lines)", path=path)
    return docs


def score_docs(gold: Sequence[Doc], pred: Sequence[Doc], *, n_bootstrap: int, seed: int):
    pairs = align_docs(gold, pred)
    return pairs, score_pairs(pairs, n_bootstrap=n_bootstrap, seed=seed)


@app.command("score")
def score_cli(
    gold_path: Path = typer.Argument(..., help="Gold: IOB/CoNLL file, folder or .spacy"),
    pred_path: Path = typer.Argument(..., help="Predictions over the same tokens: IOB/CoNLL file or .spacy"),
    output: Optional[Path] = OUTPUT,
    report: Optional[Path] = REPORT,
    plots: Optional[Path] = PLOTS,
    n_bootstrap: int = BOOTSTRAP,
    seed: int = SEED,
) -> None:
    """Score predictions against gold without a model (any system's output)."""
    with friendly_errors():
        vocab = Vocab()
        start = time.perf_counter()
        try:
            pairs, metrics = score_docs(require_tokens(load_corpus_docs(gold_path, vocab=vocab), gold_path),
                                        load_corpus_docs(pred_path, vocab=vocab),
                                        n_bootstrap=n_bootstrap, seed=seed)
        except TokenMismatchError as err:
            typer.secho(f"✘ {gold_path} vs {pred_path}: {err}", err=True, fg=typer.colors.RED)
            raise typer.Exit(1)
        write_outputs(metrics, pairs, output=output, report=report, plots=plots, title=f"{pred_path} vs {gold_path}")
        print_headline(metrics)
        msg.good(f"Scored {metrics['n_tokens']} tokens in {time.perf_counter() - start:.1f}s")


def predict(nlp, gold_docs: Sequence[Doc], *, batch_size: int = 64) -> List[Doc]:
    """Run ``nlp`` over the gold tokens (not its own tokenizer), with progress."""
    from tqdm import tqdm

    inputs = (Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]) for d in gold_docs)
    return list(tqdm(nlp.pipe(inputs, batch_size=batch_size), total=len(gold_docs), desc="predicting",
                     unit="doc", disable=None))


ENTITY_FACTORIES = ("ner", "beam_ner", "entity_ruler", "span_ruler")


def entity_labels(nlp) -> Optional[set]:
    """Labels the pipeline's entity-setting components can predict (None: no such component)."""
    names = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory in ENTITY_FACTORIES]
    if not names:
        return None
    return {label for n in names for label in nlp.pipe_labels.get(n, [])}


def unknown_gold_labels(known: Optional[set], gold_docs: Sequence[Doc]) -> Dict[str, int]:
    """Gold entity labels outside ``known``, with their number of gold entities."""
    if known is None:
        return {}
    return dict(sorted(Counter(e.label_ for doc in gold_docs for e in doc.ents if e.label_ not in known).items()))


def evaluate_model(model: Path, data: Path, *, gpu_id: int = -1, batch_size: int = 64,
                   n_bootstrap: int = 1000, seed: int = 0):
    """Load a pipeline, predict on ``data`` and score; adds ``words_per_second``."""
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
    nlp = spacy.load(model)
    gold = require_tokens(load_corpus_docs(data, vocab=nlp.vocab), data)
    known = entity_labels(nlp)
    unknown = unknown_gold_labels(known, gold)
    if unknown:
        listed = ", ".join(f"{label} ({n} in gold)" for label, n in unknown.items())
        msg.warn(f"The gold data has labels the pipeline never predicts: {listed}. They count as misses; "
                 f"the pipeline predicts {', '.join(sorted(known)) or 'no labels'}.")
    start = time.perf_counter()
    pred = predict(nlp, gold, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    pairs, metrics = score_docs(gold, pred, n_bootstrap=n_bootstrap, seed=seed)
    metrics["words_per_second"] = metrics["n_tokens"] / elapsed if elapsed else 0.0
    metrics["unknown_gold_labels"] = unknown
    # spaCy's flat keys too, so scripts written for `spacy evaluate` find them
    metrics.update({k: metrics["spacy"][k] for k in ("ents_p", "ents_r", "ents_f", "ents_per_type")})
    return pairs, metrics


@app.command("evaluate")
def evaluate_cli(
    model: Path = typer.Argument(..., help="A trained pipeline (folder or installed package name)"),
    data: Path = typer.Argument(..., help="Gold data: IOB/CoNLL file, folder or .spacy"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Docs per nlp.pipe batch"),
    output: Optional[Path] = OUTPUT,
    report: Optional[Path] = REPORT,
    plots: Optional[Path] = PLOTS,
    n_bootstrap: int = BOOTSTRAP,
    seed: int = SEED,
) -> None:
    """Run a pipeline over gold data (its tokens) and score it; reports words/s."""
    with friendly_errors():
        pairs, metrics = evaluate_model(model, data, gpu_id=gpu_id, batch_size=batch_size,
                                        n_bootstrap=n_bootstrap, seed=seed)
        write_outputs(metrics, pairs, output=output, report=report, plots=plots, title=f"{model} on {data}")
        print_headline(metrics)
        msg.info(f"{metrics['words_per_second']:.0f} words/s")


def make_folds(n_units: int, k: int, *, seed: int) -> List[List[int]]:
    """Split unit indices (documents) into ``k`` seeded folds of near-equal size."""
    if k < 2:
        raise ValueError("--folds must be at least 2")
    if n_units < k:
        raise ValueError(f"cannot make {k} folds from {n_units} documents")
    order = list(range(n_units))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def _get(metrics: Dict[str, Any], path: Sequence[str]) -> float:
    value: Any = metrics
    for key in path:
        value = value[key]
    return float(value)


def summarise_folds(fold_metrics: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Mean and standard deviation of every headline metric over folds."""
    out = {}
    for name, path in HEADLINE.items():
        values = [_get(m, path) for m in fold_metrics]
        out[name] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


@app.command(
    "cross-validate",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def cross_validate_cli(
    ctx: typer.Context,
    config: Path = typer.Argument(..., help="Training config"),
    data: List[Path] = typer.Argument(..., help="Train (+dev) data: IOB/CoNLL files, folders or .spacy"),
    folds: int = typer.Option(5, "--folds", "-k", help="Number of folds"),
    output_dir: Path = typer.Option(Path("training/cv"), "--output-dir", "-o", help="Where folds and models go"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    seed: int = typer.Option(0, "--seed", help="Seed for the fold split"),
    n_bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples per fold"),
) -> None:
    """k-fold cross-validation: fold k is the test set, fold k+1 the dev set, the rest trains.

    Folds are drawn over documents (a DocBin's Docs; one per -DOCSTART- document
    or per sentence for IOB files), seeded. Extra --section.key value options
    override the config, as for `spacy train`.
    """
    from spacy.cli._util import parse_config_overrides
    from spacy.cli.train import train

    # DATA is variadic, so click hands it the override options as well: split them off.
    args = [str(d) for d in data] + list(ctx.args)
    first_option = next((i for i, a in enumerate(args) if a.startswith("--")), len(args))
    data = [Path(a) for a in args[:first_option]]
    overrides = parse_config_overrides(args[first_option:])
    with friendly_errors():
        vocab = Vocab()
        docs: List[Doc] = [d for path in data for d in load_corpus_docs(path, vocab=vocab)]
        try:
            fold_ids = make_folds(len(docs), folds, seed=seed)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--folds")
        results = []
        for k in range(folds):
            fold_dir = output_dir / f"fold_{k}"
            test_ids, dev_ids = set(fold_ids[k]), set(fold_ids[(k + 1) % folds])
            split = {
                "train": [d for i, d in enumerate(docs) if i not in test_ids and i not in dev_ids],
                "dev": [docs[i] for i in sorted(dev_ids)],
                "test": [docs[i] for i in sorted(test_ids)],
            }
            for name, part in split.items():
                save_docbin(part, fold_dir / f"{name}.spacy")
            msg.divider(f"Fold {k + 1}/{folds}: {len(split['train'])} train, {len(split['dev'])} dev, "
                        f"{len(split['test'])} test documents")
            train(config, fold_dir / "model", use_gpu=gpu_id, overrides={
                **overrides,
                "paths.train": str(fold_dir / "train.spacy"),
                "paths.dev": str(fold_dir / "dev.spacy"),
            })
            _, metrics = evaluate_model(fold_dir / "model" / "model-best", fold_dir / "test.spacy",
                                        gpu_id=gpu_id, n_bootstrap=n_bootstrap, seed=seed)
            write_json(metrics, fold_dir / "metrics.json")
            print_headline(metrics)
            results.append(metrics)
        summary = {"folds": folds, "seed": seed, "n_documents": len(docs), "summary": summarise_folds(results),
                   "per_fold": [{name: _get(m, path) for name, path in HEADLINE.items()} for m in results]}
        write_json(summary, output_dir / "cv.json")
        msg.table([(name, f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}") for name, v in summary["summary"].items()],
                  header=("metric", f"mean ± std over {folds} folds"))
        msg.good(f"Wrote {output_dir / 'cv.json'}")
