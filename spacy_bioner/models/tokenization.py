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
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy

from ..errors import ConfigValueError

#: Texts longer than this (characters) are tokenized every time, not remembered.
MAX_CACHED_CHARS = 20_000

#: (subword ids, token type ids or None, character offsets (n, 2)), stored compactly.
Encoding = Tuple[numpy.ndarray, Optional[numpy.ndarray], numpy.ndarray]


class TokenizationCache:
    """Window text → its encoding, for one tokenizer; emptied when full or when the tokenizer changes.

    About 13 bytes per remembered subword (int32 ids and offsets, int8 token types; subword
    strings are shared per id), so the default budget holds ~130 MB.

    max_subwords (int): subwords remembered (over all texts) before the cache starts again.
    """

    def __init__(self, *, max_subwords: int = 10_000_000) -> None:
        if max_subwords <= 0:
            raise ValueError(f"max_subwords must be positive, got {max_subwords}")
        self.max_subwords = max_subwords
        self._store: Dict[Union[str, Tuple[str, str]], Encoding] = {}
        self._pieces: Dict[int, str] = {}
        self._subwords = 0
        self._tokenizer_id: Optional[int] = None
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._store)

    def clear(self) -> None:
        """Forget every text (e.g. after training, to free the memory)."""
        self._store, self._pieces, self._subwords = {}, {}, 0

    def __call__(self, tokenizer: Any, texts: Sequence[str], *, prompts: Optional[Sequence[str]] = None) -> Dict[str, Any]:
        """A padded batch encoding of ``texts``, as ``huggingface_tokenize(tokenizer, texts)`` gives it.

        tokenizer (PreTrainedTokenizerFast): the transformer's tokenizer.
        texts (Sequence[str]): window texts, one row each.
        prompts (Optional[Sequence[str]]): a task prompt per text, encoded as the pair's first
            sequence (:func:`encode_pairs`).
        RETURNS (Dict[str, Any]): ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the
            tokenizer returns them), ``offset_mapping``, ``input_texts``, ``pad_token``.
        """
        if id(tokenizer) != self._tokenizer_id:
            self.clear()
            self._tokenizer_id = id(tokenizer)
        keys: List[Any] = list(texts) if prompts is None else list(zip(prompts, texts))
        unseen = list(dict.fromkeys(k for k in keys if k not in self._store))
        encoded = encode_rows(tokenizer, unseen) if prompts is None else \
            encode_pairs(tokenizer, [p for p, _ in unseen], [t for _, t in unseen])
        fresh: Dict[Any, Encoding] = dict(zip(unseen, encoded))
        self.misses += len(unseen)
        self.hits += len(keys) - len(unseen)
        rows = [fresh[k] if k in fresh else self._store[k] for k in keys]  # before the store may start again
        added = sum(len(enc[0]) for key, enc in fresh.items() if _chars(key) <= MAX_CACHED_CHARS)
        if self._subwords + added > self.max_subwords:
            self._store, self._subwords = {}, 0
        for key, enc in fresh.items():
            if _chars(key) <= MAX_CACHED_CHARS:
                self._store[key] = enc
                self._subwords += len(enc[0])
        return pad_batch(tokenizer, rows, pieces=self._pieces)


def _chars(key: Union[str, Tuple[str, str]]) -> int:
    """Characters of a remembered window's text (a key is the text, or (prompt, text))."""
    return len(key if isinstance(key, str) else key[1])


def encode(tokenizer: Any, texts: List[str]) -> Dict[str, Encoding]:
    """Each text's unpadded encoding, from one batched tokenizer call.

    tokenizer (PreTrainedTokenizerFast): a fast tokenizer (offsets are needed).
    texts (List[str]): distinct texts.
    RETURNS (Dict[str, Encoding]): text → (ids, token types or None, offsets (n, 2)).
    """
    return dict(zip(texts, encode_rows(tokenizer, texts)))


def encode_pairs(tokenizer: Any, prompts: Sequence[str], texts: Sequence[str]) -> List[Encoding]:
    """Each ``(prompt, text)`` pair's unpadded encoding, the prompt's subwords given no offsets.

    tokenizer (PreTrainedTokenizerFast): a fast tokenizer (offsets and sequence ids are needed).
    prompts (Sequence[str]): one prompt per text.
    texts (Sequence[str]): window texts.
    RETURNS (List[Encoding]): (ids, token types or None, offsets (n, 2)) per pair; offsets are the
        text's characters for its subwords and (0, 0) for the prompt's and special subwords.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigValueError("task prompts need a fast tokenizer (character offsets): this backbone has none")
    if len(prompts) != len(texts):
        raise ValueError(f"task prompts: {len(prompts)} prompts for {len(texts)} texts")
    return encode_rows(tokenizer, list(texts), prompts=list(prompts))


def encode_rows(tokenizer: Any, texts: List[str], *, prompts: Optional[List[str]] = None) -> List[Encoding]:
    """One batched tokenizer call: each text's (or each (prompt, text) pair's) unpadded encoding.

    tokenizer (PreTrainedTokenizerFast): a fast tokenizer.
    texts (List[str]): the texts.
    prompts (Optional[List[str]]): a first sequence per text, whose subwords get (0, 0) offsets.
    RETURNS (List[Encoding]): (ids, token types or None, offsets (n, 2)) per row.
    """
    if not texts:
        return []
    args = (texts,) if prompts is None else (prompts, texts)
    data = tokenizer(*args, add_special_tokens=True, return_attention_mask=False, return_offsets_mapping=True,
                     return_token_type_ids=None, padding=False, verbose=False)
    types = data.get("token_type_ids")
    out: List[Encoding] = []
    for k in range(len(texts)):
        ids = numpy.asarray(data["input_ids"][k], dtype="int32")
        offsets = numpy.asarray(data["offset_mapping"][k], dtype="int32").reshape(-1, 2)
        if prompts is not None:  # only the text's subwords keep their characters
            offsets[numpy.asarray(data.sequence_ids(k)) != 1] = 0
        type_ids = numpy.asarray(types[k], dtype="int8") if types is not None else None
        out.append((ids, type_ids, offsets))
    return out


def pad_batch(tokenizer: Any, rows: Sequence[Encoding], *, pieces: Optional[Dict[int, str]] = None) -> Dict[str, Any]:
    """Rows padded to the longest on the tokenizer's padding side, with its pad id, pad type id and pad string.

    tokenizer (PreTrainedTokenizerFast): gives ``pad_token``, ``pad_token_id``,
        ``pad_token_type_id``, ``padding_side`` and each id's subword string.
    rows (Sequence[Encoding]): unpadded encodings.
    pieces (Optional[Dict[int, str]]): id → subword string, filled as ids are met (shared strings).
    RETURNS (Dict[str, Any]): the batch, as :meth:`TokenizationCache.__call__` describes.
    """
    if tokenizer.pad_token is None:  # as Hugging Face's padding="longest"
        raise ValueError("the tokenizer has no pad token: set one in [components.transformer.model.tokenizer_config]")
    pieces = {} if pieces is None else pieces
    width = max((len(r[0]) for r in rows), default=0)
    n = len(rows)
    input_ids = numpy.full((n, width), tokenizer.pad_token_id, dtype="int64")
    mask = numpy.zeros((n, width), dtype="int64")
    offsets = numpy.zeros((n, width, 2), dtype="int64")
    with_types = bool(rows) and rows[0][1] is not None
    type_ids = numpy.full((n, width), getattr(tokenizer, "pad_token_type_id", 0), dtype="int64") if with_types else None
    strings: List[List[str]] = []
    left = getattr(tokenizer, "padding_side", "right") == "left"
    for k, (ids, types, offs) in enumerate(rows):
        m = len(ids)
        cols = slice(width - m, width) if left else slice(0, m)
        input_ids[k, cols] = ids
        mask[k, cols] = 1
        offsets[k, cols] = offs
        if type_ids is not None:
            type_ids[k, cols] = types
        id_list = ids.tolist()
        missing = [i for i in dict.fromkeys(id_list) if i not in pieces]
        if missing:
            pieces.update(zip(missing, tokenizer.convert_ids_to_tokens(missing)))
        padding = [tokenizer.pad_token] * (width - m)
        row = [pieces[i] for i in id_list]
        strings.append(padding + row if left else row + padding)
    batch: Dict[str, Any] = {"input_ids": input_ids}
    if type_ids is not None:
        batch["token_type_ids"] = type_ids
    batch["attention_mask"] = mask
    batch["offset_mapping"] = offsets
    batch["input_texts"] = strings
    batch["pad_token"] = tokenizer.pad_token
    return batch
