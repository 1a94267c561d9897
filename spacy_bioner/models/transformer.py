"""Registered model architectures."""
from typing import Callable, List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from .backbones import resolve_backbone


@registry.architectures("spacy_bioner.TransformerModel.v1")
def create_transformer_model(
    name: str,
    get_spans: Callable,
    tokenizer_config: Optional[dict] = None,
    transformer_config: Optional[dict] = None,
    mixed_precision: bool = False,
    grad_scaler_config: Optional[dict] = None,
) -> Model[List[Doc], "FullTransformerBatch"]:  # noqa: F821
    """spacy-transformers' ``TransformerModel.v3`` that finds backbones offline first.

    When the model is initialised (training, not loading a trained pipeline),
    ``name`` is resolved with :func:`~spacy_bioner.backbones.resolve_backbone`:
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
        return hf_init(model, X=X, Y=Y)

    model.init = init
    return model
