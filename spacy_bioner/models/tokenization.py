"""Subword tokenization remembered per window text, for training.

spacy-transformers tokenizes every window again at every step: the fast
tokenizer's call, its per-row conversion to Python lists, offsets, and one
``convert_ids_to_tokens`` per row. Over epochs the same windows come back, so
``spacy_bioner.TransformerModel.v4`` keeps each window's encoding (ids, token
types, offsets, subword strings) and pads a batch from those, as Hugging Face's
``Trainer`` tokenizes its dataset once. The batch it builds is exactly what
``spacy_transformers``' ``huggingface_tokenize`` returns (same padding side,
pad ids, pad strings and dtypes); texts it has not seen are tokenized in one
batched call.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy

#: Texts longer than this (characters) are tokenized every time, not remembered.
MAX_CACHED_CHARS = 20_000

Encoding = Tuple[numpy.ndarray, Optional[numpy.ndarray], numpy.ndarray, List[str]]


class TokenizationCache:
    """Window text → its encoding, for one tokenizer; emptied when full or when the tokenizer changes.

    max_entries (int): texts remembered before the cache starts again.
    """

    def __init__(self, *, max_entries: int = 200_000) -> None:
        if max_entries <= 0:
            raise ValueError(f"max_entries must be positive, got {max_entries}")
        self.max_entries = max_entries
        self._store: Dict[str, Encoding] = {}
        self._tokenizer_id: Optional[int] = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def __call__(self, tokenizer: Any, texts: Sequence[str]) -> Dict[str, Any]:
        """A padded batch encoding of ``texts``, as ``huggingface_tokenize(tokenizer, texts)`` gives it.

        tokenizer (PreTrainedTokenizerFast): the transformer's tokenizer.
        texts (Sequence[str]): window texts, one row each.
        RETURNS (Dict[str, Any]): ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the
            tokenizer returns them), ``offset_mapping``, ``input_texts``, ``pad_token``.
        """
        if id(tokenizer) != self._tokenizer_id:
            self._store, self._tokenizer_id = {}, id(tokenizer)
        unseen = list(dict.fromkeys(t for t in texts if t not in self._store))
        fresh = encode(tokenizer, unseen) if unseen else {}
        self.misses += len(unseen)
        self.hits += len(texts) - len(unseen)
        if len(self._store) + len(fresh) > self.max_entries:
            self._store = {}
        for text, enc in fresh.items():
            if len(text) <= MAX_CACHED_CHARS:
                self._store[text] = enc
        return pad_batch(tokenizer, [fresh[t] if t in fresh else self._store[t] for t in texts])


def encode(tokenizer: Any, texts: List[str]) -> Dict[str, Encoding]:
    """Each text's unpadded encoding, from one batched tokenizer call.

    tokenizer (PreTrainedTokenizerFast): a fast tokenizer (offsets are needed).
    texts (List[str]): distinct texts.
    RETURNS (Dict[str, Encoding]): text → (ids, token types or None, offsets (n, 2), subword strings).
    """
    data = tokenizer(texts, add_special_tokens=True, return_attention_mask=False, return_offsets_mapping=True,
                     return_token_type_ids=None, padding=False, verbose=False)
    types = data.get("token_type_ids")
    out: Dict[str, Encoding] = {}
    for k, text in enumerate(texts):
        ids = numpy.asarray(data["input_ids"][k], dtype="int64")
        offsets = numpy.asarray(data["offset_mapping"][k], dtype="int64").reshape(-1, 2)
        type_ids = numpy.asarray(types[k], dtype="int64") if types is not None else None
        out[text] = (ids, type_ids, offsets, tokenizer.convert_ids_to_tokens(data["input_ids"][k]))
    return out


def pad_batch(tokenizer: Any, rows: Sequence[Encoding]) -> Dict[str, Any]:
    """Rows padded to the longest on the tokenizer's padding side, with its pad id, pad type id and pad string.

    tokenizer (PreTrainedTokenizerFast): gives ``pad_token``, ``pad_token_id``,
        ``pad_token_type_id`` and ``padding_side``.
    rows (Sequence[Encoding]): unpadded encodings.
    RETURNS (Dict[str, Any]): the batch, as :meth:`TokenizationCache.__call__` describes.
    """
    width = max((len(r[0]) for r in rows), default=0)
    n = len(rows)
    pad_id = tokenizer.pad_token_id
    if pad_id is None and any(len(r[0]) < width for r in rows):
        raise ValueError("the tokenizer has no pad token: set one in [components.transformer.model.tokenizer_config]")
    input_ids = numpy.full((n, width), pad_id if pad_id is not None else 0, dtype="int64")
    mask = numpy.zeros((n, width), dtype="int64")
    offsets = numpy.zeros((n, width, 2), dtype="int64")
    with_types = bool(rows) and rows[0][1] is not None
    type_ids = numpy.full((n, width), getattr(tokenizer, "pad_token_type_id", 0), dtype="int64") if with_types else None
    strings: List[List[str]] = []
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for k, (ids, types, offs, pieces) in enumerate(rows):
        m = len(ids)
        cols = slice(width - m, width) if left else slice(0, m)
        input_ids[k, cols] = ids
        mask[k, cols] = 1
        offsets[k, cols] = offs
        if type_ids is not None:
            type_ids[k, cols] = types
        padding = [tokenizer.pad_token] * (width - m)
        strings.append(padding + pieces if left else pieces + padding)
    batch: Dict[str, Any] = {"input_ids": input_ids}
    if type_ids is not None:
        batch["token_type_ids"] = type_ids
    batch["attention_mask"] = mask
    batch["offset_mapping"] = offsets
    batch["input_texts"] = strings
    batch["pad_token"] = tokenizer.pad_token
    return batch
