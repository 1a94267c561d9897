"""Causal decoders as token vectors: ``spacy_bioner.DecoderTagger.v1``.

GPT-2, and other causal language models that ``transformers``' ``AutoModel``
loads, give the token vectors of an entity head (``bioner_tagger``'s
``spacy_bioner.TokenClassifier.v1``, or spaCy's ``ner``). The layer reads the
Docs itself (no ``transformer`` component, no listener), because what a causal
model needs differs from an encoder at every step:

* **Alignment, one word → its own pieces.** Each spaCy token is tokenized on its
  own, so no piece ever spans two words. A word gets GPT-2's leading space (``Ġ``)
  when whitespace precedes it in the Doc, and the Doc's first word always does
  (GPT-2's ``add_prefix_space`` convention: it is then tokenized like any word
  inside a sentence); a word glued to the previous one (``breast-cancer``,
  ``cancer.``) gets none, as GPT-2 saw it in running text. A word's pieces are
  therefore the same in every window. Whitespace tokens get no pieces (a zero
  vector). Text that spells a special token (``<|endoftext|>``) is tokenized as
  ordinary characters, never as the special id.
* **Padding.** GPT-2 has no pad token: the end-of-text token pads, on the
  **right** (left padding shifts GPT-2's absolute positions), and attention
  masks are built from the sequence lengths, never from ``input_ids == pad``,
  so padding can never be confused with text.
* **Word vector from the last subword** by default (``pooling``: the modes of
  ``spacy_bioner.subword_pooling.v1``): in a causal model only the last piece has
  seen the whole word.
* **Long documents** are read left to right in windows of at most ``window``
  subwords (clamped to the model's positions, 1,024 for GPT-2), cut at word
  boundaries, the next window starting so that up to ``window - stride``
  subwords before its first new word are kept as left context. Each word takes
  its vector from exactly one window: the one that gives it the most left
  context, which for left-to-right windows is the earliest window that contains
  the whole word (:func:`~spacy_bioner.models.windows.plan_windows`). Overlapping windows are never averaged
  (right for an encoder; wrong for a causal model, whose later windows have seen
  less of the text).
* **Bidirectional mode** (``bidirectional = true``): a second pass over the Doc's
  words in reverse order (each word's own pieces kept in order), whose
  last-subword vectors are concatenated to the forward ones, so a word also sees
  its right context (output width 2 × hidden). With ``shared_weights = false``
  (the default) the backward pass has its own copy of the weights, initialised
  from the same checkpoint: twice the parameters and optimizer memory, but each
  direction specialises (as ELMo's two LSTMs). ``shared_weights = true`` runs
  both directions through one model in one batch: no extra memory.

The Hugging Face module(s) are wrapped with spacy-transformers' ``HFShim``, so a
saved pipeline carries the model config, tokenizer and weights, and reloads with
no hub access and without the original backbone folder. :func:`decoder_modules`
gives the torch modules (e.g. to hook ``get_input_embeddings()``).
"""
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from thinc.types import Floats2d, Ragged

from ..errors import ConfigValueError
from .backbones import resolve_backbone
from .buckets import padded_size_groups
from .heads import POOLING_MODES, subword_pooling
from .windows import plan_windows

#: GPT-2's positions; the window is clamped to the loaded model's own limit.
DEFAULT_WINDOW = 1024
DEFAULT_STRIDE = 768
#: Prediction: padded subwords per forward call (windows are sorted by length, then grouped).
DEFAULT_MAX_BATCH_ITEMS = 4096
#: Words whose pieces are remembered (cleared when full).
CACHE_SIZE = 200_000
ARCHITECTURE = "spacy_bioner.DecoderTagger.v1"
ARCHITECTURE_V2 = "spacy_bioner.DecoderTagger.v2"
#: ``bidirectional`` in v2: one causal pass, plus a pass over the reversed words, or one pass without the causal mask.
DIRECTIONS = ("none", "reverse", "unmasked")


def word_texts(doc: Doc, *, self_prefixed: bool = False) -> List[Optional[str]]:
    """The text each word is tokenized as; ``None`` for whitespace tokens (no pieces).

    A word gets a leading space when whitespace precedes it in the Doc, and the
    first word always does (GPT-2's ``add_prefix_space``). With ``self_prefixed``
    (a tokenizer that puts the space marker before any text itself: SentencePiece
    Llama-2/Mistral) every word is passed bare, as HF's ``is_split_into_words`` does.
    """
    if self_prefixed:
        return [None if token.is_space else token.text for token in doc]
    out: List[Optional[str]] = []
    space_before = True
    for token in doc:
        if token.is_space:
            out.append(None)
            space_before = True
        else:
            out.append((" " if space_before else "") + token.text)
            space_before = bool(token.whitespace_)
    return out


class PieceCache:
    """Subword ids of word texts, for one tokenizer (not serialised: rebuilt on use)."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.tokenizer_id: Optional[int] = None
        self.table: Dict[str, Tuple[int, ...]] = {}

    def pieces(self, tokenizer: Any, texts: Sequence[str]) -> List[Tuple[int, ...]]:
        """The ids of each text, tokenized alone, special-token spellings as plain text."""
        if self.tokenizer_id != id(tokenizer):
            self.tokenizer_id, self.table = id(tokenizer), {}
        missing = sorted({t for t in texts if t not in self.table})
        if missing:
            if len(self.table) + len(missing) > self.size:
                self.table = {}
            ids = tokenizer(missing, add_special_tokens=False, split_special_tokens=True,
                            return_attention_mask=False, return_token_type_ids=False)["input_ids"]
            self.table.update(zip(missing, map(tuple, ids)))
        return [self.table[t] for t in texts]


def doc_pieces(doc: Doc, tokenizer: Any, *, cache: Optional[PieceCache] = None,
               max_pieces: Optional[int] = None, self_prefixed: bool = False) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """A Doc's subword ids, word by word: ``(ids, lengths)``, ``lengths`` one per token.

    doc (Doc): the words.
    tokenizer (Any): a Hugging Face tokenizer.
    cache (Optional[PieceCache]): remembers words already tokenized.
    max_pieces (Optional[int]): a word with more pieces keeps its first
        ``max_pieces - 1`` and its last (it must fit a window).
    self_prefixed (bool): the tokenizer adds the leading space marker itself (:func:`word_texts`).
    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): int64 ids, int32 lengths.
    """
    texts = word_texts(doc, self_prefixed=self_prefixed)
    real = [t for t in texts if t is not None]
    found = iter((cache or PieceCache()).pieces(tokenizer, real) if real else [])
    per_word = [() if t is None else next(found) for t in texts]
    if max_pieces is not None:
        per_word = [p if len(p) <= max_pieces else p[:max_pieces - 1] + p[-1:] for p in per_word]
    lengths = numpy.asarray([len(p) for p in per_word], dtype="int32")
    ids = numpy.fromiter((i for p in per_word for i in p), dtype="int64", count=int(lengths.sum()))
    return ids, lengths


def reverse_words(ids: numpy.ndarray, lengths: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The same pieces with the words in reverse order (each word's pieces keep their order)."""
    lengths = numpy.asarray(lengths, dtype="int64")
    starts = numpy.cumsum(lengths) - lengths
    rev_lengths, rev_starts = lengths[::-1], starts[::-1]
    within = numpy.arange(len(ids), dtype="int64") - numpy.repeat(numpy.cumsum(rev_lengths) - rev_lengths, rev_lengths)
    order = numpy.repeat(rev_starts, rev_lengths) + within
    return ids[order], rev_lengths.astype("int32")


# ---------------------------------------------------------------------- the model
def decoder_tagger(
    name: str,
    *,
    window: int = DEFAULT_WINDOW,
    stride: int = DEFAULT_STRIDE,
    pooling: str = "last",
    bidirectional: Union[bool, str] = False,
    shared_weights: Optional[bool] = None,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = True,
    gradient_checkpointing: bool = False,
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
    lora: Optional[dict] = None,
    embed_base: bool = False,
    dtype: str = "float32",
    quantization: Optional[str] = None,
    max_train_batch_items: int = 0,
    version: int = 1,
) -> Model[List[Doc], List[Floats2d]]:
    """A causal LM as a token-vector layer: one vector per spaCy token (module docstring).

    name (str): hub name or local folder of the backbone (resolved offline first at initialisation).
    window (int): subwords per window (clamped to the model's positions).
    stride (int): subwords between window starts; ``window - stride`` is the left context kept.
    pooling (str): ``last`` (default), ``first`` or ``mean`` subword of each word.
    bidirectional (Union[bool, str]): ``"none"``/False; ``"reverse"``/True: add a pass over the
        reversed word order (output 2 × hidden); ``"unmasked"``: one pass without the causal mask.
    shared_weights (Optional[bool]): both directions through one model (else the backward pass has its
        own copy); default: separate in v1, shared in v2.
    tokenizer_config (Optional[dict]): passed to ``AutoTokenizer.from_pretrained``.
    transformer_config (Optional[dict]): passed to ``AutoConfig.from_pretrained``.
    mixed_precision (bool): autocast the forward pass (GPU).
    grad_scaler_config (Optional[dict]): PyTorch gradient scaler settings.
    torch_optimizer (bool): one torch AdamW step for the decoder's weights (as ``TransformerModel.v2``).
    gradient_checkpointing (bool): recompute activations in the backward pass (less memory).
    max_batch_items (int): prediction only: padded subwords per forward call.
    lora (Optional[dict]): v2: LoRA adapters (:func:`~spacy_bioner.models.adapters.lora_settings`; ``r = 0``: none).
    embed_base (bool): v2 with LoRA: save the base weights in the pipeline (else referenced by name + checksum).
    dtype (str): v2: precision the base weights are loaded in (``float32``, ``bfloat16``, ``float16``).
    quantization (Optional[str]): v2: ``"4bit"``/``"8bit"`` base through bitsandbytes (CUDA; needs LoRA).
    max_train_batch_items (int): v2, training: padded subwords per micro-batch (0: the whole batch at once).
        Each micro-batch's forward is recomputed in its own backward pass, so activation memory is one
        micro-batch's; the gradients add up to the whole batch's (not with fp16 gradient scaling: refused).
    version (int): 1 (``DecoderTagger.v1``: GPT-2's spacing, no start token) or 2 (the tokenizer's own).
    """
    from .adapters import DTYPES, QUANTIZATIONS, lora_settings

    architecture = ARCHITECTURE if version == 1 else ARCHITECTURE_V2
    if shared_weights is None:
        shared_weights = version > 1
    if pooling not in POOLING_MODES:
        raise ConfigValueError(f"{architecture}: unknown pooling {pooling!r}; choose one of {', '.join(POOLING_MODES)}")
    if window < 1 or not 0 < stride <= window:
        raise ConfigValueError(f"{architecture}: need 0 < stride <= window, got window {window}, stride {stride}")
    direction = {False: "none", True: "reverse"}.get(bidirectional, bidirectional) \
        if isinstance(bidirectional, bool) else str(bidirectional)
    if direction not in DIRECTIONS:
        raise ConfigValueError(f"{architecture}: bidirectional must be one of {', '.join(DIRECTIONS)}, "
                               f"got {bidirectional!r}")
    adapters = lora_settings(lora)
    if dtype not in DTYPES:
        raise ConfigValueError(f"{architecture}: dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if quantization not in QUANTIZATIONS:
        raise ConfigValueError(f"{architecture}: quantization must be null, \"4bit\" or \"8bit\", got {quantization!r}")
    if quantization and not adapters["r"]:
        raise ConfigValueError(f"{architecture}: quantized weights cannot be fine-tuned directly; set lora.r > 0 "
                               "(QLoRA) or quantization = null")
    if quantization and embed_base:
        raise ConfigValueError(f"{architecture}: embed_base with a quantized base is not supported; reference the "
                               "base (embed_base = false)")
    if max_train_batch_items and version == 1:
        raise ConfigValueError(f"{architecture}: max_train_batch_items needs {ARCHITECTURE_V2}")
    if max_train_batch_items and (mixed_precision or dict(grad_scaler_config or {}).get("enabled")):
        raise ConfigValueError(f"{architecture}: max_train_batch_items cannot be combined with fp16 gradient "
                               "scaling (mixed_precision); use dtype = \"bfloat16\" or max_train_batch_items = 0")
    if version == 1 and (lora or dtype != "float32" or quantization):
        raise ConfigValueError(f"{architecture}: lora, dtype and quantization need {ARCHITECTURE_V2}")
    if adapters["r"] and direction == "reverse" and not shared_weights:
        raise ConfigValueError(f"{architecture}: with LoRA the reversed pass shares the base and its adapters; set "
                               "shared_weights = true (or lora.r = 0 for two fully fine-tuned copies)")
    tok_cfg = {"use_fast": True, **dict(tokenizer_config or {})}
    trf_cfg = dict(transformer_config or {})
    n_encoders = 2 if direction == "reverse" and not shared_weights else 1
    convert_inputs = partial(_convert_inputs, causal=direction != "unmasked")
    base = {"name": name, "lora": adapters, "embed_base": bool(embed_base), "dtype": dtype,
            "quantization": quantization, "checksum": None}
    encoders = [_hf_layer(tok_cfg, trf_cfg, convert_inputs=convert_inputs, mixed_precision=mixed_precision,
                          grad_scaler_config=grad_scaler_config, base=base if version > 1 else None)
                for _ in range(n_encoders)]
    pool = subword_pooling(pooling)
    model: Model[List[Doc], List[Floats2d]] = Model(
        "decoder_tagger", _forward, init=_init, layers=[*encoders, pool], dims={"nO": None},
        attrs={"name": name, "window": int(window), "stride": int(stride), "pooling": pooling,
               "bidirectional": direction == "reverse", "direction": direction, "shared_weights": bool(shared_weights),
               "has_transformer": False, "torch_optimizer": bool(torch_optimizer),
               "gradient_checkpointing": bool(gradient_checkpointing), "max_batch_items": int(max_batch_items),
               "max_train_batch_items": int(max_train_batch_items), "version": int(version), "prefix_ids": None,
               "self_prefixed": None, "piece_cache": PieceCache()},
    )
    model.set_ref("pooling", pool)
    return model


def _hf_layer(tok_cfg: dict, trf_cfg: dict, *, convert_inputs: Callable, mixed_precision: bool,
              grad_scaler_config: Optional[dict], base: Optional[Dict[str, Any]]) -> Model:
    """One Hugging Face module as a thinc layer: spacy-transformers' ``HFWrapper`` (v1), or the same
    layer over :mod:`~spacy_bioner.models.adapters`' shim, which saves LoRA adapters without their base (v2)."""
    from spacy_transformers.data_classes import HFObjects
    from spacy_transformers.layers.hf_wrapper import HFWrapper

    objects = HFObjects(None, None, None, dict(tok_cfg), dict(trf_cfg))
    scaler = dict(grad_scaler_config or {})
    if base is None:
        return HFWrapper(objects, convert_inputs=convert_inputs, convert_outputs=_convert_outputs,
                         mixed_precision=mixed_precision, grad_scaler_config=scaler)
    from thinc.layers.pytorchwrapper import forward as pt_forward

    from .adapters import adapter_shim_class

    shim = adapter_shim_class()(objects, mixed_precision=mixed_precision, grad_scaler_config=scaler, base=base)
    return Model("hf-pytorch", pt_forward, attrs={"convert_inputs": convert_inputs, "convert_outputs": _convert_outputs},
                 shims=[shim], dims={"nI": None, "nO": None})


@registry.architectures(ARCHITECTURE)
def configure_decoder_tagger(
    name: str,
    window: int = DEFAULT_WINDOW,
    stride: int = DEFAULT_STRIDE,
    pooling: str = "last",
    bidirectional: bool = False,
    shared_weights: bool = False,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = True,
    gradient_checkpointing: bool = False,
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
) -> Model[List[Doc], List[Floats2d]]:
    """GPT-2 (or another causal LM) as the token vectors of an entity head (see :func:`decoder_tagger`).

    name (str): hub name or local folder of the backbone.
    window (int): subwords per window (1024 for GPT-2; clamped to the model's positions).
    stride (int): subwords between window starts.
    pooling (str): ``last``, ``first`` or ``mean`` subword per word.
    bidirectional (bool): concatenate a pass over the reversed word order.
    shared_weights (bool): one model for both directions.
    tokenizer_config (Optional[dict]): tokenizer settings (``pad_token``…).
    transformer_config (Optional[dict]): model config settings.
    mixed_precision (bool): autocast the forward pass (GPU).
    grad_scaler_config (Optional[dict]): gradient scaler settings.
    torch_optimizer (bool): torch AdamW step for the decoder's weights.
    gradient_checkpointing (bool): trade compute for activation memory.
    max_batch_items (int): padded subwords per forward call when predicting.
    """
    return decoder_tagger(name, window=window, stride=stride, pooling=pooling, bidirectional=bidirectional,
                          shared_weights=shared_weights, tokenizer_config=tokenizer_config,
                          transformer_config=transformer_config, mixed_precision=mixed_precision,
                          grad_scaler_config=grad_scaler_config, torch_optimizer=torch_optimizer,
                          gradient_checkpointing=gradient_checkpointing, max_batch_items=max_batch_items)


@registry.architectures(ARCHITECTURE_V2)
def configure_decoder_tagger_v2(
    name: str,
    window: int = 4096,
    stride: int = 3072,
    pooling: str = "last",
    bidirectional: str = "none",
    shared_weights: bool = True,
    lora: Optional[dict] = None,
    embed_base: bool = False,
    dtype: str = "float32",
    quantization: Optional[str] = None,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = True,
    gradient_checkpointing: bool = False,
    max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
    max_train_batch_items: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """Any causal LM that ``AutoModel`` loads (Llama, Mistral, Qwen2, Phi, GPT-NeoX, GPT-2…) as the token
    vectors of an entity head, with LoRA adapters and the tokenizer's own start token and spacing.

    name (str): hub name or local folder of the backbone.
    window (int): subwords of text per window (clamped so that with the start token it fits the model's
        positions and sliding window).
    stride (int): subwords between window starts.
    pooling (str): ``last``, ``first`` or ``mean`` subword per word.
    bidirectional (str): ``"none"``, ``"reverse"`` (a second pass over the reversed words, 2 × width) or
        ``"unmasked"`` (one pass without the causal mask, as LLM2Vec).
    shared_weights (bool): ``reverse`` through one model (required with LoRA).
    lora (Optional[dict]): ``r`` (0: full fine-tuning), ``alpha``, ``dropout``, ``target_modules``, ``bias``.
    embed_base (bool): with LoRA, store the base weights in the pipeline (default: name + checksum).
    dtype (str): the base weights' precision (``float32``; ``bfloat16`` halves memory).
    quantization (Optional[str]): ``"4bit"``/``"8bit"`` (QLoRA; CUDA and bitsandbytes).
    tokenizer_config (Optional[dict]): tokenizer settings.
    transformer_config (Optional[dict]): model config settings.
    mixed_precision (bool): fp16 autocast of the forward pass (GPU).
    grad_scaler_config (Optional[dict]): gradient scaler settings.
    torch_optimizer (bool): torch AdamW step for the trainable weights.
    gradient_checkpointing (bool): trade compute for activation memory.
    max_batch_items (int): padded subwords per forward call when predicting.
    max_train_batch_items (int): training micro-batches of at most this many padded subwords, each
        recomputed in its own backward pass (gradient accumulation inside one step; 0: off).
    """
    return decoder_tagger(name, window=window, stride=stride, pooling=pooling, bidirectional=bidirectional,
                          shared_weights=shared_weights, lora=lora, embed_base=embed_base, dtype=dtype,
                          quantization=quantization, tokenizer_config=tokenizer_config,
                          transformer_config=transformer_config, mixed_precision=mixed_precision,
                          grad_scaler_config=grad_scaler_config, torch_optimizer=torch_optimizer,
                          gradient_checkpointing=gradient_checkpointing, max_batch_items=max_batch_items,
                          max_train_batch_items=max_train_batch_items, version=2)


def decoder_modules(model: Model) -> List[Any]:
    """The Hugging Face torch modules inside every DecoderTagger of ``model``.

    The forward pass's module first, then the backward pass's when its weights
    are separate; e.g. ``decoder_modules(nlp.get_pipe("bioner_tagger").model)[0]
    .get_input_embeddings().register_forward_hook(...)``. Empty before initialisation.
    """
    return [shim._model for node in model.walk() if node.name == "decoder_tagger"
            for encoder in _encoders(node) for shim in encoder.shims if shim._model is not None]


def _encoders(model: Model) -> List[Model]:
    return model.layers[:-1]


def _tokenizer(model: Model) -> Any:
    return model.layers[0].shims[0]._hfmodel.tokenizer


def _init(model: Model, X: Optional[List[Doc]] = None, Y: Any = None) -> None:
    """Load the backbone (offline first), set the pad token, clamp the window, size the output."""
    if not model.attrs["has_transformer"]:
        if model.attrs["version"] > 1:
            _load_v2(model)
        else:
            _load_v1(model)
        model.attrs["has_transformer"] = True
    module = _encoders(model)[0].shims[0]._model
    config = module.config
    _tokenizer_conventions(model)
    limit = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    sliding = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    if sliding and (not limit or int(sliding) < int(limit)):
        limit = sliding  # Mistral: a window never wider than the attention's sliding window
    if limit:
        model.attrs["window"] = min(model.attrs["window"], int(limit) - len(model.attrs["prefix_ids"]))
        model.attrs["stride"] = min(model.attrs["stride"], model.attrs["window"])
    width = int(config.hidden_size)
    model.set_dim("nO", 2 * width if model.attrs["bidirectional"] else width)
    if model.attrs["direction"] == "unmasked":
        check_unmasked(module, name=model.attrs["name"])
    _prepare_for_training(model)


def _load_v1(model: Model) -> None:
    import copy

    from spacy_transformers.data_classes import HFObjects
    from spacy_transformers.layers.transformer_model import huggingface_from_pretrained

    first = _encoders(model)[0].shims[0]._hfmodel
    source = resolve_backbone(model.attrs["name"])
    hf = huggingface_from_pretrained(source, dict(first._init_tokenizer_config), dict(first._init_transformer_config))
    tokenizer = hf.tokenizer
    if tokenizer.pad_token is None:  # GPT-2: none; end-of-text pads (masks come from lengths)
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    for k, encoder in enumerate(_encoders(model)):
        transformer = hf.transformer if k == 0 else copy.deepcopy(hf.transformer)
        shim = encoder.shims[0]
        shim._model = transformer
        shim._hfmodel = HFObjects(tokenizer, transformer, hf.vocab_file_contents,
                                  shim._hfmodel._init_tokenizer_config, shim._hfmodel._init_transformer_config)


def _load_v2(model: Model) -> None:
    """Tokenizer, config and weights (in ``dtype``, quantised where asked); LoRA adapters on top."""
    import copy

    from spacy_transformers.data_classes import HFObjects
    from transformers import AutoConfig, AutoTokenizer

    from .adapters import add_adapters, load_base, prepare_quantized, weights_checksum

    first = _encoders(model)[0].shims[0]
    settings = first.base
    source = resolve_backbone(model.attrs["name"])
    tokenizer = AutoTokenizer.from_pretrained(source, **dict(first._hfmodel._init_tokenizer_config))
    if tokenizer.pad_token is None:  # Llama, Mistral, GPT-2: none; any id will do (masks come from lengths)
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    vocab_file = getattr(tokenizer, "vocab_file", None)  # HFShim re-saves it (SentencePiece tokenizers)
    vocab_contents = Path(vocab_file).read_bytes() if vocab_file and Path(vocab_file).is_file() else None
    config = AutoConfig.from_pretrained(source, **dict(first._hfmodel._init_transformer_config))
    transformer = load_base(source, config, dtype=settings["dtype"], quantization=settings["quantization"])
    adapted = bool(settings["lora"]["r"])
    if not adapted or settings["embed_base"]:
        check_storable(transformer, name=model.attrs["name"], adapted=adapted)
    if adapted and not settings["embed_base"] and not settings["quantization"]:
        settings["checksum"] = weights_checksum(transformer)
    if settings["quantization"]:
        transformer = prepare_quantized(transformer, gradient_checkpointing=model.attrs["gradient_checkpointing"])
    if adapted:
        transformer = add_adapters(transformer, settings["lora"], name=model.attrs["name"])
    for k, encoder in enumerate(_encoders(model)):
        module = transformer if k == 0 else copy.deepcopy(transformer)
        shim = encoder.shims[0]
        shim.base.update(settings)
        shim._model = module
        shim._hfmodel = HFObjects(tokenizer, module, vocab_contents, shim._hfmodel._init_tokenizer_config,
                                  shim._hfmodel._init_transformer_config)


#: msgpack (srsly) stores one item of at most 2**32 - 1 bytes: a component's weights must fit in it.
MAX_STORED_BYTES = 2 ** 32 - 2 ** 26


def check_storable(module: Any, *, name: str, adapted: bool) -> None:
    """One line when a model's weights are too big to be stored inside a pipeline (4 GiB msgpack limit)."""
    size = sum(p.numel() * p.element_size() for p in module.parameters())
    if size > MAX_STORED_BYTES:
        what = "embed_base = true" if adapted else "full fine-tuning (lora.r = 0)"
        raise ConfigValueError(f"{name}: {size / 2 ** 30:.1f} GiB of weights cannot be stored in a pipeline "
                               f"(4 GiB limit), so {what} cannot be saved; train LoRA adapters with the base "
                               "referenced (lora.r > 0, embed_base = false)")


def _tokenizer_conventions(model: Model) -> None:
    """v2: the start tokens the tokenizer puts before a text (``<s>`` for Llama/Mistral, none for GPT-2 and
    Qwen2) and whether it adds the leading space marker itself; v1: GPT-2's (none, explicit spaces)."""
    if model.attrs.get("prefix_ids") is not None and model.attrs.get("self_prefixed") is not None:
        return
    if model.attrs["version"] == 1:
        model.attrs["prefix_ids"], model.attrs["self_prefixed"] = [], False
        return
    tokenizer = _tokenizer(model)

    def ids(text: str, special: bool = False) -> List[int]:
        return list(tokenizer(text, add_special_tokens=special)["input_ids"])

    bare, with_special = ids("a"), ids("a", special=True)
    prefix: List[int] = []
    for start in range(len(with_special) - len(bare) + 1):
        if with_special[start:start + len(bare)] == bare:
            prefix = with_special[:start]
            break
    in_text = ids("b a")
    model.attrs["prefix_ids"] = [int(i) for i in prefix]
    model.attrs["self_prefixed"] = bool(in_text[len(in_text) - len(bare):] == bare)


def check_unmasked(module: Any, *, name: str) -> None:
    """Raise a one-line error when a model ignores a custom 4-D attention mask (its causal mask would stay)."""
    import torch

    implementation = getattr(getattr(module, "config", None), "_attn_implementation", "eager") or "eager"
    if implementation not in ("eager", "sdpa"):
        raise ConfigValueError(f"bidirectional = \"unmasked\" needs eager or sdpa attention, and {name} uses "
                               f"{implementation}; set transformer_config.attn_implementation = \"sdpa\"")
    vocab = module.get_input_embeddings().num_embeddings
    a, b, c, d = (vocab - k for k in (5, 4, 3, 2))  # ordinary tokens (low ids are often <s>, <pad>…)
    ids = torch.tensor([[a, b, c], [a, b, d]], device=module.device)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        mask = _bidirectional_mask(torch.tensor([3, 3], device=module.device), 3, dtype=_mask_dtype(module))
        hidden = module(input_ids=ids, attention_mask=mask, use_cache=False, return_dict=True).last_hidden_state
    module.train(was_training)
    if torch.allclose(hidden[0, 0], hidden[1, 0]):
        raise ConfigValueError(f"bidirectional = \"unmasked\": {name} ({type(module).__name__}) ignores a custom "
                               "attention mask, so its causal mask cannot be removed; use \"reverse\" instead")


def _mask_dtype(module: Any) -> Any:
    import torch

    dtype = module.get_input_embeddings().weight.dtype
    return dtype if dtype.is_floating_point else torch.float32


def _bidirectional_mask(lengths: Any, width: int, *, dtype: Any) -> Any:
    """A (batch, 1, width, width) additive mask: every position sees every real (non-padding) position."""
    import torch

    keys = torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]
    mask = torch.zeros(keys.shape, dtype=dtype, device=lengths.device)
    mask.masked_fill_(~keys, torch.finfo(dtype).min)
    return mask[:, None, None, :].expand(-1, 1, width, -1)


def _prepare_for_training(model: Model) -> None:
    """The config's torch AdamW step and gradient checkpointing, on the modules the model holds now
    (at initialisation, and before each training pass: ``spacy.load`` never calls ``_init``)."""
    from .transformer import prepare_for_training

    prepare_for_training(model, torch_optimizer=model.attrs["torch_optimizer"],
                         gradient_checkpointing=model.attrs["gradient_checkpointing"])


def _pad_id(tokenizer: Any, transformer: Any) -> int:
    """The id that fills padded positions (masked, so any id the embeddings know will do)."""
    vocab = transformer.get_input_embeddings().num_embeddings
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None and 0 <= candidate < vocab:
            return int(candidate)
    return 0


def _convert_inputs(model: Model, X: Tuple[numpy.ndarray, numpy.ndarray], is_train: bool, causal: bool = True):
    """Right-padded ids and their lengths → ``input_ids`` and a mask built from the lengths (a 4-D mask
    without the causal triangle when ``causal`` is false)."""
    import torch
    from thinc.types import ArgsKwargs

    ids, lengths = X
    module = model.shims[0]._model
    device = module.device
    input_ids = torch.as_tensor(ids, dtype=torch.long, device=device)
    n = torch.as_tensor(lengths, dtype=torch.long, device=device)
    if causal:
        mask = (torch.arange(ids.shape[1], device=device)[None, :] < n[:, None]).long()
    else:
        mask = _bidirectional_mask(n, ids.shape[1], dtype=_mask_dtype(module))
    kwargs = {"input_ids": input_ids, "attention_mask": mask, "use_cache": False, "return_dict": True}
    return ArgsKwargs(args=(), kwargs=kwargs), lambda d_inputs: []


def _convert_outputs(model: Model, inputs_outputs: Any, is_train: bool):
    """The last layer's hidden states (float32), and the gradient back into them."""
    import torch
    from thinc.api import torch2xp, xp2torch
    from thinc.types import ArgsKwargs

    _, output = inputs_outputs
    hidden = output.last_hidden_state
    if hidden.dtype != torch.float32:
        hidden = hidden.float()

    def backprop(d_hidden):
        return ArgsKwargs(args=(hidden,), kwargs={"grad_tensors": [xp2torch(d_hidden, device=hidden.device)]})

    return torch2xp(hidden.detach()), backprop


def _encode(encoder: Model, seqs: List[numpy.ndarray], *, pad_id: int, is_train: bool,
            max_batch_items: int, max_train_batch_items: int = 0) -> Tuple[Any, numpy.ndarray, Callable]:
    """Run right-padded sequences through one encoder.

    RETURNS: the hidden states of all positions flattened to rows (padding
    included), the row of each sequence's first position, and a backprop taking
    the gradient of those rows. Training runs every sequence in one call (one
    backward pass, so mixed-precision gradient scaling stays exact); prediction
    sorts them by length and groups them under ``max_batch_items`` padded subwords.
    """
    if is_train and max_train_batch_items:  # micro-batches, each recomputed in its own backward pass
        groups = padded_size_groups([len(seq) for seq in seqs], max_items=max_train_batch_items)
        encoder.shims[0].recompute = len(groups) > 1
    elif is_train:
        groups = [list(range(len(seqs)))]
        if hasattr(encoder.shims[0], "recompute"):
            encoder.shims[0].recompute = False
    else:
        groups = padded_size_groups([len(seq) for seq in seqs], max_items=max_batch_items)
    outputs, backprops, shapes = [], [], []
    bases = numpy.zeros((len(seqs),), dtype="int64")
    row = 0
    for group in groups:
        lengths = numpy.asarray([len(seqs[k]) for k in group], dtype="int64")
        ids = numpy.full((len(group), int(lengths.max())), pad_id, dtype="int64")
        for i, k in enumerate(group):
            ids[i, :lengths[i]] = seqs[k]
            bases[k] = row + i * ids.shape[1]
        hidden, backprop = encoder((ids, lengths), is_train)
        shapes.append(hidden.shape)
        outputs.append(hidden.reshape((-1, hidden.shape[-1])))
        backprops.append(backprop)
        row += ids.size
    xp = encoder.ops.xp
    flat = outputs[0] if len(outputs) == 1 else xp.concatenate(outputs)

    def backprop_rows(d_flat):
        start = 0
        for shape, backprop in zip(shapes, backprops):
            size = shape[0] * shape[1]
            backprop(xp.ascontiguousarray(d_flat[start:start + size].reshape(shape)))
            start += size
        return []

    return flat, bases, backprop_rows


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    if is_train:
        _prepare_for_training(model)
    ops = model.ops
    xp = ops.xp
    tokenizer = _tokenizer(model)
    window, stride = model.attrs["window"], model.attrs["stride"]
    directions = [False, True] if model.attrs["bidirectional"] else [False]
    encoders = _encoders(model)
    pool = model.get_ref("pooling")
    width = model.get_dim("nO") // len(directions)
    docs = list(docs)
    _tokenizer_conventions(model)  # a loaded pipeline: from its attrs (or worked out once)
    prefix = numpy.asarray(model.attrs["prefix_ids"], dtype="int64")
    self_prefixed = model.attrs["self_prefixed"]
    pieces = [doc_pieces(doc, tokenizer, cache=model.attrs["piece_cache"], max_pieces=window,
                         self_prefixed=self_prefixed) for doc in docs]
    doc_lengths = [len(doc) for doc in docs]
    all_lengths = numpy.concatenate([lens for _, lens in pieces]) if pieces else numpy.zeros((0,), "int32")
    n_words = len(all_lengths)
    # For each direction: the windows' sequences, and per word (Doc order) the window sequence and position
    # of its first piece in that sequence.
    plans = []
    for backward in directions:
        seqs: List[numpy.ndarray] = []
        word_seq = numpy.zeros((n_words,), dtype="int64")
        word_pos = numpy.zeros((n_words,), dtype="int64")
        at = 0
        for ids, lengths in pieces:
            n = len(lengths)
            if backward:
                ids, lengths = reverse_words(ids, lengths)
            offsets = numpy.concatenate([[0], numpy.cumsum(lengths)]).astype("int64")
            seq_of = numpy.zeros((n,), dtype="int64")
            pos_of = numpy.zeros((n,), dtype="int64")
            for w in plan_windows(lengths, window=window, stride=stride):
                lo, hi = offsets[w.start], offsets[w.end]
                if hi == lo:
                    continue  # only whitespace: no pieces, zero vectors
                seq_of[w.first:w.end] = len(seqs)
                pos_of[w.first:w.end] = offsets[w.first:w.end] - lo + len(prefix)
                seqs.append(numpy.concatenate([prefix, ids[lo:hi]]) if len(prefix) else ids[lo:hi])
            if backward:
                seq_of, pos_of = seq_of[::-1], pos_of[::-1]
            word_seq[at:at + n] = seq_of
            word_pos[at:at + n] = pos_of
            at += n
        plans.append((seqs, word_seq, word_pos))
    if not any(plan[0] for plan in plans):
        return [ops.alloc2f(n, model.get_dim("nO")) for n in doc_lengths], lambda d_vectors: []
    pad_id = _pad_id(tokenizer, encoders[0].shims[0]._model)
    max_items = model.attrs["max_batch_items"]
    max_train_items = model.attrs.get("max_train_batch_items", 0)
    # Encode: one call per encoder (shared weights: both directions in one batch).
    runs = []  # per direction: (flattened hidden rows, row of each window's first position, backprop)
    if len(encoders) == 1 and len(plans) == 2:
        both = plans[0][0] + plans[1][0]
        flat, bases, backprop = _encode(encoders[0], both, pad_id=pad_id, is_train=is_train, max_batch_items=max_items,
                                        max_train_batch_items=max_train_items)
        runs = [(flat, bases[:len(plans[0][0])], backprop), (flat, bases[len(plans[0][0]):], backprop)]
    else:
        for encoder, (seqs, _, _) in zip(encoders, plans):
            runs.append(_encode(encoder, seqs, pad_id=pad_id, is_train=is_train, max_batch_items=max_items,
                                max_train_batch_items=max_train_items))
    starts = numpy.cumsum(all_lengths) - all_lengths
    total = int(all_lengths.sum())
    within = numpy.arange(total, dtype="int64") - numpy.repeat(starts, all_lengths)
    outputs, row_sets = [], []
    for (_, word_seq, word_pos), (flat, bases, _) in zip(plans, runs):
        first_rows = bases[word_seq] + word_pos if len(bases) else word_pos
        rows = numpy.repeat(first_rows, all_lengths) + within
        rows_xp = xp.asarray(rows)
        Y, bp_pool = pool(Ragged(flat[rows_xp], xp.asarray(all_lengths)), is_train)
        outputs.append(Y)
        row_sets.append((rows_xp, bp_pool))
    vectors = outputs[0] if len(outputs) == 1 else xp.hstack(outputs)
    result = ops.unflatten(vectors, numpy.asarray(doc_lengths, dtype="int32"))

    def backprop(d_vectors: List[Floats2d]) -> List[Doc]:
        d_all = ops.flatten(d_vectors) if d_vectors else ops.alloc2f(0, model.get_dim("nO"))
        d_flats: Dict[int, Any] = {}
        for k, ((rows_xp, bp_pool), (flat, _, _)) in enumerate(zip(row_sets, runs)):
            d_rows = bp_pool(xp.ascontiguousarray(d_all[:, k * width:(k + 1) * width])).dataXd
            key = id(flat)
            if key not in d_flats:
                d_flats[key] = ops.alloc2f(*flat.shape)
            d_flats[key][rows_xp] = d_rows  # every piece row is gathered once
        done = set()
        for flat, _, backprop_rows in runs:
            if id(flat) not in done:
                backprop_rows(d_flats[id(flat)])
                done.add(id(flat))
        return docs

    return result, backprop
