"""The transformer architecture: ``spacy_bioner.TransformerModel.v1`` to ``.v5``.

All are spacy-transformers' ``TransformerModel`` that finds backbones offline
first and binds a subword-window span getter to the model's tokenizer. ``v2``
adds a torch-native optimizer step (:mod:`spacy_bioner.models.optim`) and
gradient checkpointing; ``v3`` adds length buckets (:mod:`spacy_bioner.models.buckets`);
``v4`` remembers each training window's tokenization (:mod:`spacy_bioner.models.tokenization`)
and aligns tokens to subwords with array operations (:mod:`spacy_bioner.models.alignment`);
``v5`` can prefix every window with a task prompt (:mod:`spacy_bioner.models.prompts`).
"""
from typing import Callable, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from ..errors import ConfigValueError
from .backbones import resolve_backbone

#: Marks a Hugging Face module whose gradient checkpointing spacy-bioner switched on.
CHECKPOINTING_ATTR = "_spacy_bioner_checkpointing"


def transformer_model(
    name: str,
    get_spans: Callable,
    *,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = False,
    gradient_checkpointing: bool = False,
    length_buckets: float = 0.0,
    length_buckets_on_gpu: bool = False,
    tokenization_cache: bool = False,
    fast_alignment: bool = False,
    task_prompt: Optional["TaskPrompt"] = None,  # noqa: F821
) -> Model[List[Doc], "FullTransformerBatch"]:  # noqa: F821
    """spacy-transformers' ``TransformerModel`` that finds backbones offline first.

    When the model is initialised (training, not loading a trained pipeline),
    ``name`` is resolved with :func:`~spacy_bioner.models.backbones.resolve_backbone`:
    a local folder, a copy shipped in an installed package, the HF cache, then
    the hub; a miss fails at once with a message saying how to pass a path.
    A span getter with a ``bind`` method (``spacy_bioner.subword_windows.v1``)
    is given the model so it can count subwords with its tokenizer.

    name (str): hub name or local folder of the backbone.
    get_spans (Callable): span getter.
    tokenizer_config (dict): passed to ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): passed to the transformer's forward pass.
    mixed_precision (bool): autocast the forward pass (GPU).
    grad_scaler_config (dict): PyTorch gradient scaler settings.
    torch_optimizer (bool): update the transformer's weights with one torch
        AdamW step (global-norm clipping) instead of thinc's per-parameter loop.
    gradient_checkpointing (bool): recompute activations in the backward pass
        (less memory, ~30 % more compute); needs a backbone that supports it.
    length_buckets (float): run each padded batch as sub-batches whose lengths are
        within this ratio of their longest (0: off); see :mod:`.buckets`.
    length_buckets_on_gpu (bool): bucket on a GPU too (off: launches cost more there).
    tokenization_cache (bool): in training, remember each window's subword encoding
        instead of tokenizing it again every epoch (see :mod:`.tokenization`); needs
        ``fast_alignment``, whose forward reads the cache.
    fast_alignment (bool): spacy-bioner's forward: tokens and subwords aligned with array
        operations (same result as spacy-transformers; see :mod:`.alignment`).
    task_prompt (Optional[TaskPrompt]): encode each window as the pair (prompt, window); needs
        ``fast_alignment`` (see :mod:`.prompts`).
    """
    from spacy_transformers.layers.transformer_model import TransformerModel

    model = TransformerModel(
        name,
        get_spans,
        tokenizer_config=dict(tokenizer_config or {}),
        transformer_config=dict(transformer_config or {}),
        mixed_precision=mixed_precision,
        grad_scaler_config=dict(grad_scaler_config or {}),
    )
    if hasattr(get_spans, "bind"):
        get_spans.bind(model)
    hf_init = model.init

    def init(model: Model, X=None, Y=None):
        if not model.attrs["has_transformer"]:
            model.attrs["name"] = resolve_backbone(model.attrs["name"])
        result = hf_init(model, X=X, Y=Y)
        prepare_for_training(model, torch_optimizer=torch_optimizer, gradient_checkpointing=gradient_checkpointing)
        return result

    model.init = init
    if task_prompt is not None:
        if not fast_alignment:
            raise ConfigValueError("task_prompt needs fast_alignment (the forward that encodes the prompt)")
        model.attrs["task_prompt"] = task_prompt
    if fast_alignment:
        model._func = cached_forward
        if tokenization_cache:
            from .tokenization import TokenizationCache

            model.attrs["tokenization_cache"] = TokenizationCache()
    elif tokenization_cache:
        raise ValueError("tokenization_cache needs fast_alignment (the forward that reads the cache)")
    if length_buckets:
        from .buckets import PATCH_ATTR, check_ratio, enable_length_buckets

        check_ratio(length_buckets)  # a bad value fails when the config is built, not mid-training
        plain_forward = model._func

        def forward(model: Model, docs: List[Doc], is_train: bool):
            # The HF module is created at initialisation and again when a pipeline is loaded: patch whichever is there.
            hf = model.layers[0].shims[0]._model if model.layers and model.layers[0].shims else None
            if hf is not None and not hasattr(hf, PATCH_ATTR):
                enable_length_buckets(hf, ratio=length_buckets, on_gpu=length_buckets_on_gpu)
            return plain_forward(model, docs, is_train)

        model._func = forward
    if torch_optimizer or gradient_checkpointing:
        # `spacy.load` never calls `init`: a loaded pipeline gets the config's training settings at its first
        # training forward pass, so continued training (sourced, packaged, `resume_training`) is the same.
        inner_forward = model._func

        def training_forward(model: Model, docs: List[Doc], is_train: bool):
            if is_train:
                prepare_for_training(model, torch_optimizer=torch_optimizer,
                                     gradient_checkpointing=gradient_checkpointing)
            return inner_forward(model, docs, is_train)

        model._func = training_forward
    return model


def prepare_for_training(model: Model, *, torch_optimizer: bool, gradient_checkpointing: bool) -> None:
    """Switch on what the config asks for training, on whichever torch modules the model holds now.

    Idempotent and cheap, so it runs at initialisation and before every training forward pass: the
    modules are created at initialisation and again when a saved pipeline is loaded.

    model (Model): a model that wraps Hugging Face modules in PyTorch shims.
    torch_optimizer (bool): update the shims' weights with :func:`~spacy_bioner.models.optim.torch_finish_update`.
    gradient_checkpointing (bool): recompute activations in the backward pass.
    """
    if gradient_checkpointing:
        enable_gradient_checkpointing(model)
    if torch_optimizer:
        from .optim import use_torch_optimizer

        use_torch_optimizer(model)


def cached_forward(model: Model, docs: List[Doc], is_train: bool):
    """spacy-transformers' ``TransformerModel`` forward with the same outputs, faster: in training the
    windows' encodings come from ``model.attrs["tokenization_cache"]`` (prediction tokenizes afresh: a
    corpus seldom repeats a window), and the token ↔ subword alignment is computed with array operations
    (:func:`~spacy_bioner.models.alignment.offset_alignment`)."""
    from spacy_transformers.data_classes import FullTransformerBatch, WordpieceBatch
    from spacy_transformers.layers import transformer_model as st
    from spacy_transformers.truncate import truncate_oversize_splits

    from .alignment import offset_alignment

    tokenizer = model.tokenizer
    prompt = model.attrs.get("task_prompt")
    if not getattr(tokenizer, "is_fast", False):  # no offsets: spacy-transformers' string alignment
        if prompt is not None:
            raise ConfigValueError("task_prompt needs a fast tokenizer (character offsets); this backbone's "
                             f"{type(tokenizer).__name__} is not one")
        return st.forward(model, docs, is_train)
    nested_spans = model.attrs["get_spans"](docs)
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    if not flat_spans:
        return st.forward(model, docs, is_train)
    st.maybe_flush_pytorch_cache(chance=model.attrs.get("flush_cache_chance", 0))
    logger = model.attrs.get("logger")
    if logger is not None:
        st.log_gpu_memory(logger, "begin forward")
    texts = [span.text for span in flat_spans]
    cache = model.attrs.get("tokenization_cache")
    if prompt is not None:
        from .prompts import prompted_batch

        prompts = [prompt.for_doc(span.doc, is_train=is_train) for span in flat_spans]
        batch_encoding = prompted_batch(tokenizer, prompts, texts, cache=cache if is_train else None)
        if "token_type_ids" in batch_encoding and _type_vocab_size(model) < 2:
            # a pair's text is segment 1, which a model with one token type has no embedding for
            batch_encoding = {**batch_encoding, "token_type_ids": batch_encoding["token_type_ids"] * 0}
    elif is_train and cache is not None:
        batch_encoding = cache(tokenizer, texts)
    else:
        batch_encoding = st.huggingface_tokenize(tokenizer, texts)
    wordpieces = WordpieceBatch.from_batch_encoding(batch_encoding)
    if logger is not None:
        st.log_batch_size(logger, wordpieces, is_train)
    align = offset_alignment(flat_spans, batch_encoding["offset_mapping"])
    wordpieces, align = truncate_oversize_splits(wordpieces, align, tokenizer.model_max_length)
    model_output, bp_tensors = model.layers[0](wordpieces, is_train)
    if logger is not None:
        st.log_gpu_memory(logger, "after forward")
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop_transformer(d_output: "FullTransformerBatch") -> List[Doc]:  # noqa: F821
        if logger is not None:
            st.log_gpu_memory(logger, "Begin backprop")
        bp_tensors(d_output.model_output)
        if logger is not None:
            st.log_gpu_memory(logger, "After backprop")
        return docs

    return output, backprop_transformer


def _type_vocab_size(model: Model) -> int:
    """Token types the wrapped Hugging Face model embeds (2 when unknown, as BERT)."""
    shims = model.layers[0].shims if model.layers else []
    config = getattr(getattr(shims[0], "_model", None), "config", None) if shims else None
    size = getattr(config, "type_vocab_size", None)
    return 2 if size is None else int(size)


def enable_gradient_checkpointing(model: Model) -> None:
    """Turn on Hugging Face gradient checkpointing in every transformer the model wraps."""
    for node in model.walk():
        for shim in node.shims:
            hf = getattr(shim, "_model", None)
            if hf is None or getattr(hf, CHECKPOINTING_ATTR, False):
                continue
            if not getattr(hf, "supports_gradient_checkpointing", False):
                raise ValueError(f"gradient_checkpointing: {type(hf).__name__} does not support it; "
                                 "set components.transformer.model.gradient_checkpointing = false")
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            setattr(hf, CHECKPOINTING_ATTR, True)


@registry.architectures("spacy_bioner.TransformerModel.v1")
def create_transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
) -> Model[List[Doc], "FullTransformerBatch"]:  # noqa: F821
    """spacy-transformers' ``TransformerModel.v3`` that finds backbones offline first (see :func:`transformer_model`)."""
    return transformer_model(name, get_spans, tokenizer_config=tokenizer_config,
                             transformer_config=transformer_config, mixed_precision=mixed_precision,
                             grad_scaler_config=grad_scaler_config)


@registry.architectures("spacy_bioner.TransformerModel.v2")
def create_transformer_model_v2(
    name: str,
    get_spans: Callable,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = True,
    gradient_checkpointing: bool = False,
) -> Model[List[Doc], "FullTransformerBatch"]:  # noqa: F821
    """``v1`` plus a torch-native optimizer step for the transformer and gradient checkpointing.

    name (str): hub name or local folder of the backbone.
    get_spans (Callable): span getter.
    tokenizer_config (dict): passed to ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): passed to the transformer's forward pass.
    mixed_precision (bool): autocast the forward pass (GPU).
    grad_scaler_config (dict): PyTorch gradient scaler settings.
    torch_optimizer (bool): one torch AdamW step for all transformer weights (default).
    gradient_checkpointing (bool): trade compute for activation memory.
    """
    return transformer_model(name, get_spans, tokenizer_config=tokenizer_config,
                             transformer_config=transformer_config, mixed_precision=mixed_precision,
                             grad_scaler_config=grad_scaler_config, torch_optimizer=torch_optimizer,
                             gradient_checkpointing=gradient_checkpointing)


@registry.architectures("spacy_bioner.TransformerModel.v3")
def create_transformer_model_v3(
    name: str,
    get_spans: Callable,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = True,
    gradient_checkpointing: bool = False,
    length_buckets: float = 0.8,
    length_buckets_on_gpu: bool = False,
) -> Model[List[Doc], "FullTransformerBatch"]:  # noqa: F821
    """``v2`` plus length buckets: a padded batch runs as sub-batches of similar length.

    name (str): hub name or local folder of the backbone.
    get_spans (Callable): span getter.
    tokenizer_config (dict): passed to ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): passed to the transformer's forward pass.
    mixed_precision (bool): autocast the forward pass (GPU).
    grad_scaler_config (dict): PyTorch gradient scaler settings.
    torch_optimizer (bool): one torch AdamW step for all transformer weights (default).
    gradient_checkpointing (bool): trade compute for activation memory.
    length_buckets (float): a row starts a new sub-batch when shorter than this
        ratio × the sub-batch's longest row (0: off; default 0.8).
    length_buckets_on_gpu (bool): bucket on a GPU too (default off).
    """
    return transformer_model(name, get_spans, tokenizer_config=tokenizer_config,
                             transformer_config=transformer_config, mixed_precision=mixed_precision,
                             grad_scaler_config=grad_scaler_config, torch_optimizer=torch_optimizer,
                             gradient_checkpointing=gradient_checkpointing, length_buckets=length_buckets,
                             length_buckets_on_gpu=length_buckets_on_gpu)


@registry.architectures("spacy_bioner.TransformerModel.v4")
def create_transformer_model_v4(
    name: str,
    get_spans: Callable,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = True,
    gradient_checkpointing: bool = False,
    length_buckets: float = 0.8,
    length_buckets_on_gpu: bool = False,
    tokenization_cache: bool = True,
) -> Model[List[Doc], "FullTransformerBatch"]:  # noqa: F821
    """``v3`` plus a tokenization cache (training tokenizes each window once, not once per epoch) and
    the token ↔ subword alignment in array operations, in training and prediction.

    name (str): hub name or local folder of the backbone.
    get_spans (Callable): span getter.
    tokenizer_config (dict): passed to ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): passed to the transformer's forward pass.
    mixed_precision (bool): autocast the forward pass (GPU).
    grad_scaler_config (dict): PyTorch gradient scaler settings.
    torch_optimizer (bool): one torch AdamW step for all transformer weights (default).
    gradient_checkpointing (bool): trade compute for activation memory.
    length_buckets (float): a row starts a new sub-batch when shorter than this
        ratio × the sub-batch's longest row (0: off; default 0.8).
    length_buckets_on_gpu (bool): bucket on a GPU too (default off).
    tokenization_cache (bool): remember each training window's encoding (default on;
        prediction always tokenizes afresh).
    """
    return transformer_model(name, get_spans, tokenizer_config=tokenizer_config,
                             transformer_config=transformer_config, mixed_precision=mixed_precision,
                             grad_scaler_config=grad_scaler_config, torch_optimizer=torch_optimizer,
                             gradient_checkpointing=gradient_checkpointing, length_buckets=length_buckets,
                             length_buckets_on_gpu=length_buckets_on_gpu, tokenization_cache=tokenization_cache,
                             fast_alignment=True)


@registry.architectures("spacy_bioner.TransformerModel.v5")
def create_transformer_model_v5(
    name: str,
    get_spans: Callable,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
    torch_optimizer: bool = True,
    gradient_checkpointing: bool = False,
    length_buckets: float = 0.8,
    length_buckets_on_gpu: bool = False,
    tokenization_cache: bool = True,
    task_prompt: Optional["TaskPrompt"] = None,  # noqa: F821
) -> Model[List[Doc], "FullTransformerBatch"]:  # noqa: F821
    """``v4`` plus an optional task prompt before every window (``spacy_bioner.task_prompt.v1``/``.v2``): in
    training it names the types the window's corpus annotates, at prediction every type.

    name (str): hub name or local folder of the backbone.
    get_spans (Callable): span getter.
    tokenizer_config (dict): passed to ``AutoTokenizer.from_pretrained``.
    transformer_config (dict): passed to the transformer's forward pass.
    mixed_precision (bool): autocast the forward pass (GPU).
    grad_scaler_config (dict): PyTorch gradient scaler settings.
    torch_optimizer (bool): one torch AdamW step for all transformer weights (default).
    gradient_checkpointing (bool): trade compute for activation memory.
    length_buckets (float): a row starts a new sub-batch when shorter than this
        ratio × the sub-batch's longest row (0: off; default 0.8).
    length_buckets_on_gpu (bool): bucket on a GPU too (default off).
    tokenization_cache (bool): remember each training window's encoding (default on).
    task_prompt (Optional[TaskPrompt]): the prompt (None: ``v4`` exactly).
    """
    return transformer_model(name, get_spans, tokenizer_config=tokenizer_config,
                             transformer_config=transformer_config, mixed_precision=mixed_precision,
                             grad_scaler_config=grad_scaler_config, torch_optimizer=torch_optimizer,
                             gradient_checkpointing=gradient_checkpointing, length_buckets=length_buckets,
                             length_buckets_on_gpu=length_buckets_on_gpu, tokenization_cache=tokenization_cache,
                             fast_alignment=True, task_prompt=task_prompt)
