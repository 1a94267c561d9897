"""Per-corpus evaluation over a corpus mix, as the HUNER/HunFlair anchors do it (``evaluate MODEL MIX.yml``).

Each corpus's split is scored **only on the types that corpus annotates**: a
correct gene found in a disease-only corpus is not a false positive, so the
pipeline's predictions of other types are set aside before scoring. Every
corpus gets strict scores (spaCy's, exact boundaries and type) and lenient ones
(any overlap with the same type, the "partial match" HunFlair reports), overall
and per type, with a bootstrap interval on the strict F1.
"""
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

from spacy.util import registry

from .scoring import SentencePair, score_relaxed

if TYPE_CHECKING:
    from spacy.tokens import Doc


def restrict(doc: "Doc", types: Sequence[str]) -> "Doc":
    """A copy of ``doc`` keeping only the entities of ``types`` (the rest become ``O``).

    doc (Doc): a predicted Doc.
    types (Sequence[str]): the types to keep.
    RETURNS (Doc): the copy.
    """
    copy = doc.copy()
    copy.set_ents([e for e in copy.ents if e.label_ in set(types)], default="outside")
    return copy


def score_annotated_ner(examples: Iterable[Any], **kwargs: Any) -> Dict[str, Any]:
    """spaCy's NER scores, each Example's predictions restricted to the types its corpus annotates.

    examples (Iterable[Example]): dev Examples, from a corpus mix (others are scored as they are).
    RETURNS (Dict[str, Any]): ``ents_p``, ``ents_r``, ``ents_f``, ``ents_per_type``.
    """
    from spacy.scorer import get_ner_prf
    from spacy.training import Example

    from ..corpus.mixes import annotated_types

    restricted = []
    for eg in examples:
        types = annotated_types(eg.reference)
        restricted.append(eg if types is None else Example(restrict(eg.predicted, types), eg.reference))
    return get_ner_prf(restricted, **kwargs)


@registry.scorers("spacy_bioner.annotated_ner_scorer.v1")
def make_annotated_ner_scorer() -> Callable[..., Dict[str, Any]]:
    """The dev scorer of a corpus mix: a correct entity of a type the corpus does not annotate is not an error."""
    return score_annotated_ner


def only_type(pairs: Sequence[SentencePair], label: str) -> List[SentencePair]:
    """The pairs with the entities of one type only."""
    return [replace(p, gold=[e for e in p.gold if e[2] == label], pred=[e for e in p.pred if e[2] == label])
            for p in pairs]


def corpus_scores(pairs: Sequence[SentencePair], metrics: Dict[str, Any], *, types: Sequence[str]) -> Dict[str, Any]:
    """Strict and lenient P/R/F overall and per annotated type, from a corpus's scored pairs.

    pairs (Sequence[SentencePair]): gold and restricted predictions.
    metrics (Dict[str, Any]): :func:`~spacy_bioner.evaluation.scoring.score_pairs` of those pairs.
    types (Sequence[str]): the types the corpus annotates.
    RETURNS (Dict[str, Any]): ``strict``, ``lenient`` (each ``p``, ``r``, ``f``), ``per_type``
        (type → ``strict`` and ``lenient`` F1 and ``support``), ``bootstrap``, counts.
    """
    sp = metrics["spacy"]
    lenient = metrics["relaxed"]["type"]
    per_type = {}
    for label in types:
        sub = only_type(pairs, label)
        strict = sp["ents_per_type"].get(label, {"p": 0.0, "r": 0.0, "f": 0.0})
        per_type[label] = {"strict": strict, "lenient": score_relaxed(sub)["type"],
                           "support": sum(len(p.gold) for p in sub)}
    return {"types": list(types), "strict": {"p": sp["ents_p"], "r": sp["ents_r"], "f": sp["ents_f"]},
            "lenient": {k: lenient[k] for k in ("p", "r", "f")}, "per_type": per_type,
            "bootstrap": metrics["bootstrap"], "n_gold": metrics["n_gold"], "n_pred": metrics["n_pred"],
            "n_sentences": metrics["n_sentences"], "n_tokens": metrics["n_tokens"]}


def evaluate_mix(model: Union[str, Path], mix: Union[str, Path], *, split: str = "test",
                 corpora: Optional[Sequence[str]] = None, corpora_dir: Union[str, Path, None] = None, limit: int = 0, gpu_id: int = -1, batch_size: int = 64,
                 n_bootstrap: int = 1000, seed: int = 0, length_buckets: float = 0.8, int8: bool = False,
                 runtime: str = "torch", warn: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Score a pipeline on every corpus of a mix, each on the types it annotates.

    model (Union[str, Path]): pipeline folder or package name.
    mix (Union[str, Path]): a mix file or a shipped mix's name (``huner-heldout``).
    split (str): the corpora's split to score (``test``, ``dev``, ``train``).
    corpora (Optional[Sequence[str]]): only these corpora of the mix (None: all).
    corpora_dir (Union[str, Path, None]): where the mix's relative corpus paths start.
    limit (int): at most this many documents per corpus (0: all; quick checks).
    gpu_id (int): GPU index, -1 for CPU.
    batch_size (int): Docs per ``nlp.pipe`` batch.
    n_bootstrap (int): bootstrap resamples of each corpus's strict F1.
    seed (int): bootstrap seed.
    length_buckets (float): length-bucket ratio (0: off).
    int8 (bool): int8 dynamic quantization.
    runtime (str): ``torch``, ``onnx`` or ``auto``.
    warn (Callable[[str], None]): told about a corpus type the pipeline never predicts.
    RETURNS (Dict[str, Any]): ``mix``, ``split``, ``corpora`` (name → :func:`corpus_scores` plus its
        path), and ``macro`` (mean strict and lenient F1 over the corpora).
    """
    from ..corpus.mixes import corpus_docs, load_mix
    from ..gpu import require_gpu
    from .predict import entity_labels, load_pipeline, predict, register_components, score_docs, speed_up

    require_gpu(gpu_id)
    m = load_mix(mix, corpora_dir=corpora_dir)
    chosen = [m.corpus(name) for name in corpora] if corpora else m.corpora
    nlp = load_pipeline(model, register=register_components)
    speed_up(nlp, gpu_id=gpu_id, length_buckets=length_buckets, int8=int8, runtime=runtime)
    known = entity_labels(nlp)
    out: Dict[str, Any] = {"mix": m.name, "mix_path": str(m.path), "split": split, "corpora": {}}
    for corpus in chosen:
        gold = corpus_docs(corpus, split, vocab=nlp.vocab, seed=m.seed)
        gold = gold[:limit] if limit else gold
        if not gold:
            continue
        never = sorted(set(corpus.annotates) - (known or set()))
        if never and warn is not None:
            warn(f"{corpus.name}: the pipeline never predicts {', '.join(never)}; those mentions count as misses")
        pred = [restrict(doc, corpus.annotates) for doc in predict(nlp, gold, batch_size=batch_size)]
        pairs, metrics = score_docs(gold, pred, n_bootstrap=n_bootstrap, seed=seed)
        out["corpora"][corpus.name] = {"path": str(corpus.path), **corpus_scores(pairs, metrics,
                                                                                 types=corpus.annotates)}
    rows = list(out["corpora"].values())
    out["macro"] = {kind: sum(r[kind]["f"] for r in rows) / len(rows) if rows else 0.0
                    for kind in ("strict", "lenient")}
    return out


def mix_table(result: Dict[str, Any]) -> str:
    """Markdown: one row per corpus × annotated type (strict and lenient F1, support), then each corpus."""
    lines = [f"# {result['mix']} ({result['split']} splits)", "",
             "Each corpus is scored only on the types it annotates. F1 in %.", "",
             "| corpus | type | strict F1 | lenient F1 | gold mentions |", "|---|---|---:|---:|---:|"]
    for name, r in result["corpora"].items():
        for label, t in r["per_type"].items():
            lines.append(f"| {name} | {label} | {100 * t['strict']['f']:.2f} | {100 * t['lenient']['f']:.2f} | "
                         f"{t['support']} |")
        b = r["bootstrap"]
        lines.append(f"| {name} | all | {100 * r['strict']['f']:.2f} ({100 * b['low']:.1f}–{100 * b['high']:.1f}) | "
                     f"{100 * r['lenient']['f']:.2f} | {r['n_gold']} |")
    lines += ["", f"Macro average over corpora: strict {100 * result['macro']['strict']:.2f}, "
                  f"lenient {100 * result['macro']['lenient']:.2f}.", ""]
    return "\n".join(lines)
