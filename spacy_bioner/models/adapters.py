"""LoRA adapters on a Hugging Face decoder (``peft``), and a shim that saves only what was trained.

``spacy_bioner.DecoderTagger.v2`` with ``lora.r > 0`` freezes the backbone and
trains low-rank adapters (``peft``'s LoRA) together with the entity head. A
saved pipeline then holds the adapters, the head, the model config and the
tokenizer; the base weights are **referenced** by the decoder's ``name`` (hub
name or folder) and a checksum of the weights as loaded, and are loaded again,
offline first, by ``spacy.load`` (``embed_base = true`` stores them in the
pipeline instead). A missing base, or one whose weights differ from those the
adapters were trained on, is one line naming the fix.

``quantization = "4bit"``/``"8bit"`` loads the base through ``bitsandbytes``
(QLoRA: NF4 with double quantisation, bf16 compute): CUDA only, the ``qlora``
extra; anywhere else one line says so.
"""
import hashlib
import io
from typing import Any, Dict, Optional

import srsly

from ..errors import ConfigValueError, ModelLoadError

#: The precisions the base weights can be loaded in.
DTYPES = ("float32", "bfloat16", "float16")
QUANTIZATIONS = (None, "4bit", "8bit")
#: Settings of ``LoraConfig`` the decoder's ``lora`` block accepts (``r = 0``: no adapters, full fine-tuning).
LORA_KEYS = ("r", "alpha", "dropout", "target_modules", "bias")


def lora_settings(lora: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The decoder's ``lora`` block, checked, with defaults filled in (``r = 0`` turns adapters off).

    lora (Optional[Dict[str, Any]]): ``r``, ``alpha``, ``dropout``, ``target_modules`` (``null``: peft's
        defaults for the model family, e.g. ``q_proj``/``v_proj`` for Llama, Mistral and Qwen2,
        ``c_attn`` for GPT-2; ``"all-linear"``: every linear layer, as QLoRA), ``bias``.
    RETURNS (Dict[str, Any]): the settings.
    """
    settings = {"r": 0, "alpha": 16, "dropout": 0.05, "target_modules": None, "bias": "none", **dict(lora or {})}
    unknown = sorted(set(settings) - set(LORA_KEYS))
    if unknown:
        raise ConfigValueError(f"lora: unknown setting(s) {', '.join(unknown)}; known: {', '.join(LORA_KEYS)}")
    if isinstance(settings["r"], bool) or not isinstance(settings["r"], int) or settings["r"] < 0:
        raise ConfigValueError(f"lora.r must be a whole number >= 0 (0: no adapters), got {settings['r']!r}")
    if not isinstance(settings["dropout"], (int, float)) or not 0 <= float(settings["dropout"]) < 1:
        raise ConfigValueError(f"lora.dropout must be in [0, 1), got {settings['dropout']!r}")
    targets = settings["target_modules"]
    if isinstance(targets, (list, tuple)):
        settings["target_modules"] = [str(t) for t in targets]
    return settings


def peft_config(settings: Dict[str, Any], *, model_type: str = "") -> Any:
    """``peft.LoraConfig`` for :func:`lora_settings`' output (GPT-2's ``Conv1D`` layers store weights transposed)."""
    LoraConfig = require_peft().LoraConfig
    return LoraConfig(r=int(settings["r"]), lora_alpha=float(settings["alpha"]), lora_dropout=float(settings["dropout"]),
                      target_modules=settings["target_modules"], bias=settings["bias"],
                      fan_in_fan_out=model_type == "gpt2")


def require_peft() -> Any:
    """The ``peft`` module, or one line naming the extra."""
    try:
        import peft
    except ImportError:
        raise ConfigValueError("LoRA adapters need peft: pip install 'spacy-bioner[lora]' (or set lora.r = 0 "
                               "for full fine-tuning)") from None
    return peft


def add_adapters(transformer: Any, settings: Dict[str, Any], *, name: str) -> Any:
    """Wrap a loaded Hugging Face model with LoRA adapters; only they stay trainable.

    transformer (Any): the base model (``AutoModel``).
    settings (Dict[str, Any]): :func:`lora_settings`.
    name (str): the backbone, for errors.
    RETURNS (Any): a ``peft.PeftModel``.
    """
    peft = require_peft()
    try:
        config = peft_config(settings, model_type=getattr(transformer.config, "model_type", ""))
        return peft.get_peft_model(transformer, config)
    except ValueError as err:  # e.g. a family peft has no default target modules for
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigValueError(f"lora on {name}: {first} (set lora.target_modules, e.g. [\"q_proj\", \"v_proj\"] "
                               f"or \"all-linear\")") from None


def is_adapted(module: Any) -> bool:
    """Whether a torch module is a peft model (adapters on a frozen base)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(module, PeftModel)


def weights_checksum(module: Any) -> str:
    """A checksum of a model's weights as loaded (names, shapes, dtypes and bytes), format-independent.

    module (torch.nn.Module): the base model, before adapters are added.
    RETURNS (str): hex digest (blake2b, 128 bits).
    """
    import torch

    digest = hashlib.blake2b(digest_size=16)
    for key, tensor in sorted(module.state_dict().items()):
        data = tensor.detach().to("cpu").contiguous()
        digest.update(f"{key}|{tuple(data.shape)}|{data.dtype}|".encode())
        if data.numel():
            digest.update(data.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def quantization_config(quantization: Optional[str]) -> Any:
    """``BitsAndBytesConfig`` for 4-bit (NF4, double quantisation, bf16 compute) or 8-bit loading; CUDA only."""
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        raise ConfigValueError(f"quantization must be null, \"4bit\" or \"8bit\", got {quantization!r}")
    import torch

    if not torch.cuda.is_available():
        raise ConfigValueError(f"quantization = {quantization!r} needs a CUDA GPU (bitsandbytes); on CPU set "
                               "quantization = null (and dtype = \"float32\" or \"bfloat16\")")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise ConfigValueError(f"quantization = {quantization!r} needs bitsandbytes: pip install "
                               "'spacy-bioner[qlora]'") from None
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def load_base(source: str, config: Any, *, dtype: str, quantization: Optional[str]) -> Any:
    """The backbone's weights: ``AutoModel.from_pretrained`` in ``dtype``, quantised where asked, on the
    default torch device (a quantised model on the current CUDA device).

    source (str): a local folder or hub name (:func:`~spacy_bioner.models.backbones.resolve_backbone`).
    config (Any): the model's ``PretrainedConfig``.
    dtype (str): ``float32``, ``bfloat16`` or ``float16``.
    quantization (Optional[str]): ``None``, ``"4bit"`` or ``"8bit"``.
    """
    import torch
    from thinc.api import get_torch_default_device
    from transformers import AutoModel

    if dtype not in DTYPES:
        raise ConfigValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    bnb = quantization_config(quantization)
    kwargs: Dict[str, Any] = {"config": config, "torch_dtype": getattr(torch, dtype)}
    if bnb is not None:
        kwargs.update(quantization_config=bnb, device_map={"": torch.cuda.current_device()})
    model = AutoModel.from_pretrained(source, **kwargs)
    if bnb is None:
        model.to(get_torch_default_device())
    return model


def prepare_quantized(model: Any, *, gradient_checkpointing: bool) -> Any:
    """peft's preparation of a 4/8-bit base for training (norms in fp32, input gradients on)."""
    return require_peft().prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)


# ---------------------------------------------------------------------- serialisation
def _tokenizer_files(tokenizer: Any) -> Dict[str, Any]:
    from spacy_transformers.util import make_tempdir

    files: Dict[str, Any] = {"kwargs": {"use_fast": bool(tokenizer.is_fast)}}
    with make_tempdir() as temp_dir:
        tokenizer.save_pretrained(str(temp_dir.absolute()))
        for path in temp_dir.glob("**/*"):
            if path.is_file():
                files[path.name] = path.read_bytes()
    return files


def _load_tokenizer(files: Dict[str, Any]) -> Any:
    from pathlib import Path

    from spacy_transformers.util import make_tempdir
    from transformers import AutoTokenizer

    files = dict(files)
    kwargs = files.pop("kwargs", {})
    with make_tempdir() as temp_dir:
        for name, data in files.items():
            Path(temp_dir / name).write_bytes(data)
        return AutoTokenizer.from_pretrained(str(temp_dir.absolute()), **kwargs)


def _load_config(config_dict: Dict[str, Any]) -> Any:
    from spacy_transformers.util import make_tempdir
    from transformers import AutoConfig

    with make_tempdir() as temp_dir:
        srsly.write_json(temp_dir / "config.json", config_dict)
        return AutoConfig.from_pretrained(str(temp_dir))


def adapter_shim_class() -> Any:
    """:class:`AdapterShim`'s class, defined on first use (it subclasses spacy-transformers' torch shim)."""
    global _ADAPTER_SHIM
    if _ADAPTER_SHIM is None:
        _ADAPTER_SHIM = _define_adapter_shim()
    return _ADAPTER_SHIM


_ADAPTER_SHIM = None


def _define_adapter_shim() -> Any:
    from spacy_transformers.layers.hf_shim import HFShim

    class AdapterShim(HFShim):
        """spacy-transformers' ``HFShim`` that saves a peft model as its adapters plus a reference to the
        base (name + checksum), or the whole model with ``embed_base``; anything else as ``HFShim`` does.

        ``base`` (set by the decoder from its config): ``name``, ``dtype``, ``quantization``,
        ``embed_base``, ``lora`` and, once loaded, ``checksum``. At load time the config's ``name``
        wins over the saved one, so ``spacy.load(path, config={"components.<head>.model.tok2vec.name":
        "/models/llama"})`` points a pipeline at a moved base.
        """

        def __init__(self, *args: Any, base: Dict[str, Any], **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.base = dict(base)
            self.recompute = False

        def begin_update(self, inputs: Any) -> Any:
            """The training forward; with ``recompute`` set (micro-batches), run under activation
            checkpointing: only the inputs are kept, and the backward pass recomputes the forward."""
            if not self.recompute:
                return super().begin_update(inputs)
            model = self._model
            self._model = _Recomputed(model)
            try:
                return super().begin_update(inputs)
            finally:
                self._model = model

        def to_bytes(self) -> bytes:
            import torch

            if self._model is None or not is_adapted(self._model):
                return super().to_bytes()
            from peft import get_peft_model_state_dict

            embed = bool(self.base.get("embed_base"))
            state = self._model.state_dict() if embed else get_peft_model_state_dict(self._model)
            buffer = io.BytesIO()
            torch.save({k: v.detach().to("cpu") for k, v in state.items()}, buffer)
            base_config = self._model.get_base_model().config.to_dict()
            msg = {"config": base_config, "state": buffer.getvalue(),
                   "tokenizer": _tokenizer_files(self._hfmodel.tokenizer),
                   "_init_tokenizer_config": {}, "_init_transformer_config": {},
                   "adapter": {"lora": self.base["lora"], "embedded": embed, "name": self.base["name"],
                               "checksum": self.base.get("checksum"), "dtype": self.base.get("dtype", "float32"),
                               "quantization": self.base.get("quantization")}}
            return srsly.msgpack_dumps(msg)

        def from_bytes(self, bytes_data: bytes) -> "AdapterShim":
            msg = srsly.msgpack_loads(bytes_data)
            if "adapter" not in msg:
                return super().from_bytes(bytes_data)
            import torch
            from spacy_transformers.data_classes import HFObjects
            from thinc.api import get_torch_default_device

            adapter = msg["adapter"]
            require_peft()
            config_dict = {k: v for k, v in msg["config"].items() if k != "quantization_config"}
            config = _load_config(config_dict)
            tokenizer = _load_tokenizer(msg["tokenizer"])
            # the loading config's precision wins (a QLoRA pipeline can be loaded in bf16/fp32 on a CPU)
            dtype = self.base.get("dtype") or adapter.get("dtype", "float32")
            quantization = self.base.get("quantization", adapter.get("quantization"))
            state = torch.load(io.BytesIO(msg["state"]), map_location="cpu")
            if adapter["embedded"]:
                from transformers import AutoModel

                base = AutoModel.from_config(config, torch_dtype=getattr(torch, dtype))
            else:
                base = self._load_referenced_base(adapter, config, dtype=dtype, quantization=quantization)
                if quantization:
                    base = prepare_quantized(base, gradient_checkpointing=False)
            model = add_adapters(base, adapter["lora"], name=adapter["name"])
            if adapter["embedded"]:
                model.load_state_dict(state)
            else:
                from peft import set_peft_model_state_dict

                set_peft_model_state_dict(model, state)
            if quantization is None:
                model.to(get_torch_default_device())
            self.base.update({k: adapter[k] for k in ("lora", "checksum")}, dtype=dtype, quantization=quantization,
                             embed_base=adapter["embedded"])
            self._model = model
            self._hfmodel = HFObjects(tokenizer, model, None, {}, {})
            return self

        def _load_referenced_base(self, adapter: Dict[str, Any], config: Any, *, dtype: str,
                                  quantization: Optional[str]) -> Any:
            from ..errors import BackboneNotFoundError
            from .backbones import resolve_backbone

            name = self.base.get("name") or adapter["name"]
            fix = ("point the pipeline at a copy with spacy.load(path, config={\"components.<head>.model.tok2vec.name\": "
                   "\"/models/<base>\"}), or save it with embed_base = true")
            try:
                source = resolve_backbone(name)
            except BackboneNotFoundError as err:
                raise ModelLoadError(f"The pipeline's LoRA adapters need their base model {name!r}, which is not "
                                     f"here ({str(err).splitlines()[0]}); {fix}") from None
            base = load_base(source, config, dtype=dtype, quantization=quantization)
            expected = adapter.get("checksum")
            if expected and quantization is None and dtype == adapter.get("dtype", "float32"):
                found = weights_checksum(base)
                if found != expected:
                    raise ModelLoadError(f"The base model at {source} is not the one the pipeline's LoRA adapters "
                                         f"were trained on (weights checksum {found[:12]}, expected {expected[:12]}); "
                                         f"{fix}")
            return base

    return AdapterShim


def _recomputed_class() -> Any:
    import torch
    from torch.utils.checkpoint import checkpoint
    from transformers.modeling_outputs import BaseModelOutput

    class Recomputed(torch.nn.Module):
        """A Hugging Face model whose forward keeps no activations (``torch.utils.checkpoint``, non-reentrant,
        dropout replayed from the saved random state)."""

        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *, input_ids: Any, attention_mask: Any, **kwargs: Any) -> Any:
            def run(ids: Any, mask: Any) -> Any:
                return self.inner(input_ids=ids, attention_mask=mask, **kwargs).last_hidden_state

            return BaseModelOutput(last_hidden_state=checkpoint(run, input_ids, attention_mask, use_reentrant=False))

    return Recomputed


_RECOMPUTED = None


def _Recomputed(inner: Any) -> Any:
    global _RECOMPUTED
    if _RECOMPUTED is None:
        _RECOMPUTED = _recomputed_class()
    return _RECOMPUTED(inner)
