"""The transformer architecture: ``spacy_bioner.TransformerModel.v1`` and ``.v2``.

Both are spacy-transformers' ``TransformerModel`` that finds backbones offline
first and binds a subword-window span getter to the model's tokenizer. ``v2``
adds a torch-native optimizer step (:mod:`spacy_bioner.models.optim`) and
gradient checkpointing.
"""
from typing import Callable, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from .backbones import resolve_backbone


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
        if gradient_checkpointing:
            enable_gradient_checkpointing(model)
        if torch_optimizer:
            from .optim import use_torch_optimizer

            use_torch_optimizer(model)
        return result

    model.init = init
    return model


def enable_gradient_checkpointing(model: Model) -> None:
    """Turn on Hugging Face gradient checkpointing in every transformer the model wraps."""
    for node in model.walk():
        for shim in node.shims:
            hf = getattr(shim, "_model", None)
            if hf is None:
                continue
            if not getattr(hf, "supports_gradient_checkpointing", False):
                raise ValueError(f"gradient_checkpointing: {type(hf).__name__} does not support it; "
                                 "set components.transformer.model.gradient_checkpointing = false")
            hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


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
