"""Window planning: where the windows over a Doc's tokens start and end, counted in subwords.

Two plans, one per way a model reads a long Doc:

* :func:`window_bounds` / :func:`fit_windows`: overlapping windows for an encoder
  (``spacy_bioner.subword_windows.v1``; spacy-transformers averages a token's
  vectors over the windows that hold it). Windows are filled up to a subword
  budget and start ``stride`` subwords apart; :func:`fit_windows` then checks
  each window as the model will tokenize it and splits the ones over the limit.
* :func:`plan_windows`: left-to-right windows for a causal decoder
  (``spacy_bioner.DecoderTagger.v1``), each word assigned to exactly one window,
  the one that gives it the most left context.
"""
import logging
from bisect import bisect_left
from typing import Callable, Dict, List, NamedTuple, Sequence, Tuple

from spacy.tokens import Doc

#: A safety net: every round strictly shrinks each overlong window, so this is never reached in practice.
MAX_ROUNDS = 256
#: A token window ``(start, end)``.
Bounds = Tuple[int, int]
logger = logging.getLogger("spacy_bioner")


def window_bounds(counts: Sequence[int], *, budget: int, stride: int) -> List[Bounds]:
    """Token windows ``(start, end)`` whose subword counts sum to at most ``budget``.

    counts (Sequence[int]): subwords per token.
    budget (int): subwords a window may hold.
    stride (int): subwords from one window's start to the next one's.
    RETURNS (List[Bounds]): windows covering every token; a token larger than
        the budget gets a window of its own.
    """
    n = len(counts)
    windows = []
    start = 0
    while start < n:
        end, used = start, 0
        while end < n and (end == start or used + counts[end] <= budget):
            used += counts[end]
            end += 1
        windows.append((start, end))
        if end >= n:
            break
        nxt, walked = start, 0
        while nxt < end and walked < stride:
            walked += counts[nxt]
            nxt += 1
        start = max(start + 1, min(nxt, end))
    return windows


def fit_windows(
    docs: Sequence[Doc],
    *,
    counts: Sequence[Sequence[int]],
    measure: Callable[[List[str]], List[int]],
    window: int,
    stride: int,
    n_special: int,
) -> List[List[Bounds]]:
    """Windows per Doc that fit ``window`` subwords as the model will tokenize them.

    docs (Sequence[Doc]): the documents.
    counts (Sequence[Sequence[int]]): estimated subwords per token, per Doc.
    measure (Callable[[List[str]], List[int]]): exact subword counts (special
        tokens included) of a batch of window texts.
    window (int): the model's limit, special tokens included.
    stride (int): subwords between window starts.
    n_special (int): special tokens the tokenizer adds to a window.
    RETURNS (List[List[Bounds]]): token windows per Doc. Only a window of a single
        token can stay over the limit (that token alone is longer than the window);
        it is logged, and spacy-transformers truncates it.
    """
    budget = max(1, window - n_special)
    stride = max(1, min(stride, budget))
    out = [window_bounds(c, budget=budget, stride=stride) for c in counts]
    # Windows still to check: (doc index, position in out[doc], budget it was cut with).
    pending = [(d, k, budget) for d, wins in enumerate(out) for k in range(len(wins))]
    for _ in range(MAX_ROUNDS):
        if not pending:
            break
        texts = [docs[d][out[d][k][0]:out[d][k][1]].text for d, k, _ in pending]
        exact = measure(texts)
        resplit: Dict[int, Dict[int, int]] = {}
        for (d, k, used), n in zip(pending, exact):
            start, end = out[d][k]
            if n > window and end - start > 1:
                # The window holds `est` estimated subwords but really `n`: cut again with a budget
                # below `est` by the overflow, so it strictly shrinks every round.
                est = sum(counts[d][start:end])
                resplit.setdefault(d, {})[k] = max(1, min(used, est) - (n - window))
            elif n > window:
                logger.warning("spacy_bioner.subword_windows: token %r alone has %d subwords, more than the "
                               "window of %d; the transformer truncates it", docs[d][start].text[:40], n, window)
        pending = []
        for d, bad in resplit.items():
            new: List[Bounds] = []
            for k, (start, end) in enumerate(out[d]):
                if k not in bad:
                    new.append((start, end))
                    continue
                # keep the overlap proportional to the smaller budget
                sub = window_bounds(counts[d][start:end], budget=bad[k], stride=max(1, stride * bad[k] // budget))
                for s, e in sub:
                    pending.append((d, len(new), bad[k]))
                    new.append((start + s, start + e))
            out[d] = new
    return out


class Window(NamedTuple):
    """One window over a Doc's words.

    start (int): first word in the window (its left context starts there).
    first (int): first word that takes its vector from this window.
    end (int): one past the last word in the window; words ``first`` … ``end - 1``
        take their vectors from it.
    """

    start: int
    first: int
    end: int


def plan_windows(lengths: Sequence[int], *, window: int, stride: int) -> List[Window]:
    """Left-to-right windows over a Doc's words, each word assigned to one window.

    Windows are cut at word boundaries and hold at most ``window`` subwords. A
    window takes words until the next one does not fit; the next window starts at
    the earliest word that keeps at most ``window - stride`` subwords before its
    first new word (and leaves room for that word). Window starts strictly
    increase, so the earliest window holding a whole word gives it the most left
    context: that is the window it is assigned to.

    lengths (Sequence[int]): subwords per word (each at most ``window``; 0 for
        whitespace).
    window (int): subwords per window.
    stride (int): subwords between window starts (1 … ``window``).
    RETURNS (List[Window]): windows in order; every word is in exactly one
        ``[first, end)`` range. An empty Doc has none.
    """
    if window < 1 or not 0 < stride <= window:
        raise ValueError(f"decoder windows: need 0 < stride <= window, got window {window}, stride {stride}")
    n = len(lengths)
    offsets = [0]
    for length in lengths:
        if length > window:
            raise ValueError(f"decoder windows: a word of {length} subwords does not fit a window of {window}")
        offsets.append(offsets[-1] + int(length))
    overlap = window - stride
    windows: List[Window] = []
    start = first = 0
    while first < n:
        end = first
        while end < n and offsets[end + 1] - offsets[start] <= window:
            end += 1
        windows.append(Window(start, first, end))
        if end >= n:
            break
        first = end
        floor = max(offsets[first] - overlap, offsets[first + 1] - window)
        start = bisect_left(offsets, floor, 0, first + 1)
    return windows
