"""Span getters that cut long documents into windows measured in subword tokens.

spacy-transformers' stock ``strided_spans`` counts spaCy tokens, so a window of
128 tokens can still exceed 512 subwords and be truncated. Here each window is
filled up to the backbone's limit counted in its own subwords, windows overlap
by ``window - stride`` subwords, and every token lands in at least one window.

Counting token by token is only an estimate: spacy-transformers tokenizes each
window's ``span.text``, where a token may have no space before it (raw text:
``breast-cancer``, ``TP53,BRCA1``) and byte-level BPE (RoBERTa, GPT-2) splits
``"cancer"`` and ``" cancer"`` differently. So every window is then tokenized
exactly as the model will see it (one batched call), and a window over the
limit is split again with a smaller budget until all fit. Nothing is silently
truncated; only a single token longer than the whole window cannot be split.
"""
import logging
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry  # spaCy registry + span_getters

#: A safety net: every round strictly shrinks each overlong window, so this is never reached in practice.
MAX_ROUNDS = 256
Window = Tuple[int, int]
logger = logging.getLogger("spacy_bioner")


def window_bounds(counts: Sequence[int], *, budget: int, stride: int) -> List[Window]:
    """Token windows ``(start, end)`` whose subword counts sum to at most ``budget``.

    counts (Sequence[int]): subwords per token.
    budget (int): subwords a window may hold.
    stride (int): subwords from one window's start to the next one's.
    RETURNS (List[Window]): windows covering every token; a token larger than
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
) -> List[List[Window]]:
    """Windows per Doc that fit ``window`` subwords as the model will tokenize them.

    docs (Sequence[Doc]): the documents.
    counts (Sequence[Sequence[int]]): estimated subwords per token, per Doc.
    measure (Callable[[List[str]], List[int]]): exact subword counts (special
        tokens included) of a batch of window texts.
    window (int): the model's limit, special tokens included.
    stride (int): subwords between window starts.
    n_special (int): special tokens the tokenizer adds to a window.
    RETURNS (List[List[Window]]): token windows per Doc. Only a window of a single
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
            new: List[Window] = []
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


class SubwordWindows:
    """A span getter bound to a transformer model, so it counts with its tokenizer.

    ``spacy_bioner.TransformerModel.v1`` calls :meth:`bind`; the tokenizer is
    looked up at call time (it exists once the model is initialised or loaded).
    """

    def __init__(self, *, window: int, stride: int) -> None:
        if stride <= 0 or window <= 0:
            raise ValueError(f"window ({window}) and stride ({stride}) must be positive")
        self.window = window
        self.stride = stride
        self.model = None
        self._cache: Dict[str, int] = {}
        self._exact: Dict[str, int] = {}
        self._tokenizer_id: Optional[int] = None

    def bind(self, model) -> None:
        self.model = model

    def __call__(self, docs: Sequence[Doc]) -> List[List[Span]]:
        if self.model is None:
            raise ValueError(
                "spacy_bioner.subword_windows.v1 needs the transformer's tokenizer: use it inside "
                "[components.transformer.model] with @architectures = \"spacy_bioner.TransformerModel.v2\" (or .v1)"
            )
        tokenizer = self.model.tokenizer
        if id(tokenizer) != self._tokenizer_id:
            self._cache, self._exact, self._tokenizer_id = {}, {}, id(tokenizer)
        windows = fit_windows(
            docs,
            counts=self.token_counts(tokenizer, docs),
            measure=lambda texts: self.exact_counts(tokenizer, texts),
            window=self.limit(tokenizer),
            stride=self.stride,
            n_special=tokenizer.num_special_tokens_to_add(pair=False),
        )
        return [[doc[s:e] for s, e in wins] for doc, wins in zip(docs, windows)]

    def limit(self, tokenizer) -> int:
        """The window, capped by the tokenizer's ``model_max_length`` (spacy-transformers truncates there)."""
        limit = getattr(tokenizer, "model_max_length", None) or self.window
        return min(self.window, limit) if limit < 1_000_000 else self.window

    def token_counts(self, tokenizer, docs: Sequence[Doc]) -> List[List[int]]:
        """Estimated subwords per token: each token with a leading space, one batched call for unseen ones."""
        unseen = list({t.text for doc in docs for t in doc if t.text not in self._cache})
        if unseen:
            # With a leading space: inside a window every token but the first has one (or
            # none, in raw text: the exact check of the windows catches that).
            ids = tokenizer([" " + text for text in unseen], add_special_tokens=False, verbose=False)["input_ids"]
            if len(self._cache) > 1_000_000:
                self._cache = {}
            self._cache.update((text, max(1, len(x))) for text, x in zip(unseen, ids))
        return [[self._cache[t.text] for t in doc] for doc in docs]


    def exact_counts(self, tokenizer, texts: List[str]) -> List[int]:
        """:func:`exact_counts`, remembered per window text (training sees the same windows every epoch)."""
        unseen = list({t for t in texts if t not in self._exact})
        if unseen:
            if len(self._exact) > 200_000:
                self._exact = {}
            self._exact.update(zip(unseen, exact_counts(tokenizer, unseen)))
        return [self._exact[t] for t in texts]


def exact_counts(tokenizer, texts: List[str]) -> List[int]:
    """Subwords of each text as spacy-transformers tokenizes a window (special tokens included)."""
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"]
    return [len(x) for x in ids]


@registry.span_getters("spacy_bioner.subword_windows.v1")
def configure_subword_windows(window: int = 512, stride: int = 384) -> SubwordWindows:
    """Windows of at most ``window`` subwords (special tokens included), ``stride`` apart.

    window (int): the backbone's input limit (512 for BERT-style, 1024 for GPT-2).
    stride (int): subwords between window starts; ``window - stride`` is the overlap.
    """
    return SubwordWindows(window=window, stride=stride)
