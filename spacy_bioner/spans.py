"""Span getters that cut long documents into windows measured in subword tokens.

spacy-transformers' stock ``strided_spans`` counts spaCy tokens, so a window of
128 tokens can still exceed 512 subwords and be truncated. Here each window is
filled up to the backbone's limit counted in its own subwords, windows overlap
by ``window - stride`` subwords, and every token lands in at least one window.
"""
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry  # spaCy registry + span_getters

#: Subwords kept free for tokenisation effects that counting tokens one by one misses.
SAFETY_MARGIN = 8


def window_bounds(counts: Sequence[int], *, budget: int, stride: int) -> List[tuple]:
    """Token windows ``(start, end)`` whose subword counts sum to at most ``budget``.

    counts (Sequence[int]): subwords per token.
    budget (int): subwords a window may hold.
    stride (int): subwords from one window's start to the next one's.
    RETURNS (List[tuple]): windows covering every token; a token larger than
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


def subword_windows(
    docs: Sequence[Doc], *, count_subwords: Callable[[str], int], window: int, stride: int, n_special: int
) -> List[List[Span]]:
    """Cut each Doc into overlapping windows that fit ``window`` subwords."""
    budget = max(1, window - n_special - SAFETY_MARGIN)
    stride = max(1, min(stride, budget))
    out = []
    for doc in docs:
        counts = [count_subwords(t.text) for t in doc]
        out.append([doc[s:e] for s, e in window_bounds(counts, budget=budget, stride=stride)])
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
        self._tokenizer_id: Optional[int] = None

    def bind(self, model) -> None:
        self.model = model

    def __call__(self, docs: Sequence[Doc]) -> List[List[Span]]:
        if self.model is None:
            raise ValueError(
                "spacy_bioner.subword_windows.v1 needs the transformer's tokenizer: use it inside "
                "[components.transformer.model] with @architectures = \"spacy_bioner.TransformerModel.v1\""
            )
        tokenizer = self.model.tokenizer
        if id(tokenizer) != self._tokenizer_id:
            self._cache, self._tokenizer_id = {}, id(tokenizer)
        limit = getattr(tokenizer, "model_max_length", None) or self.window
        window = min(self.window, limit) if limit < 1_000_000 else self.window
        return subword_windows(
            docs,
            count_subwords=partial(self._count, tokenizer),
            window=window,
            stride=self.stride,
            n_special=tokenizer.num_special_tokens_to_add(pair=False),
        )

    def _count(self, tokenizer, text: str) -> int:
        n = self._cache.get(text)
        if n is None:
            # Counted with a leading space: inside a window every token but the first has one,
            # and byte-level BPE (RoBERTa, GPT-2) splits " word" and "word" differently.
            n = max(1, len(tokenizer(" " + text, add_special_tokens=False)["input_ids"]))
            if len(self._cache) < 1_000_000:
                self._cache[text] = n
        return n


@registry.span_getters("spacy_bioner.subword_windows.v1")
def configure_subword_windows(window: int = 512, stride: int = 384) -> SubwordWindows:
    """Windows of at most ``window`` subwords (special tokens included), ``stride`` apart.

    window (int): the backbone's input limit (512 for BERT-style, 1024 for GPT-2).
    stride (int): subwords between window starts; ``window - stride`` is the overlap.
    """
    return SubwordWindows(window=window, stride=stride)
