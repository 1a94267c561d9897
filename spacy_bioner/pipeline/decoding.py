"""Tag sets and constrained decoding for token-classification heads.

A tag set is ``O`` plus ``B-X``/``I-X`` per entity label (IOB2) or
``B-X``/``I-X``/``L-X``/``U-X`` (BILUO). :func:`transition_mask` says which tag
may follow which (``I-X`` only inside an ``X`` entity; in BILUO every entity
closes with ``L``/``U``), and :func:`viterbi` finds the best sequence that
obeys it, so entities never come from an invalid sequence. Everything works on
NumPy or CuPy arrays alike (``xp``), batched over documents.
"""
from typing import List, Sequence, Tuple

import numpy

from ..models.buckets import padded_size_groups
from ..types import EntitySpan

#: Tag schemes a head can be trained with.
HEAD_SCHEMES = ("iob2", "bilou")


def tag_names(labels: Sequence[str], *, scheme: str) -> List[str]:
    """``O`` then each label's tags, in a fixed order.

    labels (Sequence[str]): entity labels.
    scheme (str): ``iob2`` or ``bilou``.
    RETURNS (List[str]): the tag names; index 0 is ``O``.
    """
    if scheme not in HEAD_SCHEMES:
        raise ValueError(f"unknown tag scheme {scheme!r}; choose one of {', '.join(HEAD_SCHEMES)}")
    prefixes = "BI" if scheme == "iob2" else "BILU"
    return ["O"] + [f"{p}-{label}" for label in labels for p in prefixes]


def _split(tag: str) -> Tuple[str, str]:
    return ("O", "") if tag == "O" else (tag[0], tag[2:])


def transition_mask(tags: Sequence[str]) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """Which transitions are valid.

    tags (Sequence[str]): tag names (``O``, ``B-X``, ``I-X``, ``L-X``, ``U-X``).
    RETURNS: ``allowed[i, j]`` (tag j may follow tag i), ``start[j]`` (may open a
        sentence), ``end[i]`` (may close one); boolean arrays.
    """
    parts = [_split(t) for t in tags]
    bilou = any(p in ("L", "U") for p, _ in parts)
    n = len(tags)
    allowed = numpy.zeros((n, n), dtype=bool)
    for i, (p_prev, l_prev) in enumerate(parts):
        inside = p_prev in ("B", "I")
        for j, (p_next, l_next) in enumerate(parts):
            if p_next in ("I", "L"):
                ok = inside and l_prev == l_next
            elif bilou and inside:
                ok = False  # an open BILUO entity must continue with I-/L- of its label
            else:
                ok = True  # O, B-, U- after O / a closed entity (IOB2: after anything)
            allowed[i, j] = ok
    start = numpy.array([p not in ("I", "L") for p, _ in parts])
    end = numpy.array([not (bilou and p in ("B", "I")) for p, _ in parts])
    return allowed, start, end


def viterbi(
    scores: Sequence, *, allowed, start, end, max_cells: int = 4_000_000
) -> List[numpy.ndarray]:
    """The best valid tag sequence per document.

    scores (Sequence[Floats2d]): per document, ``(n_tokens, n_tags)`` log-probabilities
        (NumPy or CuPy; all on the same device).
    allowed, start, end: from :func:`transition_mask`.
    max_cells (int): documents are decoded together, sorted by length, in groups
        whose padded ``batch × length × tags`` stays under this.
    RETURNS (List[numpy.ndarray]): tag ids per document (on the host).
    """
    out: List[numpy.ndarray] = [numpy.zeros((0,), dtype="int32") for _ in scores]
    for group in length_groups(scores, max_cells=max_cells):
        _viterbi_group([scores[k] for k in group], group, out, allowed, start, end)
    return out


def length_groups(scores: Sequence, *, max_cells: int) -> List[List[int]]:
    """The non-empty documents, sorted by length, in groups whose padded ``batch × length × tags``
    stays within ``max_cells`` (a longer document alone): :func:`~spacy_bioner.models.buckets.padded_size_groups`.

    scores (Sequence[Floats2d]): per document, ``(n_tokens, n_tags)``.
    max_cells (int): padded cells a group may hold.
    RETURNS (List[List[int]]): document indices per group.
    """
    ids = [i for i in range(len(scores)) if len(scores[i])]
    if not ids:
        return []
    n_tags = max(1, int(scores[ids[0]].shape[1]))
    groups = padded_size_groups([len(scores[i]) for i in ids], max_items=max_cells // n_tags)
    return [[ids[j] for j in group] for group in groups]


def _padded(scores):
    """One group's scores as a zero-padded ``(batch, length, n_tags)`` float32 array, and their lengths."""
    xp = _xp(scores[0])
    lengths = numpy.array([len(s) for s in scores])
    X = xp.zeros((len(scores), int(lengths.max()), scores[0].shape[1]), dtype="float32")
    for b, s in enumerate(scores):
        X[b, : len(s)] = s
    return xp, X, lengths


def _viterbi_group(scores, ids, out, allowed, start, end) -> None:
    xp, X, lengths = _padded(scores)
    batch, length, n_tags = X.shape
    neg = xp.asarray(numpy.float32(-1e9))
    trans = xp.where(xp.asarray(allowed), xp.asarray(numpy.float32(0.0)), neg)
    best = X[:, 0] + xp.where(xp.asarray(start), 0.0, neg)[None, :]
    back = xp.zeros((batch, length, n_tags), dtype="int32")
    active_until = xp.asarray(lengths)
    identity = xp.arange(n_tags, dtype="int32")[None, :]
    for t in range(1, length):
        cand = best[:, :, None] + trans[None, :, :]  # previous tag × next tag
        prev = cand.argmax(axis=1).astype("int32")
        new = xp.take_along_axis(cand, prev[:, None, :], axis=1)[:, 0, :] + X[:, t]
        active = (t < active_until)[:, None]
        best = xp.where(active, new, best)
        back[:, t] = xp.where(active, prev, identity)
    best = best + xp.where(xp.asarray(end), 0.0, neg)[None, :]
    cur = best.argmax(axis=1).astype("int32")
    path = xp.zeros((batch, length), dtype="int32")
    rows = xp.arange(batch)
    for t in range(length - 1, -1, -1):
        path[:, t] = cur
        cur = back[rows, t, cur]
    path = path.get() if hasattr(path, "get") else numpy.asarray(path)
    for b, doc_id in enumerate(ids):
        out[doc_id] = path[b, : lengths[b]]


def _xp(array):
    from thinc.api import get_array_module

    return get_array_module(array)


def tags_to_spans(tag_ids: Sequence[int], tags: Sequence[str]) -> List[EntitySpan]:
    """Entity spans ``(start, end, label)`` from a valid tag-id sequence.

    tag_ids (Sequence[int]): decoded tag ids of one document.
    tags (Sequence[str]): tag names.
    RETURNS (List[EntitySpan]): spans; an ill-formed sequence is read leniently
        (``I-X`` after ``O`` opens an entity), though :func:`viterbi` never yields one.
    """
    spans: List[EntitySpan] = []
    start, label = -1, ""
    for i, tag_id in enumerate(tag_ids):
        prefix, lab = _split(tags[int(tag_id)])
        if prefix in ("O", "B", "U") or (prefix in ("I", "L") and (start < 0 or lab != label)):
            if start >= 0:
                spans.append((start, i, label))
            start, label = (i, lab) if prefix != "O" else (-1, "")
        if prefix in ("L", "U") and start >= 0:
            spans.append((start, i + 1, label))
            start, label = -1, ""
    if start >= 0:
        spans.append((start, len(tag_ids), label))
    return spans


def marginals(
    scores: Sequence, *, allowed, start, end, max_cells: int = 4_000_000
) -> List[numpy.ndarray]:
    """Each token's tag probabilities under the constrained model (forward–backward).

    The model is the one :func:`viterbi` maximises: a sequence's probability is the product of its
    tokens' tag probabilities, renormalised over the valid sequences only. So a token's marginal of
    ``I-X`` is 0 where no valid sequence puts it there, and the marginals of each token sum to 1.

    scores (Sequence[Floats2d]): per document (or sentence), ``(n_tokens, n_tags)`` log-probabilities.
    allowed, start, end: from :func:`transition_mask`.
    max_cells (int): padded ``batch × length × tags`` per group, as in :func:`viterbi`.
    RETURNS (List[numpy.ndarray]): per document, ``(n_tokens, n_tags)`` float32 probabilities (on the host).
    """
    out: List[numpy.ndarray] = [numpy.zeros((len(s), s.shape[1] if len(s.shape) > 1 else 0), dtype="float32")
                                for s in scores]
    for group in length_groups(scores, max_cells=max_cells):
        _marginals_group([scores[k] for k in group], group, out, allowed, start, end)
    return out


def _logsumexp(x, axis: int):
    xp = _xp(x)
    top = x.max(axis=axis, keepdims=True)
    return (top + xp.log(xp.exp(x - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _marginals_group(scores, ids, out, allowed, start, end) -> None:
    xp, X, lengths = _padded(scores)
    batch, length, n_tags = X.shape
    neg = numpy.float32(-1e9)
    trans = xp.where(xp.asarray(allowed), xp.asarray(numpy.float32(0.0)), xp.asarray(neg))
    log_start = xp.where(xp.asarray(start), 0.0, neg).astype("float32")
    log_end = xp.where(xp.asarray(end), 0.0, neg).astype("float32")
    n = xp.asarray(lengths)
    alpha = xp.zeros((batch, length, n_tags), dtype="float32")
    alpha[:, 0] = X[:, 0] + log_start[None, :]
    for t in range(1, length):
        alpha[:, t] = _logsumexp(alpha[:, t - 1, :, None] + trans[None, :, :], axis=1) + X[:, t]
    beta = xp.zeros((batch, length, n_tags), dtype="float32")
    current = xp.broadcast_to(log_end[None, :], (batch, n_tags)).copy()
    for t in range(length - 1, -1, -1):
        # beta at a sequence's last token is `end`; earlier ones sum over the next token's tags
        if t < length - 1:
            new = _logsumexp(trans[None, :, :] + (X[:, t + 1] + current)[:, None, :], axis=2)
            current = xp.where((t + 1 < n)[:, None], new, current)
        beta[:, t] = current
    last = alpha[xp.arange(batch), xp.asarray(lengths - 1)]
    log_z = _logsumexp(last + log_end[None, :], axis=1)
    # padded positions (past a row's length) hold no probabilities: -inf there, not an overflow
    valid = xp.arange(length)[None, :] < n[:, None]
    probs = xp.exp(xp.where(valid[:, :, None], alpha + beta - log_z[:, None, None], numpy.float32(-numpy.inf)))
    probs = probs.get() if hasattr(probs, "get") else numpy.asarray(probs)
    for b, doc_id in enumerate(ids):
        out[doc_id] = probs[b, : lengths[b]].astype("float32")
