"""Score predicted entities against gold: spaCy's scorer and seqeval side by side,
per type, per gold entity length, strict and relaxed (SemEval-2013), untyped,
token accuracy, confusion and a bootstrap confidence interval.

Everything works on :class:`SentencePair` lists (the same tokens on both sides,
entities as token spans), so any system's output can be scored without a model.
All values are fractions in [0, 1].
"""
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab

from ..corpus.schemes import encode
from ..corpus.sentences import sentence_bounds
from ..types import EntitySpan

LENGTH_BUCKETS = ("1", "2", "3+")
RELAXED_SCHEMES = ("strict", "exact", "partial", "type")
MISSED = "(missed)"
SPURIOUS = "(spurious)"


class TokenMismatchError(ValueError):
    """Gold and predicted sides do not have the same tokens."""


@dataclass
class SentencePair:
    """One sentence with gold and predicted entities over the same tokens."""

    words: List[str]
    gold: List[EntitySpan]
    pred: List[EntitySpan]
    doc_index: int = 0


def _clip(ents: Iterable[Tuple[int, int, str]], start: int, end: int) -> List[EntitySpan]:
    return [(max(s, start) - start, min(e, end) - start, lab) for s, e, lab in ents if s < end and e > start]


def align_docs(gold_docs: Sequence[Doc], pred_docs: Sequence[Doc]) -> List[SentencePair]:
    """Pair gold and predicted entities sentence by sentence (gold's sentences).

    The two sides may group sentences into Docs differently, but their token
    streams must be identical; otherwise :class:`TokenMismatchError` names the
    first gold sentence that differs.
    """
    pred_words: List[str] = []
    pred_ents: List[Tuple[int, int, str]] = []
    for doc in pred_docs:
        offset = len(pred_words)
        pred_words.extend(t.text for t in doc)
        pred_ents.extend((e.start + offset, e.end + offset, e.label_) for e in doc.ents)
    pairs: List[SentencePair] = []
    cursor = 0
    ent_i = 0
    n_sent = 0
    for d, doc in enumerate(gold_docs):
        words = [t.text for t in doc]
        for start, end in sentence_bounds(doc):
            n_sent += 1
            sent_words = words[start:end]
            other = pred_words[cursor : cursor + len(sent_words)]
            if other != sent_words:
                if not other:
                    raise TokenMismatchError(
                        f"the predicted side ends after {cursor} tokens; gold goes on with sentence {n_sent} "
                        f"(document {d + 1}): {' '.join(sent_words[:12])!r}…"
                    )
                k = next((i for i, (a, b) in enumerate(zip(sent_words, other)) if a != b), len(other))
                raise TokenMismatchError(
                    f"tokens differ in sentence {n_sent} (document {d + 1}), token {k + 1}: "
                    f"gold {' '.join(sent_words)!r} vs predicted {' '.join(other)!r}"
                )
            g_end = cursor + len(sent_words)
            while ent_i < len(pred_ents) and pred_ents[ent_i][1] <= cursor:
                ent_i += 1
            j = ent_i
            while j < len(pred_ents) and pred_ents[j][0] < g_end:
                j += 1
            pred = _clip(pred_ents[ent_i:j], cursor, g_end)
            gold = _clip(((e.start, e.end, e.label_) for e in doc.ents), start, end)
            pairs.append(SentencePair(words=sent_words, gold=gold, pred=pred, doc_index=d))
            cursor = g_end
    if cursor != len(pred_words):
        raise TokenMismatchError(
            f"predicted side has {len(pred_words) - cursor} tokens more than gold after sentence {n_sent}: "
            f"{' '.join(pred_words[cursor:cursor + 12])!r}…"
        )
    return pairs


def _prf(tp: float, n_pred: float, n_gold: float) -> Dict[str, float]:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_gold if n_gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"p": p, "r": r, "f": f}


def length_bucket(length: int) -> str:
    return "1" if length == 1 else "2" if length == 2 else "3+"


def score_spacy(pairs: Sequence[SentencePair], *, vocab: Optional[Vocab] = None) -> Dict[str, Any]:
    """spaCy's own NER scores (``Scorer.score_spans`` via ``get_ner_prf``)."""
    from spacy.scorer import get_ner_prf

    vocab = vocab or Vocab()
    examples = []
    for pair in pairs:
        n = len(pair.words)
        gold = Doc(vocab, words=pair.words, ents=_iob(pair.gold, n))
        pred = Doc(vocab, words=pair.words, ents=_iob(pair.pred, n))
        examples.append(Example(pred, gold))
    scores = get_ner_prf(examples)
    per_type = scores.get("ents_per_type") or {}
    return {
        "ents_p": scores["ents_p"] or 0.0,
        "ents_r": scores["ents_r"] or 0.0,
        "ents_f": scores["ents_f"] or 0.0,
        "ents_per_type": per_type,
    }


def _iob(spans: Sequence[EntitySpan], n: int) -> List[str]:
    return encode(spans, n, scheme="iob2")


def score_seqeval(pairs: Sequence[SentencePair]) -> Dict[str, Any]:
    """seqeval in strict mode with the IOB2 scheme, plus token accuracy."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.scheme import IOB2

    y_true = [_iob(p.gold, len(p.words)) for p in pairs]
    y_pred = [_iob(p.pred, len(p.words)) for p in pairs]
    if not any(t != "O" for s in y_true + y_pred for t in s):
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "per_type": {}, "token_accuracy": accuracy_score(y_true, y_pred) if y_true else 0.0}
    report = classification_report(y_true, y_pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    micro = report.pop("micro avg")
    for key in ("macro avg", "weighted avg"):
        report.pop(key, None)
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "per_type": {
            label: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                    "f1": float(v["f1-score"]), "support": int(v["support"])}
            for label, v in sorted(report.items())
        },
        "token_accuracy": float(accuracy_score(y_true, y_pred)),
    }


def match_entities(
    gold: Sequence[EntitySpan], pred: Sequence[EntitySpan]
) -> Tuple[List[Tuple[EntitySpan, EntitySpan]], List[EntitySpan], List[EntitySpan]]:
    """One-to-one matching of overlapping entities within a sentence.

    Each predicted entity (left to right) takes the best still-unmatched gold
    entity it overlaps: same boundaries and type, then same boundaries, then
    overlap with the same type, then any overlap (most overlap first).
    RETURNS: (matched pairs, missed gold, spurious predictions).
    """
    free = list(gold)
    pairs = []
    spurious = []
    for p in sorted(pred):
        best, best_key = None, None
        for g in free:
            overlap = min(p[1], g[1]) - max(p[0], g[0])
            if overlap <= 0:
                continue
            same_bounds, same_type = p[:2] == g[:2], p[2] == g[2]
            key = (same_bounds and same_type, same_bounds, same_type, overlap)
            if best_key is None or key > best_key:
                best, best_key = g, key
        if best is None:
            spurious.append(p)
        else:
            free.remove(best)
            pairs.append((best, p))
    return pairs, free, spurious


def score_relaxed(pairs: Sequence[SentencePair]) -> Dict[str, Dict[str, float]]:
    """SemEval-2013 Task 9.1 schemes over a one-to-one overlap matching.

    strict: same boundaries and type; exact: same boundaries, any type;
    partial: same boundaries count 1, other overlaps ½, any type;
    type: any overlap with the same type. Precision = credit / predicted,
    recall = credit / gold (unmatched gold = missed, unmatched prediction = spurious).
    """
    credit = Counter()
    n_gold = n_pred = 0
    for pair in pairs:
        n_gold += len(pair.gold)
        n_pred += len(pair.pred)
        matched, _, _ = match_entities(pair.gold, pair.pred)
        for g, p in matched:
            same_bounds = g[:2] == p[:2]
            same_type = g[2] == p[2]
            credit["strict"] += same_bounds and same_type
            credit["exact"] += same_bounds
            credit["partial"] += 1.0 if same_bounds else 0.5
            credit["type"] += same_type
    return {name: _prf(credit[name], n_pred, n_gold) for name in RELAXED_SCHEMES}


def score_by_length(pairs: Sequence[SentencePair]) -> Dict[str, Dict[str, float]]:
    """Strict scores per entity length in tokens (1, 2, 3+).

    Recall counts gold entities of that length; precision counts predicted
    entities of that length (a correct prediction has its gold's length);
    support is the number of gold entities.
    """
    tp, n_pred, n_gold = Counter(), Counter(), Counter()
    for pair in pairs:
        gold = set(pair.gold)
        for g in pair.gold:
            n_gold[length_bucket(g[1] - g[0])] += 1
        for p in pair.pred:
            bucket = length_bucket(p[1] - p[0])
            n_pred[bucket] += 1
            tp[bucket] += p in gold
    return {b: {**_prf(tp[b], n_pred[b], n_gold[b]), "support": n_gold[b]} for b in LENGTH_BUCKETS}


def score_untyped(pairs: Sequence[SentencePair]) -> Dict[str, float]:
    """Boundary-only scores: an entity is right if its span is, whatever its type."""
    tp = n_pred = n_gold = 0
    for pair in pairs:
        gold = Counter(g[:2] for g in pair.gold)
        pred = Counter(p[:2] for p in pair.pred)
        tp += sum((gold & pred).values())
        n_pred += len(pair.pred)
        n_gold += len(pair.gold)
    return _prf(tp, n_pred, n_gold)


def confusion(pairs: Sequence[SentencePair]) -> Dict[str, Dict[str, int]]:
    """Gold type × predicted type over overlapping matches, plus missed and spurious."""
    table: Dict[str, Counter] = defaultdict(Counter)
    for pair in pairs:
        matched, missed, spurious = match_entities(pair.gold, pair.pred)
        for g, p in matched:
            table[g[2]][p[2]] += 1
        for g in missed:
            table[g[2]][MISSED] += 1
        for p in spurious:
            table[SPURIOUS][p[2]] += 1
    return {gold: dict(sorted(row.items())) for gold, row in sorted(table.items())}


def bootstrap_f1(pairs: Sequence[SentencePair], *, n_samples: int = 1000, seed: int = 0) -> Dict[str, float]:
    """95 % confidence interval of strict micro F1, resampling sentences with replacement."""
    counts = np.array(
        [(len(set(p.gold) & set(p.pred)), len(p.pred), len(p.gold)) for p in pairs], dtype=np.float64
    ).reshape(-1, 3)
    if not len(counts) or n_samples <= 0:
        return {"low": 0.0, "high": 0.0, "n_samples": int(n_samples), "seed": seed}
    rng = np.random.default_rng(seed)
    f1s = np.empty(n_samples)
    for start in range(0, n_samples, 100):
        k = min(100, n_samples - start)
        idx = rng.integers(0, len(counts), size=(k, len(counts)))
        tp, n_pred, n_gold = (counts[idx].sum(axis=1)).T
        p = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
        r = np.divide(tp, n_gold, out=np.zeros_like(tp), where=n_gold > 0)
        f1s[start : start + k] = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    low, high = np.percentile(f1s, [2.5, 97.5])
    return {"low": float(low), "high": float(high), "n_samples": int(n_samples), "seed": seed}


def bootstrap_by_type(pairs: Sequence[SentencePair], *, n_samples: int = 1000, seed: int = 0) -> Dict[str, Dict[str, float]]:
    """95 % confidence interval of strict F1 per entity type (sentences resampled with replacement).

    The same sentence resamples serve every type, so the intervals are comparable.
    RETURNS (Dict[str, Dict[str, float]]): ``label → {"f", "low", "high"}``.
    """
    labels = sorted({s[2] for p in pairs for s in (*p.gold, *p.pred)})
    if not pairs or not labels or n_samples <= 0:
        return {}
    index = {label: i for i, label in enumerate(labels)}
    counts = np.zeros((len(pairs), len(labels), 3), dtype=np.float64)  # tp, n_pred, n_gold
    for row, p in enumerate(pairs):
        for span in set(p.gold) & set(p.pred):
            counts[row, index[span[2]], 0] += 1
        for span in p.pred:
            counts[row, index[span[2]], 1] += 1
        for span in p.gold:
            counts[row, index[span[2]], 2] += 1

    def f1(total: np.ndarray) -> np.ndarray:
        tp, n_pred, n_gold = total[..., 0], total[..., 1], total[..., 2]
        prec = np.divide(tp, n_pred, out=np.zeros_like(tp), where=n_pred > 0)
        rec = np.divide(tp, n_gold, out=np.zeros_like(tp), where=n_gold > 0)
        return np.divide(2 * prec * rec, prec + rec, out=np.zeros_like(prec), where=(prec + rec) > 0)

    rng = np.random.default_rng(seed)
    samples = np.empty((n_samples, len(labels)))
    for start in range(0, n_samples, 100):
        k = min(100, n_samples - start)
        idx = rng.integers(0, len(pairs), size=(k, len(pairs)))
        samples[start : start + k] = f1(counts[idx].sum(axis=1))
    low, high = np.percentile(samples, [2.5, 97.5], axis=0)
    point = f1(counts.sum(axis=0))
    return {label: {"f": float(point[i]), "low": float(low[i]), "high": float(high[i])}
            for i, label in enumerate(labels)}


def score_pairs(pairs: Sequence[SentencePair], *, n_bootstrap: int = 1000, seed: int = 0) -> Dict[str, Any]:
    """Every metric, as the dict written to ``metrics.json``."""
    seq = score_seqeval(pairs)
    token_accuracy = seq.pop("token_accuracy")
    return {
        "spacy": score_spacy(pairs),
        "seqeval": seq,
        "by_length": score_by_length(pairs),
        "relaxed": score_relaxed(pairs),
        "untyped": score_untyped(pairs),
        "token_accuracy": token_accuracy,
        "confusion": confusion(pairs),
        "n_gold": sum(len(p.gold) for p in pairs),
        "n_pred": sum(len(p.pred) for p in pairs),
        "n_sentences": len(pairs),
        "n_tokens": sum(len(p.words) for p in pairs),
        "bootstrap": bootstrap_f1(pairs, n_samples=n_bootstrap, seed=seed),
    }


def errors(pairs: Sequence[SentencePair], *, kind: str, top: int = 20, context: int = 5) -> List[Dict[str, Any]]:
    """The most frequent false positives (``kind="fp"``) or negatives (``"fn"``), with an example context."""
    found: Counter = Counter()
    example: Dict[Tuple[str, str], str] = {}
    for pair in pairs:
        gold, pred = set(pair.gold), set(pair.pred)
        wrong = (pred - gold) if kind == "fp" else (gold - pred)
        for s, e, label in wrong:
            key = (" ".join(pair.words[s:e]), label)
            found[key] += 1
            if key not in example:
                left = " ".join(pair.words[max(0, s - context) : s])
                right = " ".join(pair.words[e : e + context])
                example[key] = f"{left} [{key[0]}] {right}".strip()
    return [
        {"text": text, "label": label, "count": n, "context": example[(text, label)]}
        for (text, label), n in found.most_common(top)
    ]
