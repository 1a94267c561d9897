"""Inference-only speed-ups for a loaded pipeline's transformers (``evaluate``, ``annotate``).

* length buckets (:mod:`.buckets`) for pipelines trained with an architecture
  that predates them (``TransformerModel.v1``/``.v2``): same entities, less padding;
* int8 dynamic quantization of the ``Linear`` layers (CPU only): PyTorch's
  ``quantize_dynamic``, weights stored as int8, activations quantized per batch.
  Faster on CPU, not bit-identical: report its F1 next to the fp32 one.
"""
import warnings
from typing import TYPE_CHECKING, Any, Iterator

from .buckets import PATCH_ATTR, check_ratio, enable_length_buckets

if TYPE_CHECKING:
    from spacy.language import Language


def torch_modules(nlp: "Language") -> Iterator[Any]:
    """Every torch module wrapped by a component's model (one per shim)."""
    seen = set()
    for _, component in nlp.components:
        model = getattr(component, "model", None)
        if model is None or not hasattr(model, "walk"):
            continue
        for node in model.walk():
            for shim in node.shims:
                module = getattr(shim, "_model", None)
                if module is not None and id(module) not in seen and hasattr(module, "parameters"):
                    seen.add(id(module))
                    yield module


def add_length_buckets(nlp: "Language", *, ratio: float = 0.8) -> int:
    """Set the length-bucket ratio of every transformer in a loaded pipeline (it overrides the config's).

    nlp (Language): a loaded pipeline.
    ratio (float): bucket ratio; 0 turns buckets off (also for ``TransformerModel.v3`` pipelines).
    RETURNS (int): modules set.
    """
    check_ratio(ratio)
    count = 0
    for module in torch_modules(nlp):
        if _is_transformer(module):
            _, on_gpu = getattr(module, PATCH_ATTR, (0.0, False))
            enable_length_buckets(module, ratio=ratio, on_gpu=on_gpu)
            count += 1
    return count


def quantize_int8(nlp: "Language") -> int:
    """Dynamic int8 quantization of every transformer's ``Linear`` layers, in place (CPU only).

    nlp (Language): a loaded pipeline on the CPU.
    RETURNS (int): modules quantized. A module on a GPU is a ValueError.
    """
    import torch

    count = 0
    for module in torch_modules(nlp):
        if not _is_transformer(module):
            continue
        param = next(module.parameters(), None)
        if param is not None and param.device.type != "cpu":
            raise ValueError("int8 quantization is for CPU inference; drop --int8 on a GPU "
                             "(use mixed precision there)")
        if not any(isinstance(m, torch.nn.Linear) for m in module.modules()):
            continue  # e.g. GPT-2's Conv1D layers: nothing dynamic quantization can take
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's deprecation notice pointing at torchao
            torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
        count += 1
    return count


def _is_transformer(module: Any) -> bool:
    """A Hugging Face model (it has a ``config``), not a small thinc-wrapped torch layer."""
    return hasattr(module, "config") and hasattr(module, "forward")
