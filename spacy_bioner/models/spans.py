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
The window planning itself is :func:`~spacy_bioner.models.windows.fit_windows`.
"""
from typing import Dict, List, Optional, Sequence

from spacy.tokens import Doc, Span
from spacy_transformers.util import registry  # spaCy registry + span_getters

from .windows import fit_windows


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
        prompt = getattr(self.model, "attrs", {}).get("task_prompt")
        # a task prompt (and the pair's extra special tokens) comes before every window: leave room for the longest
        extra = prompt.extra_subwords(tokenizer) if prompt is not None else 0
        if extra and tokenizer.num_special_tokens_to_add(pair=False) + extra >= self.limit(tokenizer):
            from ..errors import ConfigValueError

            raise ConfigValueError(f"task_prompt: the longest prompt ({prompt.longest()!r}) takes {extra} of the "
                                   f"window's {self.limit(tokenizer)} subwords, leaving no room for text; shorten "
                                   "its template or raise the span getter's window")
        windows = fit_windows(
            docs,
            counts=self.token_counts(tokenizer, docs),
            measure=lambda texts: [n + extra for n in self.exact_counts(tokenizer, texts)],
            window=self.limit(tokenizer),
            stride=self.stride,
            n_special=tokenizer.num_special_tokens_to_add(pair=False) + extra,
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
