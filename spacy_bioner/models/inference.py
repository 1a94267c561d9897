"""Loading a trained pipeline for inference (``evaluate``, ``annotate``), and its speed-ups.

* :func:`load_pipeline`: ``spacy.load`` with one-line errors for what is not a pipeline;
* :func:`add_doc_cleaner`: predicted Docs drop the transformer's outputs once their entities are set;
* :func:`speed_up`: the speed-ups below, as ``evaluate``/``annotate`` ``--runtime/--length-buckets/--int8`` apply them.

Speed-ups for a loaded pipeline's transformers:

* length buckets (:mod:`.buckets`) for pipelines trained with an architecture
  that predates them (``TransformerModel.v1``/``.v2``): same entities, less padding;
* int8 dynamic quantization of the ``Linear`` layers (CPU only): PyTorch's
  ``quantize_dynamic``, weights stored as int8, activations quantized per batch.
  Faster on CPU, not bit-identical: report its F1 next to the fp32 one;
* ``--runtime onnx``: the encoders on ONNX Runtime (:mod:`.onnx_runtime`), where
  ``--int8`` is ONNX Runtime's dynamic quantization of the graph instead.
"""
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, Optional, Set, Union

from ..errors import ModelLoadError, config_problem
from .buckets import PATCH_ATTR, check_ratio, enable_length_buckets

if TYPE_CHECKING:
    from spacy.language import Language


#: What ``doc_cleaner`` drops from predicted Docs.
CLEANED_ATTRS = {"tensor": None, "_.trf_data": None}
#: Name of the cleaner :func:`add_doc_cleaner` adds to a pipeline that has none.
ADDED_CLEANER = "bioner_doc_cleaner"


def load_pipeline(model: Union[str, Path], *,
                  register: Optional[Callable[[Set[str]], None]] = None) -> "Language":
    """``spacy.load`` with one clear error for a path that is not a trained pipeline.

    model (Union[str, Path]): a pipeline folder (``training/x/model-best``) or an installed package name.
    register (Optional[Callable[[Set[str]], None]]): called with the factory names of a pipeline folder's
        components before loading it, so that a caller in a layer above can register its own components
        (spaCy finds them through the ``spacy_factories`` entry points anyway; this covers a checkout whose
        entry points were not reinstalled).
    RETURNS (Language): the pipeline. Anything that is not a loadable pipeline
        is a :class:`~spacy_bioner.errors.ModelLoadError` of one line.
    """
    import spacy
    from confection import ConfigValidationError
    from spacy.util import is_package
    from thinc.api import Config

    path = Path(model)
    if not path.exists() and not is_package(str(model)):
        raise ModelLoadError(f"{model}: no such pipeline folder or installed pipeline package; give a trained "
                             "pipeline, e.g. training/demo/model-best")
    if path.is_dir():
        # `train` writes config.cfg next to model-best/ and model-last/: that folder is no pipeline either.
        trained = [name for name in ("model-best", "model-last") if (path / name).is_dir()]
        if trained and not (path / "meta.json").exists():
            raise ModelLoadError(f"{model}: a training output folder, not a pipeline; give {path / trained[0]} "
                                 "instead")
        if not (path / "config.cfg").exists():
            found = ", ".join(sorted(p.name for p in path.iterdir())[:6]) or "nothing"
            raise ModelLoadError(f"{model}: not a spaCy pipeline folder, it has no config.cfg (found: {found}); "
                                 "give the folder that holds config.cfg, e.g. training/demo/model-best")
    if path.exists() and not path.is_dir():
        raise ModelLoadError(f"{model}: a file, not a pipeline folder; give the folder that holds config.cfg")
    if path.is_dir():
        # spaCy reads meta.json first, so a broken config.cfg would show up as a meta.json problem.
        try:
            config = Config().from_disk(path / "config.cfg", interpolate=False)
        except Exception as err:  # configparser and confection errors: not a config at all
            raise ModelLoadError(f"{path / 'config.cfg'}: not a readable spaCy config ({config_problem(err)}); "
                                 f"is {model} a trained pipeline?") from None
        if register is not None:
            register({c["factory"] for c in config.get("components", {}).values()
                      if isinstance(c, dict) and isinstance(c.get("factory"), str)})
    try:
        return spacy.load(model)
    except ConfigValidationError as err:
        raise ModelLoadError(f"{model}: cannot load this pipeline, its config is not valid: "
                             f"{config_problem(err)}") from None
    except (OSError, ValueError, KeyError) as err:  # E050/E052/E053, unknown factory, missing weights…
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelLoadError(f"{model}: cannot load this pipeline: {first}") from None


def add_doc_cleaner(nlp: "Language") -> "Language":
    """Make sure predicted Docs drop transformer outputs once their entities are set.

    Adds spaCy's ``doc_cleaner`` last unless the pipeline already ends with one.
    RETURNS (Language): the same ``nlp``.
    """
    if not nlp.pipe_names or nlp.get_pipe_meta(nlp.pipe_names[-1]).factory != "doc_cleaner":
        nlp.add_pipe("doc_cleaner", name=ADDED_CLEANER, last=True,
                     config={"attrs": dict(CLEANED_ATTRS), "silent": True})
    return nlp


def speed_up(nlp: "Language", *, gpu_id: int = -1, length_buckets: float = 0.8, int8: bool = False,
             runtime: str = "torch") -> Dict[str, Any]:
    """Inference speed-ups for a loaded pipeline (runtime, length buckets, int8).

    nlp (Language): the pipeline.
    gpu_id (int): GPU index, -1 for CPU (int8 is CPU only: a one-line error on a GPU).
    length_buckets (float): bucket ratio for every transformer, overriding the config's (0: off).
    int8 (bool): dynamic int8 quantization: of the transformers' Linear layers on torch, of the graph on ONNX.
    runtime (str): ``torch``, ``onnx`` or ``auto`` (ONNX where it can run, torch elsewhere); see
        :mod:`.onnx_runtime`.
    RETURNS (Dict[str, Any]): what was applied, for the metrics.
    """
    if int8 and gpu_id >= 0:
        raise ModelLoadError("--int8 is for CPU inference; drop it with --gpu-id (or use mixed precision)")
    check_runtime(runtime)
    try:
        check_ratio(length_buckets)
    except ValueError as err:
        raise ModelLoadError(str(err)) from None
    applied: Dict[str, Any] = {"runtime": "torch"}
    if runtime != "torch":
        from .onnx_runtime import use_onnx

        applied = use_onnx(nlp, runtime=runtime, int8=int8, gpu_id=gpu_id)
    patched = add_length_buckets(nlp, ratio=length_buckets)
    quantized = quantize_int8(nlp) if int8 else 0  # torch modules only: ONNX graphs are quantized already
    return {**applied, "length_buckets": length_buckets, "length_buckets_set": patched, "int8": bool(int8),
            "int8_modules": quantized}


def check_runtime(runtime: str) -> None:
    """A known ``--runtime``, or a one-line error."""
    from .onnx_runtime import RUNTIMES

    if runtime not in RUNTIMES:
        raise ModelLoadError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")


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
        if getattr(module, "graph_path", None):
            continue  # on ONNX Runtime (its graph carries the quantization)
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
