"""k-fold cross-validation: fold k tests, fold k+1 is the dev set, the rest trains.

Folds are drawn over documents, not Docs: the Docs of one document (its
sentences, when a corpus was read sentence by sentence) always land in the same
fold (:func:`~spacy_bioner.corpus.splits.document_groups`). Where the data does
not say which Docs form a document, each Doc is its own group and ``cv.json``
says so (``grouping``).

Every fold is one run of the run builder
(:func:`~spacy_bioner.training.run.run_training`): the same backbone check,
schedule fitted to the fold's own size, and run record as ``spacy-bioner train``.
"""
import random
import statistics
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from thinc.api import Config

from ..corpus.splits import DocumentGroups
from ..evaluation.report import write_json

#: The metrics summarised over folds, and where they live in metrics.json.
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


def make_folds(n_units: int, k: int, *, seed: int) -> List[List[int]]:
    """Split unit indices (documents) into ``k`` seeded folds of near-equal size.

    n_units (int): how many units (document groups).
    k (int): folds.
    seed (int): seed of the shuffle.
    RETURNS (List[List[int]]): the units of each fold, sorted.
    """
    if k < 2:
        raise ValueError("--folds must be at least 2")
    if n_units < k:
        raise ValueError(f"cannot make {k} folds from {n_units} documents")
    order = list(range(n_units))
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def assign_folds(grouping: DocumentGroups, k: int, *, seed: int) -> List[List[int]]:
    """The Docs of each fold: whole document groups go to one fold (seeded).

    grouping (DocumentGroups): the Docs' document groups.
    k (int): folds.
    seed (int): seed of the split.
    RETURNS (List[List[int]]): Doc indices per fold, sorted; a group's Docs are never in two folds.
    """
    fold_of = {g: f for f, groups in enumerate(make_folds(grouping.n_groups, k, seed=seed)) for g in groups}
    out: List[List[int]] = [[] for _ in range(k)]
    for i, group in enumerate(grouping.groups):
        out[fold_of[group]].append(i)
    return out


def metric_value(metrics: Dict[str, Any], path: Sequence[str]) -> float:
    """A nested metric, e.g. ``("relaxed", "partial", "f")``."""
    value: Any = metrics
    for key in path:
        value = value[key]
    return float(value)


def summarise_folds(fold_metrics: List[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
    """Mean and standard deviation of every headline metric over folds."""
    out = {}
    for name, path in HEADLINE.items():
        values = [metric_value(m, path) for m in fold_metrics]
        out[name] = {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}
    return out


def cross_validate(
    base: Union[str, Path],
    data: Sequence[Path],
    output_dir: Path,
    *,
    backbone: Union[str, Path, None] = None,
    head: Union[str, Path, None] = None,
    adversarial: Union[str, Path, None] = None,
    overrides: Optional[Dict[str, Any]] = None,
    folds: int = 5,
    seed: int = 0,
    gpu_id: int = -1,
    n_bootstrap: int = 200,
    on_fold: Optional[Callable[[int, Dict[str, Any]], None]] = None,
    on_start: Optional[Callable[[int, Dict[str, int]], None]] = None,
    on_grouping: Optional[Callable[[DocumentGroups], None]] = None,
) -> Dict[str, Any]:
    """Train and score ``folds`` pipelines; write ``fold_k/`` folders and ``cv.json``.

    base (Union[str, Path]): base config path or shipped name.
    data (Sequence[Path]): corpus files, folders or DocBins, pooled.
    output_dir (Path): where folds, models and ``cv.json`` go.
    backbone (Union[str, Path, None]): backbone file or shipped name.
    head (Union[str, Path, None]): ``ner`` or ``tagger``.
    adversarial (Union[str, Path, None]): ``fgsm`` or ``pgd`` (adversarial training), or a file; ``none``: without.
    overrides (Optional[Dict[str, Any]]): ``--section.key`` overrides.
    folds (int): number of folds.
    seed (int): seed of the fold split.
    gpu_id (int): GPU index, -1 for CPU.
    n_bootstrap (int): bootstrap resamples per fold.
    on_fold (Callable): called with (fold index, its metrics) after each fold.
    on_start (Callable): called with (fold index, Docs per split) before each fold.
    on_grouping (Callable): called with the Docs' document groups before the first fold
        (e.g. to warn when documents are unknown).
    RETURNS (Dict[str, Any]): what ``cv.json`` holds.
    """
    from spacy.vocab import Vocab

    from ..corpus.docbin import save_docbin
    from ..corpus.splits import load_grouped
    from ..training.config import build_config
    from ..training.run import run_training
    from ..evaluation.predict import evaluate_model

    vocab = Vocab()
    docs, grouping = load_grouped(data, vocab=vocab)
    fold_ids = assign_folds(grouping, folds, seed=seed)
    if on_grouping is not None:
        on_grouping(grouping)
    overrides = dict(overrides or {})
    explicit = "training.optimizer.learn_rate.total_steps" in overrides
    results, runs = [], []
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
        if on_start is not None:
            on_start(k, {name: len(part) for name, part in split.items()})
        config: Config = build_config(base, backbone=backbone, head=head, adversarial=adversarial, overrides={
            **overrides, "paths.train": str(fold_dir / "train.spacy"), "paths.dev": str(fold_dir / "dev.spacy")})
        record = run_training(config, fold_dir / "model", gpu_id=gpu_id, explicit_total_steps=explicit)
        _, metrics = evaluate_model(fold_dir / "model" / "model-best", fold_dir / "test.spacy",
                                    gpu_id=gpu_id, n_bootstrap=n_bootstrap, seed=seed)
        metrics["run"] = {key: value for key, value in record.to_dict().items() if key != "config"}
        write_json(metrics, fold_dir / "metrics.json")
        results.append(metrics)
        runs.append(metrics["run"])
        if on_fold is not None:
            on_fold(k, metrics)
    summary = {
        "folds": folds, "seed": seed, "n_documents": len(docs), "n_groups": grouping.n_groups,
        "grouping": grouping.describe(), "summary": summarise_folds(results),
        "per_fold": [{name: metric_value(m, path) for name, path in HEADLINE.items()} for m in results],
        "runs": runs,
    }
    write_json(summary, output_dir / "cv.json")
    return summary
