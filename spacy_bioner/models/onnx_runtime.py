"""ONNX Runtime inference for a loaded pipeline's transformers (``--runtime onnx``).

The Hugging Face encoder that spacy-transformers calls through its ``HFShim`` is
exported once to ONNX (dynamic batch and sequence axes, the opset the installed
ONNX Runtime runs), optimised with ONNX Runtime's transformer optimiser where it
knows the model type (fused attention, LayerNorm, GELU), optionally quantized
to int8 with ONNX Runtime's dynamic quantization, and cached. The shim then
calls an :class:`OnnxTransformer` in its place: a ``torch.nn.Module`` with the
encoder's ``config`` whose forward runs the ONNX graph and returns the last
hidden state. Everything around the forward — windows, length buckets (they
wrap this module as they wrap the torch one), alignment, the heads' decoding —
is unchanged.

The cache sits beside the pipeline (``<pipeline>/onnx/``, or
``~/.cache/spacy_bioner/onnx`` where that folder is not writable) and is keyed by
a checksum of the encoder's weights, so a retrained pipeline never reuses a
stale graph. Only encoders inside a ``transformer`` component are exported; a
decoder tagger (``spacy_bioner.DecoderTagger.v1``) is not: a one-line error, or
left on torch with ``--runtime auto``.

Inference only: a pipeline switched to ONNX cannot be saved (its torch weights are gone).
"""
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from ..errors import ModelLoadError

if TYPE_CHECKING:
    from spacy.language import Language

#: The inference runtimes ``evaluate``/``annotate`` accept.
RUNTIMES = ("torch", "onnx", "auto")
#: What to install when ONNX Runtime is missing.
ONNX_HINT = "--runtime onnx needs ONNX Runtime: pip install 'spacy-bioner[onnx]' (onnx, onnxruntime)"
#: Bumped when the exported graph changes for the same weights (part of the cache key).
GRAPH_VERSION = 2
#: Model types ONNX Runtime's transformer optimiser fuses as ``bert`` (BERT-like self-attention).
OPTIMIZER_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "camembert": "bert",
                         "electra": "bert", "distilbert": "bert", "mpnet": "bert"}
#: Highest ONNX opset each ONNX Runtime minor release runs (onnxruntime.ai/docs/reference/compatibility.html).
ORT_MAX_OPSET = ((1, 20, 21), (1, 18, 21), (1, 17, 20), (1, 15, 19), (1, 14, 18), (1, 12, 17), (1, 11, 16),
                 (1, 10, 15))
#: The opset we prefer (LayerNormalization is a single op from 17 on).
PREFERRED_OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class OnnxUnavailableError(ModelLoadError):
    """``--runtime onnx`` was asked for, but ONNX Runtime is missing or the model cannot be exported."""


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line :class:`OnnxUnavailableError` naming the extra."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        raise OnnxUnavailableError(ONNX_HINT) from None
    return onnxruntime


def choose_opset(ort_version: str) -> int:
    """The opset to export at: ours, capped by what the installed ONNX Runtime and torch's exporter run.

    ort_version (str): ``onnxruntime.__version__``.
    RETURNS (int): the opset.
    """
    try:
        major, minor = (int(p) for p in ort_version.split(".")[:2])
    except ValueError:
        major, minor = 1, 10
    ort_max = next((opset for ma, mi, opset in ORT_MAX_OPSET if (major, minor) >= (ma, mi)), 13)
    try:
        from torch.onnx._constants import ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET as torch_max
    except ImportError:
        torch_max = PREFERRED_OPSET
    return min(PREFERRED_OPSET, ort_max, torch_max)


def weights_checksum(module: Any) -> str:
    """SHA-256 over a torch module's class, config, parameter names, shapes, dtypes and values, and the
    versions of ONNX Runtime (major.minor: its fusions), torch (the exporter) and transformers.

    module (torch.nn.Module): the encoder.
    RETURNS (str): hex digest; any change to a weight, the config or those versions changes it.
    """
    import onnxruntime
    import torch
    import transformers

    ort_minor = ".".join(onnxruntime.__version__.split(".")[:2])
    # the config, less where it was loaded from (spacy-transformers loads it from a temporary folder)
    settings = module.config.to_dict() if hasattr(module.config, "to_dict") else {}
    config = json.dumps({k: v for k, v in settings.items() if k != "_name_or_path"}, sort_keys=True, default=str)
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__name__}:{GRAPH_VERSION}:ort{ort_minor}:"
                            f"torch{torch.__version__}:transformers{transformers.__version__}:{config}".encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        digest.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return digest.hexdigest()


def export_onnx(module: Any, path: Path, *, opset: int, token_type_ids: bool) -> List[str]:
    """Export a Hugging Face encoder's forward (ids, mask[, token types] → last hidden state) to ``path``.

    module (torch.nn.Module): the encoder (left in the train/eval mode it had).
    path (Path): the ``.onnx`` file to write.
    opset (int): ONNX opset.
    token_type_ids (bool): whether the graph takes token type ids.
    RETURNS (List[str]): the graph's input names (an input the model ignores is dropped by the exporter).
    """
    import warnings

    import torch

    names = list(INPUT_NAMES if token_type_ids else INPUT_NAMES[:2])

    class LastHiddenState(torch.nn.Module):
        def __init__(self, encoder: Any) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *inputs: Any) -> Any:
            # the class's forward: an instance patch (length buckets) would be traced with the example's rows
            plain = type(self.encoder).forward
            return plain(self.encoder, **dict(zip(names, inputs)), return_dict=True).last_hidden_state

    ids = torch.full((2, 8), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # a padded row, so the traced graph keeps the mask
    example = (ids, mask, torch.zeros_like(ids))[:len(names)]
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, "last_hidden_state"]}
    wrapper = LastHiddenState(module)
    was_training = module.training
    wrapper.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer and deprecation notices
            torch.onnx.export(wrapper, example, str(path), input_names=names, output_names=["last_hidden_state"],
                              dynamic_axes=axes, opset_version=opset, do_constant_folding=True, dynamo=False)
    finally:
        module.train(was_training)
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return [i.name for i in graph.input]


def optimize_graph(source: Path, target: Path, *, model_type: str, num_heads: int, hidden_size: int) -> Dict[str, int]:
    """ONNX Runtime's transformer optimiser (``bert`` fusions) from ``source`` to ``target``.

    RETURNS (Dict[str, int]): fused operator counts (empty where the model type has no fusions: then the
        graph is copied and ONNX Runtime's own session-level optimisations apply).
    """
    import shutil

    fusion_type = OPTIMIZER_MODEL_TYPES.get(model_type)
    if fusion_type is None:
        shutil.copyfile(source, target)
        return {}
    import logging

    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(str(source), model_type=fusion_type, num_heads=num_heads, hidden_size=hidden_size)
    finally:
        quiet.setLevel(level)
    optimized.save_model_to_file(str(target))
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


def quantize_graph(source: Path, target: Path) -> None:
    """ONNX Runtime's dynamic int8 quantization (weights int8 per output channel, activations quantized per batch).

    ``reduce_range`` (7-bit weights) avoids the int16 saturation of u8×s8 products on x86 CPUs without
    VNNI (AVX2): on NCBI-disease (MiniLM) it keeps F1 at fp32's where full-range int8 loses 2.5 points.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process is for static (calibrated) quantization
    try:
        # the fused operators (com.microsoft domain) defeat ONNX shape inference: their outputs are float
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        root.setLevel(level)


#: The folder of a pipeline that holds its ONNX graphs (a cache: never packaged).
CACHE_FOLDER = "onnx"


def cache_dir_for(nlp: "Language") -> Path:
    """``<pipeline>/onnx`` when the pipeline was loaded from a writable folder, else the user cache."""
    path = getattr(nlp, "path", None)
    if path is not None and Path(path).is_dir() and os.access(path, os.W_OK):
        return Path(path) / CACHE_FOLDER
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "spacy_bioner" / CACHE_FOLDER


def build_graph(module: Any, cache_dir: Path, *, int8: bool = False) -> Tuple[Path, Dict[str, Any]]:
    """The cached ONNX graph of an encoder, exporting (and optimising, quantizing) it on a miss.

    module (torch.nn.Module): the Hugging Face encoder.
    cache_dir (Path): where graphs are kept, one per weights checksum and precision.
    int8 (bool): the dynamically quantized graph.
    RETURNS (Tuple[Path, Dict[str, Any]]): the graph and its record (inputs, opset, fusions, seconds).
    """
    ort = require_onnxruntime()
    from filelock import FileLock

    config = module.config
    key = weights_checksum(module)[:20]
    opset = choose_opset(ort.__version__)
    stem = f"{getattr(config, 'model_type', 'model')}-{key}-opset{opset}"
    target = cache_dir / f"{stem}-{'int8' if int8 else 'fp32'}.onnx"
    record_path = target.with_suffix(".json")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(cache_dir / f"{stem}.lock")):  # parallel workers: one exports, the others wait
        if target.exists() and record_path.exists():
            return target, {**json.loads(record_path.read_text(encoding="utf8")), "cached": True}
        start = time.perf_counter()
        fp32 = target.with_name(f"{stem}-fp32.onnx")
        record: Dict[str, Any] = {}
        if fp32.exists() and fp32.with_suffix(".json").exists():
            record = json.loads(fp32.with_suffix(".json").read_text(encoding="utf8"))
        else:
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                raw = Path(tmp) / "raw.onnx"
                takes_types = _accepts_token_type_ids(module)
                inputs = export_onnx(module, raw, opset=opset, token_type_ids=takes_types)
                fused = optimize_graph(raw, Path(tmp) / "opt.onnx", model_type=getattr(config, "model_type", ""),
                                       num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                                       hidden_size=int(getattr(config, "hidden_size", 0) or 0))
                deviation = check_graph(module, Path(tmp) / "opt.onnx")
                os.replace(Path(tmp) / "opt.onnx", fp32)
            record = {"inputs": inputs, "opset": opset, "model_type": getattr(config, "model_type", None),
                      "fused_operators": fused, "onnxruntime": ort.__version__, "weights_sha256": key,
                      "max_abs_deviation": deviation,
                      "export_s": time.perf_counter() - start}
            _write_json(fp32.with_suffix(".json"), record)
        if int8:
            with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
                quantize_graph(fp32, Path(tmp) / "int8.onnx")
                os.replace(Path(tmp) / "int8.onnx", target)
            record = {**record, "int8": True, "export_s": time.perf_counter() - start}
            _write_json(record_path, record)
        return target, {**record, "cached": False}


#: Largest deviation from torch's hidden states accepted for a freshly exported fp32 graph.
CHECK_TOLERANCE = 1e-3


def check_graph(module: Any, graph: Path) -> float:
    """Compare a fresh graph with the torch module on a batch unlike the export's example (3 rows of
    different lengths, 13 positions), at the real positions; a graph that deviates is never cached.

    RETURNS (float): the largest absolute deviation. Above :data:`CHECK_TOLERANCE`: a ValueError.
    """
    import numpy
    import torch

    ort = require_onnxruntime()
    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(0)
    vocab = int(getattr(module.config, "vocab_size", 100) or 100)
    ids = torch.randint(5, max(vocab, 6), (3, 13), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    mask[2, 4:] = 0
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    names = [i.name for i in session.get_inputs()]
    (ours,) = session.run(["last_hidden_state"], {n: feed[n].numpy() for n in names})
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            kwargs = {n: feed[n] for n in names}
            theirs = type(module).forward(module, **kwargs, return_dict=True).last_hidden_state.numpy()
    finally:
        module.train(was_training)
    real = mask.numpy().astype(bool)
    deviation = float(numpy.abs(ours[real] - theirs[real]).max())
    if not deviation <= CHECK_TOLERANCE:
        raise ValueError(f"the exported graph's hidden states deviate from torch's by {deviation:.3g} "
                         f"(more than {CHECK_TOLERANCE})")
    return deviation


def _write_json(path: Path, data: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf8")
    os.replace(tmp, path)


def _accepts_token_type_ids(module: Any) -> bool:
    import inspect

    return "token_type_ids" in inspect.signature(type(module).forward).parameters


def _session_options(ort: Any, threads: Optional[int]) -> Any:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    # between forwards the pipeline's own work (tokenizing, aligning, decoding) needs the cores that
    # spinning ONNX Runtime threads would hold (+4 % words/s on 2 cores)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _new_module_class() -> Any:
    import torch

    class OnnxTransformer(torch.nn.Module):
        """A Hugging Face encoder's forward on ONNX Runtime: same inputs, output ``last_hidden_state``."""

        def __init__(self, graph: Path, config: Any, *, inputs: List[str], gpu_id: int = -1,
                     threads: Optional[int] = None) -> None:
            super().__init__()
            ort = require_onnxruntime()
            providers = ["CPUExecutionProvider"]
            if gpu_id >= 0:
                if "CUDAExecutionProvider" not in ort.get_available_providers():
                    raise OnnxUnavailableError("--runtime onnx with --gpu-id needs onnxruntime-gpu (the CUDA "
                                               "execution provider); pip install onnxruntime-gpu, or drop --gpu-id")
                providers = [("CUDAExecutionProvider", {"device_id": gpu_id}), "CPUExecutionProvider"]
            self.config = config
            self.graph_path = str(graph)
            self.session = ort.InferenceSession(str(graph), _session_options(ort, threads), providers=providers)
            if gpu_id >= 0 and self.session.get_providers()[0] != "CUDAExecutionProvider":
                raise OnnxUnavailableError("the CUDA execution provider did not load (ONNX Runtime fell back to "
                                           "the CPU): check onnxruntime-gpu's CUDA and cuDNN versions, or drop "
                                           "--gpu-id")
            self.provider = self.session.get_providers()[0]
            self.input_names = [i.name for i in self.session.get_inputs()]
            from transformers.modeling_outputs import BaseModelOutput

            self._output = BaseModelOutput
            self._device = torch.device("cuda", gpu_id) if gpu_id >= 0 else torch.device("cpu")

        @property
        def device(self) -> Any:
            return self._device

        def forward(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                    **kwargs: Any) -> Any:
            given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
            arrays = {}
            for name in self.input_names:
                value = given[name]
                if value is None:  # a tokenizer without token types (RoBERTa's) for a graph that takes them
                    value = torch.zeros_like(input_ids)
                # spacy-transformers passes a float mask; the graph takes int64 like the tokenizer's output
                arrays[name] = value.detach().to("cpu", torch.long).numpy()
            (hidden,) = self.session.run(["last_hidden_state"], arrays)
            return self._output(last_hidden_state=torch.from_numpy(hidden).to(self._device))

        def state_dict(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a pipeline switched to --runtime onnx is for inference only and cannot be saved; "
                               "save the pipeline as loaded from disk instead")

    return OnnxTransformer


_MODULE_CLASS: Optional[Any] = None


def onnx_module(graph: Path, config: Any, *, inputs: List[str], gpu_id: int = -1,
                threads: Optional[int] = None) -> Any:
    """An ``OnnxTransformer`` (a ``torch.nn.Module``) running ``graph``.

    graph (Path): the ONNX graph. config: the encoder's Hugging Face config (kept as ``.config``).
    inputs (List[str]): the graph's input names. gpu_id (int): CUDA device for the CUDA provider, -1 for CPU.
    threads (Optional[int]): intra-op threads (None: ONNX Runtime's default, one per core).
    """
    global _MODULE_CLASS
    if _MODULE_CLASS is None:
        _MODULE_CLASS = _new_module_class()
    return _MODULE_CLASS(graph, config, inputs=inputs, gpu_id=gpu_id, threads=threads)


def encoder_shims(nlp: "Language") -> Iterator[Tuple[str, Any]]:
    """``(component name, HFShim)`` of every spacy-transformers ``Transformer`` component's encoder."""
    from spacy_transformers import Transformer

    for name, component in nlp.components:
        if isinstance(component, Transformer):
            for node in component.model.walk():
                for shim in node.shims:
                    if hasattr(shim, "_hfmodel"):
                        yield name, shim


def other_hf_components(nlp: "Language") -> List[str]:
    """Components other than ``Transformer`` ones that wrap a Hugging Face module (e.g. a decoder tagger)."""
    from spacy_transformers import Transformer

    names = []
    for name, component in nlp.components:
        model = getattr(component, "model", None)
        if isinstance(component, Transformer) or model is None or not hasattr(model, "walk"):
            continue
        if any(hasattr(shim, "_hfmodel") for node in model.walk() for shim in node.shims):
            names.append(name)
    return names


def use_onnx(nlp: "Language", *, runtime: str = "onnx", int8: bool = False, gpu_id: int = -1,
             cache_dir: Optional[Path] = None, threads: Optional[int] = None) -> Dict[str, Any]:
    """Run a loaded pipeline's transformer encoders on ONNX Runtime, in place.

    nlp (Language): a pipeline loaded from disk (inference only from here on).
    runtime (str): ``onnx`` (a component that cannot run on ONNX is a one-line error) or ``auto``
        (such components, and a missing ONNX Runtime, stay on torch).
    int8 (bool): ONNX Runtime's dynamic int8 quantization.
    gpu_id (int): -1 for CPU; else the CUDA execution provider on that device (needs ``onnxruntime-gpu``).
    cache_dir (Optional[Path]): where graphs are cached (default: :func:`cache_dir_for`).
    threads (Optional[int]): ONNX Runtime intra-op threads (None: torch's thread count).
    RETURNS (Dict[str, Any]): what ran where, for the metrics: ``runtime``, ``onnx`` (per component: graph,
        cached, fused operators…), ``torch_components`` (left on torch).
    """
    if runtime not in ("onnx", "auto"):
        raise OnnxUnavailableError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")
    others = other_hf_components(nlp)
    if others and runtime == "onnx":
        raise OnnxUnavailableError(f"{', '.join(others)}: a decoder tagger cannot be exported to ONNX; use "
                                   "--runtime torch, or --runtime auto to leave it on torch")
    try:
        require_onnxruntime()
    except OnnxUnavailableError:
        if runtime == "auto":
            return {"runtime": "torch", "onnx": {}, "torch_components": list(nlp.pipe_names),
                    "note": ONNX_HINT}
        raise
    import torch

    shims = list(encoder_shims(nlp))
    if not shims:
        if runtime == "auto":
            return {"runtime": "torch", "onnx": {}, "torch_components": others,
                    "note": "no transformer component to run on ONNX"}
        raise OnnxUnavailableError("--runtime onnx runs a pipeline's transformer component on ONNX Runtime, and "
                                   "this pipeline has none (e.g. tok2vec): use --runtime torch")
    ort = require_onnxruntime()
    if gpu_id >= 0 and "CUDAExecutionProvider" not in ort.get_available_providers():
        if runtime == "auto":
            return {"runtime": "torch", "onnx": {}, "torch_components": list(nlp.pipe_names),
                    "note": "no CUDA execution provider (onnxruntime-gpu)"}
        raise OnnxUnavailableError("--runtime onnx with --gpu-id needs onnxruntime-gpu (the CUDA execution "
                                   "provider): pip install onnxruntime-gpu, or drop --gpu-id")
    threads = threads or torch.get_num_threads()
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_dir_for(nlp)
    done: Dict[str, Any] = {}
    for name, shim in shims:
        module = shim._model
        if getattr(module, "graph_path", None):  # already switched
            continue
        if getattr(module.config, "output_hidden_states", False) or getattr(module.config, "output_attentions",
                                                                             False):
            raise OnnxUnavailableError(f"{name}: its transformer_config asks for hidden states or attentions; "
                                       "the onnx runtime returns the last hidden state only (use --runtime torch)")
        device = next(module.parameters()).device
        try:
            graph, record = build_graph(module.cpu(), cache_dir, int8=int8)
            replacement = onnx_module(graph, module.config, inputs=record["inputs"], gpu_id=gpu_id,
                                      threads=threads)
        except OnnxUnavailableError:
            module.to(device)
            raise
        except Exception as err:  # an exporter, optimiser or session failure: say which model, in one line
            module.to(device)  # left as it was, for --runtime auto
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            message = f"{name}: cannot run {getattr(module.config, 'model_type', 'this model')} on ONNX ({first})"
            if runtime == "auto":
                done[name] = {"error": message}
                continue
            raise OnnxUnavailableError(message + "; use --runtime torch") from None
        shim._model = replacement
        shim._hfmodel.transformer = replacement
        done[name] = {**record, "graph": str(graph), "provider": replacement.provider}
    on_torch = others + [n for n, r in done.items() if "error" in r]
    return {"runtime": "onnx" if any("graph" in r for r in done.values()) else "torch", "onnx": done,
            "torch_components": on_torch}
