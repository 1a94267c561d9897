"""Character-level scoring of entity mentions in documents (standoff gold vs predictions).

Gold and predictions are documents with character offsets (PubTator, BioC, brat,
``annotate``'s JSONL, read by :mod:`spacy_bioner.corpus.standoff`), not tokens, so
any system's output is scored on the text itself. A mention is ``(start, end, type)``
in its document; the same ``(start, end, type)`` listed twice in one document is one
mention (duplicates are collapsed and counted).

Schemes (all fractions in [0, 1]):

* ``strict``: same offsets and type (a set intersection per document);
* ``exact``, ``partial``, ``type``: the relaxed SemEval-2013 schemes the token-level
  scores report (:func:`~spacy_bioner.evaluation.scoring.score_relaxed`, the same
  one-to-one overlap matching), here over character offsets in one document;
* ``lenient``: HunFlair2's ``match_standard(1)`` — same type, start and end each off
  by at most one character (one-to-one: exact matches first, then the nearest);
* ``bc5cdr``: the official BioCreative V CDR mention evaluation (``bc5cdr_eval.jar``,
  ``Evaluate mention``): sets of ``(document, start, end, type)`` of the chosen types,
  predictions in documents without any gold mention of those types ignored.

Bootstrap intervals resample documents (:func:`~spacy_bioner.evaluation.scoring.bootstrap_f1`).
"""
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Set, Tuple, Union

from .scoring import SentencePair, bootstrap_by_type, bootstrap_f1, score_relaxed

#: A mention in a document: character start, end (exclusive) and type.
CharSpan = Tuple[int, int, str]
#: Schemes reported per type and overall.
TYPED_SCHEMES = ("strict", "lenient", "bc5cdr")
#: Every scheme of the headline table, in order.
CHAR_SCHEMES = ("strict", "exact", "partial", "type", "lenient", "bc5cdr")


@dataclass
class DocumentPair:
    """Gold and predicted mentions of one document (sorted, duplicates collapsed)."""

    doc_id: str
    gold: List[CharSpan]
    pred: List[CharSpan]


@dataclass
class MentionSet:
    """The mentions of a collection of documents, by document id, in reading order.

    docs (Dict[str, List[CharSpan]]): mentions per document (sorted, no duplicates).
    duplicates (int): mentions dropped because the same span and type was already listed.
    dropped (Counter): mentions dropped by type (``--labels``, or mapped to None by ``--label-map``).
    """

    docs: Dict[str, List[CharSpan]] = field(default_factory=dict)
    duplicates: int = 0
    dropped: Counter = field(default_factory=Counter)

    @property
    def n_mentions(self) -> int:
        return sum(len(v) for v in self.docs.values())


def collect_mentions(
    docs: Iterable[Tuple[str, Iterable[CharSpan]]],
    *,
    labels: Optional[Collection] = None,
    label_map: Optional[Mapping[str, Optional[str]]] = None,
) -> MentionSet:
    """Mentions per document from ``(doc_id, [(start, end, type), …])`` pairs.

    docs (Iterable[Tuple[str, Iterable[CharSpan]]]): documents in reading order; a
        document id seen again adds to the same document.
    labels (Optional[Collection]): keep only these types (after mapping); None keeps all.
    label_map (Optional[Mapping[str, Optional[str]]]): type → new type, or None to drop.
    RETURNS (MentionSet): the mentions, deduplicated.
    """
    found: Dict[str, Set[CharSpan]] = {}
    out = MentionSet()
    for doc_id, spans in docs:
        bucket = found.setdefault(str(doc_id), set())
        for start, end, label in spans:
            if label_map is not None and label in label_map:
                if label_map[label] is None:
                    out.dropped[f"{label} (mapped to null)"] += 1
                    continue
                label = label_map[label]
            if labels is not None and label not in labels:
                out.dropped[label] += 1
                continue
            span = (int(start), int(end), str(label))
            if span in bucket:
                out.duplicates += 1
            bucket.add(span)
    out.docs = {doc_id: sorted(spans) for doc_id, spans in found.items()}
    return out


def document_spans(documents: Iterable[Any]) -> Iterator[Tuple[str, List[CharSpan]]]:
    """``(id, [(start, end, type), …])`` of documents with ``id`` and ``mentions``
    (each with ``start``, ``end`` and ``type``), e.g. :mod:`spacy_bioner.corpus.standoff`'s.
    """
    for doc in documents:
        yield str(doc.id), [(m.start, m.end, m.type) for m in doc.mentions]


def is_standoff(path: Union[str, Path], fmt: Optional[str] = None) -> bool:
    """The path holds standoff documents (PubTator, BioC, brat, annotate's JSONL): scored at character level."""
    from ..corpus.standoff import detect_format

    return fmt is not None or Path(path).exists() and detect_format(Path(path)) is not None


def read_mentions(
    path: Union[str, Path],
    *,
    fmt: Optional[str] = None,
    labels: Optional[Collection] = None,
    label_map: Optional[Mapping[str, Optional[str]]] = None,
) -> MentionSet:
    """The mentions of every document of a standoff file or folder, or of a ``.spacy`` DocBin
    (its Docs' text and ``doc.ents``, ids from ``user_data``, as ``convert`` writes them).

    path (Union[str, Path]): the file or folder.
    fmt (Optional[str]): pubtator, bioc, brat or jsonl; None: from the suffixes.
    labels (Optional[Collection]): keep only these types (after mapping).
    label_map (Optional[Mapping[str, Optional[str]]]): type → type, or None to drop.
    RETURNS (MentionSet): mentions per document id. A mention's ``start``/``end`` span all
        its fragments when it is discontinuous; composite mentions count once.
    """
    path = Path(path)
    if path.suffix == ".spacy" and fmt is None:
        from ..corpus.align import doc_to_standoff
        from ..corpus.docbin import load_docbin

        documents: Iterable[Any] = (doc_to_standoff(doc, default_id=f"{path.name}#{i}")
                                    for i, doc in enumerate(load_docbin(path)))
    else:
        from ..corpus.standoff import read_documents

        documents = read_documents(path, fmt)
    return collect_mentions(document_spans(documents), labels=labels, label_map=label_map)


def pair_documents(gold: MentionSet, pred: MentionSet) -> Tuple[List[DocumentPair], List[str]]:
    """Pair gold and predicted documents by id, in gold's order.

    A gold document without predictions has none; a predicted document that gold
    does not have cannot be scored and is left out (its id is returned).
    RETURNS (Tuple[List[DocumentPair], List[str]]): the pairs, and predicted ids unknown to gold.
    """
    pairs = [DocumentPair(doc_id, spans, pred.docs.get(doc_id, [])) for doc_id, spans in gold.docs.items()]
    unknown = [doc_id for doc_id in pred.docs if doc_id not in gold.docs]
    return pairs, unknown


def _prf(tp: float, n_pred: float, n_gold: float) -> Dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f": f}


def _counts(tp: int, n_pred: int, n_gold: int) -> Dict[str, Any]:
    return {"tp": tp, "fp": n_pred - tp, "fn": n_gold - tp, **_prf(tp, n_pred, n_gold), "support": n_gold}


def lenient_matches(gold: Sequence[CharSpan], pred: Sequence[CharSpan], *, shift: int = 1) -> int:
    """One-to-one matches of same-type mentions whose start and end each differ by at most ``shift``.

    Exact matches are taken first, then the remaining pairs closest first
    (sum of the two shifts), ties by position, so the count does not depend on order.
    """
    free_gold = set(gold)
    free_pred = set(pred)
    n = 0
    for span in sorted(free_gold & free_pred):
        free_gold.discard(span)
        free_pred.discard(span)
        n += 1
    if not shift:
        return n
    candidates = sorted(
        (abs(g[0] - p[0]) + abs(g[1] - p[1]), g, p)
        for g in free_gold for p in free_pred
        if g[2] == p[2] and abs(g[0] - p[0]) <= shift and abs(g[1] - p[1]) <= shift
    )
    for _, g, p in candidates:
        if g in free_gold and p in free_pred:
            free_gold.discard(g)
            free_pred.discard(p)
            n += 1
    return n


def bc5cdr_counts(pairs: Sequence[DocumentPair], types: Collection) -> Dict[str, Any]:
    """TP/FP/FN as the official BioCreative V CDR mention evaluation counts them.

    ``bc5cdr_eval.jar`` (``ncbi.bc5cdr_eval.Evaluate mention TYPES …``) builds a set of
    ``(document, start, end, type)`` for gold and for predictions, keeping only
    the given types, then drops predictions whose document has no gold tuple
    (``removeNonGoldDocumentIDs``): TP = both sets, FN = gold only, FP = predictions only.
    """
    types = set(types)
    gold = {(d.doc_id, *s) for d in pairs for s in d.gold if s[2] in types}
    gold_docs = {t[0] for t in gold}
    pred = {(d.doc_id, *s) for d in pairs for s in d.pred if s[2] in types and d.doc_id in gold_docs}
    tp = len(gold & pred)
    return _counts(tp, len(pred), len(gold))


def score_char_pairs(
    pairs: Sequence[DocumentPair], *, n_bootstrap: int = 1000, seed: int = 0
) -> Dict[str, Any]:
    """Every character-level metric of paired documents, as the dict written to JSON.

    RETURNS (Dict[str, Any]): ``overall`` (scheme → tp/fp/fn/p/r/f; the relaxed
        schemes p/r/f only), ``per_type`` (type → strict/lenient/bc5cdr), counts, and
        ``bootstrap`` (strict micro F1) and ``bootstrap_per_type`` (strict F1 per type),
        resampling documents.
    """
    labels = sorted({s[2] for d in pairs for s in (*d.gold, *d.pred)})
    tp, n_pred, n_gold, len_tp = Counter(), Counter(), Counter(), Counter()
    for d in pairs:
        gold, pred = set(d.gold), set(d.pred)
        for s in gold & pred:
            tp[s[2]] += 1
        for s in d.gold:
            n_gold[s[2]] += 1
        for s in d.pred:
            n_pred[s[2]] += 1
        by_type_gold: Dict[str, List[CharSpan]] = defaultdict(list)
        by_type_pred: Dict[str, List[CharSpan]] = defaultdict(list)
        for s in d.gold:
            by_type_gold[s[2]].append(s)
        for s in d.pred:
            by_type_pred[s[2]].append(s)
        for label in set(by_type_gold) | set(by_type_pred):
            len_tp[label] += lenient_matches(by_type_gold[label], by_type_pred[label])
    total_gold, total_pred = sum(n_gold.values()), sum(n_pred.values())
    sentence_pairs = [SentencePair(words=[], gold=list(d.gold), pred=list(d.pred), doc_index=i)
                      for i, d in enumerate(pairs)]
    relaxed = score_relaxed(sentence_pairs)
    overall: Dict[str, Any] = {
        "strict": _counts(sum(tp.values()), total_pred, total_gold),
        **{name: relaxed[name] for name in ("exact", "partial", "type")},
        "lenient": _counts(sum(len_tp.values()), total_pred, total_gold),
        "bc5cdr": bc5cdr_counts(pairs, labels),
    }
    per_type = {
        label: {
            "strict": _counts(tp[label], n_pred[label], n_gold[label]),
            "lenient": _counts(len_tp[label], n_pred[label], n_gold[label]),
            "bc5cdr": bc5cdr_counts(pairs, [label]),
        }
        for label in labels
    }
    return {
        "level": "character",
        "overall": overall,
        "per_type": per_type,
        "n_documents": len(pairs),
        "n_gold": total_gold,
        "n_pred": total_pred,
        "bootstrap": bootstrap_f1(sentence_pairs, n_samples=n_bootstrap, seed=seed),
        "bootstrap_per_type": bootstrap_by_type(sentence_pairs, n_samples=n_bootstrap, seed=seed),
    }


def score_mentions(
    gold: MentionSet, pred: MentionSet, *, n_bootstrap: int = 1000, seed: int = 0
) -> Dict[str, Any]:
    """Pair the documents and score them (:func:`score_char_pairs`), noting what was left out."""
    pairs, unknown = pair_documents(gold, pred)
    metrics = score_char_pairs(pairs, n_bootstrap=n_bootstrap, seed=seed)
    metrics["duplicates"] = {"gold": gold.duplicates, "pred": pred.duplicates}
    metrics["dropped"] = {"gold": dict(sorted(gold.dropped.items())), "pred": dict(sorted(pred.dropped.items()))}
    metrics["pred_documents_not_in_gold"] = {"count": len(unknown), "ids": unknown[:20],
                                             "mentions": sum(len(pred.docs[i]) for i in unknown)}
    return metrics


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown_char_report(metrics: Dict[str, Any], *, title: str = "Character-level NER evaluation") -> str:
    """A Markdown page: headline schemes, per type, bootstrap intervals and what was left out."""
    o = metrics["overall"]
    lines = [f"# {title}", "",
             f"{metrics['n_documents']} documents, {metrics['n_gold']} gold and {metrics['n_pred']} predicted "
             "mentions, scored at character offsets. Scores in %.", "",
             "| scheme | TP | FP | FN | precision | recall | F1 |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name in CHAR_SCHEMES:
        v = o[name]
        counts = [str(v[k]) if k in v else "" for k in ("tp", "fp", "fn")]
        lines.append(f"| {name} | " + " | ".join(counts) + f" | {_pct(v['p'])} | {_pct(v['r'])} | {_pct(v['f'])} |")
    b = metrics["bootstrap"]
    lines += ["",
              "strict: same offsets and type; exact: same offsets, any type; partial: same offsets count 1, "
              "other overlaps ½; type: overlap with the same type; lenient: same type, each end off by at most "
              "one character (HunFlair2); bc5cdr: the official BioCreative V CDR mention evaluation "
              "(predictions in documents without gold mentions ignored).", ""]
    if b.get("n_samples"):
        lines += [f"Strict F1 95 % bootstrap interval ({b['n_samples']} resamples of documents, seed {b['seed']}): "
                  f"{_pct(b['low'])}–{_pct(b['high'])}.", ""]
    lines += ["## Per type", ""]
    if metrics["per_type"]:
        ci = metrics.get("bootstrap_per_type") or {}
        lines += ["| type | strict P | strict R | strict F1 | F1 95% CI | lenient F1 | bc5cdr F1 | support |",
                  "|---|---:|---:|---:|---|---:|---:|---:|"]
        for label, v in metrics["per_type"].items():
            s = v["strict"]
            interval = f"{_pct(ci[label]['low'])}–{_pct(ci[label]['high'])}" if label in ci else ""
            lines.append(f"| {label} | {_pct(s['p'])} | {_pct(s['r'])} | {_pct(s['f'])} | {interval} | "
                         f"{_pct(v['lenient']['f'])} | {_pct(v['bc5cdr']['f'])} | {s['support']} |")
    else:
        lines.append("No mentions of any type in the gold data or the predictions.")
    notes = []
    dup = metrics.get("duplicates") or {}
    if dup.get("gold") or dup.get("pred"):
        notes.append(f"Duplicate mentions collapsed: {dup.get('gold', 0)} gold, {dup.get('pred', 0)} predicted.")
    dropped = metrics.get("dropped") or {}
    for side in ("gold", "pred"):
        if dropped.get(side):
            listed = ", ".join(f"{k} ({n})" for k, n in dropped[side].items())
            notes.append(f"{'Gold' if side == 'gold' else 'Predicted'} mentions left out by --labels/--label-map: {listed}.")
    unknown = metrics.get("pred_documents_not_in_gold") or {}
    if unknown.get("count"):
        notes.append(f"{unknown['count']} predicted documents are not in gold and were not scored "
                     f"({unknown['mentions']} mentions), e.g. {', '.join(unknown['ids'][:5])}.")
    if notes:
        lines += ["", "## Left out", ""] + [f"* {n}" for n in notes]
    return "\n".join(lines) + "\n"


def write_char_outputs(metrics: Dict[str, Any], *, output: Optional[Path] = None, report: Optional[Path] = None,
                       title: str = "Character-level NER evaluation") -> None:
    """Write whichever of the metrics JSON and the Markdown report were asked for."""
    from .report import write_json

    if output is not None:
        write_json(metrics, output)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown_char_report(metrics, title=title), encoding="utf8")


def load_label_map(path: Union[str, Path]) -> Dict[str, Optional[str]]:
    """A label map from a JSON or YAML file: ``{source type: target type or null}``."""
    path = Path(path)
    text = path.read_text(encoding="utf8")
    if path.suffix.lower() in (".yml", ".yaml"):
        import srsly

        data = srsly.yaml_loads(text)
    else:
        data = json.loads(text)
    if not isinstance(data, dict) or not all(isinstance(v, (str, type(None))) for v in data.values()):
        raise ValueError(f"{path}: a label map is a mapping of type → type (or null to drop)")
    return {str(k): v for k, v in data.items()}
