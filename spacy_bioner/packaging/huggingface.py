"""Hugging Face token-classification checkpoints ↔ spaCy pipelines.

* :func:`import_hf`: a checkpoint (folder or hub name, offline first) becomes a pipeline
  ``transformer`` (``TransformerModel.v4`` over the checkpoint's encoder) → ``bioner_tagger``
  (its output layer holds the checkpoint's classifier rows, mapped by :mod:`.hf_labels`) →
  ``doc_cleaner``; a causal decoder (GPT-2, Llama…) becomes ``bioner_tagger`` over
  ``DecoderTagger.v1`` (first-subword pooling, as HF scores a word). The folder holds every
  weight, so ``spacy.load`` needs neither the checkpoint nor a network.
* :func:`export_hf`: a ``bioner_tagger`` pipeline with first-subword pooling becomes a standard
  ``AutoModelForTokenClassification`` folder (safetensors, tokenizer, ``id2label``, model card).

Both directions give the same word tags as HF's argmax over each word's first subword when both
see the same words: ``bioner_tagger``'s ``constrained = false`` reads tags as HF's
``pipeline(..., aggregation_strategy="first")`` does.
"""
import copy
import json
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from ..errors import ModelLoadError, PackagingError
from .hf_labels import LabelMapping, read_label_scheme

#: The bias of a tag the checkpoint has no row for: its probability is ~0, so it is never decoded.
NEVER = -1.0e4
#: Tags on every exported model card.
CARD_TAGS = ["token-classification", "biomedical", "ner", "spacy-bioner"]


def _quiet_transformers():
    """Silence transformers' load report (e.g. an unused pooler) for the duration of a call."""
    from transformers.utils import logging as hf_logging

    class _Quiet:
        def __enter__(self):
            self.level = hf_logging.get_verbosity()
            hf_logging.set_verbosity_error()

        def __exit__(self, *exc):
            hf_logging.set_verbosity(self.level)

    return _Quiet()


def load_token_classifier(source: str) -> Tuple[Any, str]:
    """An ``AutoModelForTokenClassification`` from a folder or hub name (offline first).

    source (str): a checkpoint folder or hub name.
    RETURNS (Tuple[Any, str]): the model (eval mode) and where it was loaded from.
    RAISES BackboneNotFoundError / ModelLoadError: one line: nowhere local, or not a token classifier.
    """
    from transformers import AutoConfig, AutoModelForTokenClassification

    from ..models.backbones import resolve_backbone

    where = resolve_backbone(str(source))
    try:
        config = AutoConfig.from_pretrained(where)
    except (OSError, ValueError) as err:
        raise ModelLoadError(f"{source}: not a Hugging Face checkpoint ({_first_line(err)})") from None
    try:
        with _quiet_transformers():
            model = AutoModelForTokenClassification.from_pretrained(where)
    except (OSError, ValueError, KeyError) as err:
        raise ModelLoadError(f"{source}: AutoModelForTokenClassification cannot load it "
                             f"({config.model_type}: {_first_line(err)})") from None
    model.eval()
    return model, where


def is_decoder(config: Any) -> bool:
    """Whether a checkpoint's architecture is a causal decoder only (GPT-2, Llama…), read by
    ``spacy_bioner.DecoderTagger.v1``, not an encoder that also has a causal-LM head (BERT, RoBERTa)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def classifier_layer(model: Any) -> Any:
    """The checkpoint's final ``Linear`` (``model.classifier``, as every HF encoder token classifier names it)."""
    import torch

    layer = getattr(model, "classifier", None)
    n = model.config.num_labels
    if not isinstance(layer, torch.nn.Linear) or layer.out_features != n:
        raise ModelLoadError(f"{type(model).__name__}: no classifier Linear with {n} outputs "
                             "(model.classifier); import-hf reads encoder token classifiers")
    return layer


def mapped_output(mapping: LabelMapping, weight, bias) -> Tuple[Any, Any]:
    """``bioner_tagger``'s output weights ``(n_tags, width)`` and bias from the checkpoint's rows.

    mapping (LabelMapping): which row gives each tag.
    weight, bias: the checkpoint classifier's ``(n_labels, width)`` weights and ``(n_labels,)`` bias (NumPy).
    RETURNS (Tuple[Floats2d, Floats1d]): float32 arrays; a tag without a row gets zero weights and bias
        :data:`NEVER`.
    """
    import numpy

    W = numpy.zeros((len(mapping.tags), weight.shape[1]), dtype="float32")
    b = numpy.full((len(mapping.tags),), NEVER, dtype="float32")
    for tag, row in enumerate(mapping.rows):
        if row is not None:
            W[tag] = weight[row]
            b[tag] = bias[row]
    return W, b


def import_hf(source: Union[str, Path], output: Path, *, constrained: bool = True, bare_label: str = "ENTITY",
              overrides: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Write a spaCy pipeline that holds a HF token-classification checkpoint.

    source (Union[str, Path]): checkpoint folder or hub name.
    output (Path): pipeline folder to write.
    constrained (bool): decode with the constrained Viterbi (else HF's per-token argmax).
    bare_label (str): entity type of a bare ``O``/``B``/``I`` label set.
    overrides (Optional[Dict[str, Any]]): ``--section.key`` config overrides (e.g. the span getter's window).
    RETURNS (Dict[str, Any]): what was imported: source, model type, scheme, labels, tags without a row.
    """
    import numpy
    from spacy.training import Example
    from spacy.util import load_model_from_config

    from ..training.config import build_config

    hf, where = load_token_classifier(str(source))
    mapping = read_label_scheme(hf.config.id2label, bare_label=bare_label)
    layer = classifier_layer(hf)
    decoder = is_decoder(hf.config)
    settings = {"paths.backbone": where, "components.bioner_tagger.scheme": mapping.head_scheme,
                "components.bioner_tagger.constrained": constrained}
    if decoder:  # HF scores a word by its first subword; DecoderTagger pools the last by default
        settings.update({"components.bioner_tagger.model.tok2vec.pooling": "first",
                         "components.bioner_tagger.model.tok2vec.tokenizer_config": {"use_fast": True}})
    settings.update(overrides or {})
    config = build_config("transformer", backbone="gpt2" if decoder else None, head="tagger", overrides=settings)
    config["initialize"].setdefault("components", {})["bioner_tagger"] = {"labels": list(mapping.labels)}
    with _quiet_transformers():
        nlp = load_model_from_config(config, auto_fill=True, validate=True)
        nlp.initialize(lambda: [Example(nlp.make_doc("x"), nlp.make_doc("x"))])
    if decoder:
        from ..models.decoder import decoder_modules

        module = decoder_modules(_tagger_of(nlp).model)[0]
    else:
        module = _transformer_of(nlp).model.layers[0].shims[0]._model
    missing, unexpected = module.load_state_dict(hf.base_model.state_dict(), strict=False)
    missing = [k for k in missing if not k.startswith("pooler.")]
    if missing:
        raise ModelLoadError(f"{source}: the encoder spacy-transformers built lacks {len(missing)} of the "
                             f"checkpoint's weights (e.g. {missing[0]}); is it an encoder checkpoint?")
    tagger = _tagger_of(nlp)
    if list(tagger.tags) != mapping.tags:
        raise AssertionError(f"tag order {tagger.tags} != {mapping.tags}")
    weight = layer.weight.detach().cpu().numpy()
    bias = layer.bias.detach().cpu().numpy() if layer.bias is not None else numpy.zeros(weight.shape[0], "float32")
    W, b = mapped_output(mapping, weight, bias)
    output_layer = tagger.model.get_ref("output")
    if output_layer.get_param("W").shape != W.shape:
        raise ModelLoadError(f"{source}: classifier width {W.shape[1]} does not match the encoder's "
                             f"{output_layer.get_param('W').shape[1]}")
    output_layer.set_param("W", output_layer.ops.asarray2f(W))
    output_layer.set_param("b", output_layer.ops.asarray1f(b))
    record = {"source": str(source), "loaded_from": where, "model_type": hf.config.model_type, "decoder": decoder,
              "architecture": type(hf).__name__, "scheme": mapping.scheme, "head_scheme": mapping.head_scheme,
              "labels": list(mapping.labels), "checkpoint_labels": [hf.config.id2label[i] for i in
                                                                   range(hf.config.num_labels)],
              "tags_without_row": [t for t, r in zip(mapping.tags, mapping.rows) if r is None],
              "constrained": constrained}
    nlp.meta["name"] = nlp.meta.get("name") or "pipeline"
    nlp.meta["description"] = f"{source} (Hugging Face token classification), imported by spacy-bioner"
    nlp.meta.setdefault("sources", []).append({"name": str(source), "url": _hub_url(str(source), where)})
    nlp.meta["spacy_bioner_import"] = record
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(output)
    return record


def export_hf(pipeline: Union[str, Path], output: Path, *, card: bool = True) -> Dict[str, Any]:
    """Write a ``bioner_tagger`` pipeline as a standard HF token-classification folder.

    pipeline (Union[str, Path]): a pipeline folder or installed package.
    output (Path): folder for ``config.json``, ``model.safetensors``, the tokenizer and ``README.md``.
    card (bool): write the model card.
    RETURNS (Dict[str, Any]): the exported labels, tags and files.
    RAISES ModelLoadError: one line, when the pipeline has no per-token classifier an HF model can hold.
    """
    import torch
    from transformers import AutoModelForTokenClassification

    from ..models.inference import load_pipeline

    nlp = load_pipeline(pipeline)
    tagger = _tagger_of(nlp, why="export-hf")
    pooling = _pooling_of(tagger.model)
    if pooling != "first":
        raise ModelLoadError(f"{pipeline}: bioner_tagger pools subwords with {pooling!r}; a HF token classifier "
                             "scores each word by its first subword (train with pooling mode = \"first\")")
    trf = _transformer_of(nlp, why="export-hf")
    prompt = trf.model.attrs.get("task_prompt")
    if prompt is not None:
        raise ModelLoadError(f"{pipeline}: the transformer reads a task prompt ({prompt.text()!r}) before every "
                             "window, which a HF token classifier does not add; use the spaCy pipeline, or train "
                             "with --partial-labels partial to export")
    module = trf.model.layers[0].shims[0]._model
    tokenizer = trf.model.tokenizer
    tags = list(tagger.tags)
    config = copy.deepcopy(module.config)
    config.num_labels = len(tags)
    config.id2label = {i: tag for i, tag in enumerate(tags)}
    config.label2id = {tag: i for i, tag in enumerate(tags)}
    with _quiet_transformers():
        model = AutoModelForTokenClassification.from_config(config)
    architecture = type(model).__name__
    config.architectures = [architecture]
    missing, unexpected = model.base_model.load_state_dict(module.state_dict(), strict=False)
    unexpected = [k for k in unexpected if not k.startswith("pooler.")]
    if missing or unexpected:
        raise ModelLoadError(f"{pipeline}: {architecture}'s encoder does not take the pipeline's weights "
                             f"(missing {missing[:2]}, unexpected {unexpected[:2]})")
    output_layer = tagger.model.get_ref("output")
    W = output_layer.ops.to_numpy(output_layer.get_param("W"))
    b = output_layer.ops.to_numpy(output_layer.get_param("b"))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.from_numpy(W))
        model.classifier.bias.copy_(torch.from_numpy(b))
    model.eval()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output, safe_serialization=True)
    tokenizer.save_pretrained(output)
    record = {"pipeline": str(pipeline), "architecture": architecture, "model_type": config.model_type,
              "scheme": tagger.cfg["scheme"], "labels": list(tagger.labels), "tags": tags}
    if card:
        (output / "README.md").write_text(model_card(nlp, record), encoding="utf8")
    (output / "spacy_bioner_export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf8")
    record["files"] = sorted(p.name for p in output.iterdir())
    return record


def model_card(nlp: Any, record: Dict[str, Any]) -> str:
    """A HF model card: the metadata header (language, license, datasets, tags, metrics) and how to use it.

    nlp (Language): the exported pipeline (its ``meta`` gives the name, license, sources and scores).
    record (Dict[str, Any]): what :func:`export_hf` exported.
    RETURNS (str): ``README.md`` text.
    """
    meta = nlp.meta
    performance = meta.get("performance") or {}
    datasets = [s.get("name") for s in meta.get("sources") or [] if isinstance(s, dict) and s.get("name")]
    metrics = [(key, name, performance[key]) for key, name in (("ents_p", "precision"), ("ents_r", "recall"),
                                                              ("ents_f", "f1")) if performance.get(key) is not None]
    name = f"{nlp.lang}_{meta.get('name', 'pipeline')}"
    lines = ["---", f"language:\n- {nlp.lang}", f"license: {meta.get('license') or 'other'}",
             "library_name: transformers", "pipeline_tag: token-classification", "tags:"]
    lines += [f"- {tag}" for tag in CARD_TAGS]
    if datasets:
        lines += ["datasets:"] + [f"- {json.dumps(d)}" for d in datasets]
    if metrics:
        lines += ["metrics:"] + [f"- {m}" for _, m, _ in metrics]
        lines += ["model-index:", f"- name: {json.dumps(name)}", "  results:", "  - task:",
                  "      type: token-classification", "      name: Named-entity recognition", "    metrics:"]
        for _, metric, value in metrics:
            lines += [f"    - type: {metric}", f"      value: {float(value):.4f}",
                      f"      name: entity-level {metric} (dev)"]
    lines.append("---")
    labels = ", ".join(record["labels"])
    body = f"""
# {name}

A biomedical named-entity recognizer ({labels}) trained with
[spacy-bioner](https://github.com/spacy-bioner/spacy-bioner) and exported as a
Hugging Face token-classification model ({record['architecture']}, tags {record['scheme'].upper()}).

```python
from transformers import pipeline

ner = pipeline("token-classification", model="PATH_OR_REPO", aggregation_strategy="first")
ner("BRCA1 mutations cause hereditary breast cancer.")
```

`aggregation_strategy="first"` scores each word by its first subword, as the spaCy
pipeline did; those entities equal the spaCy pipeline's with unconstrained decoding
(`bioner_tagger` `constrained = false`). The spaCy pipeline decodes with a constrained
Viterbi by default, which can differ where the argmax sequence is not a valid one.
"""
    if metrics:
        body += "\n| metric | value |\n|---|---:|\n" + "".join(
            f"| {metric} | {100 * float(value):.2f} |\n" for _, metric, value in metrics)
    return "\n".join(lines) + "\n" + body


def push_to_hub(folder: Path, repo: str, *, private: bool = False) -> str:
    """Upload an exported folder to the Hugging Face hub (needs a token and a network).

    folder (Path): what :func:`export_hf` wrote.
    repo (str): ``user/name`` on the hub.
    private (bool): create the repository private.
    RETURNS (str): the repository URL.
    """
    try:
        from huggingface_hub import HfApi

        api = HfApi()
        url = api.create_repo(repo, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(folder), repo_id=repo, commit_message="spacy-bioner export-hf")
    except Exception as err:  # no token, no network, no permission
        raise PackagingError(f"--push-to-hub {repo}: {type(err).__name__}: {_first_line(err)} (the folder "
                             f"{folder} is written; upload it later with `huggingface-cli upload {repo} {folder}`)"
                             ) from None
    return str(url)


def _tagger_of(nlp: Any, *, why: str = "import-hf") -> Any:
    from ..pipeline.tagger import BioNERTagger

    for name, component in nlp.components:
        if isinstance(component, BioNERTagger):
            return component
    heads = [n for n, c in nlp.components if nlp.get_pipe_meta(n).factory in ("ner", "beam_ner")]
    if heads:
        raise ModelLoadError(f"{why}: the pipeline's head is spaCy's transition-based {heads[0]!r}, which scores "
                             "parser actions, not tags per token, so no HF token classifier can hold it; "
                             "train with --head tagger")
    raise ModelLoadError(f"{why}: the pipeline has no bioner_tagger (components: {', '.join(nlp.pipe_names)})")


def _transformer_of(nlp: Any, *, why: str = "import-hf") -> Any:
    for name, component in nlp.components:
        model = getattr(component, "model", None)
        if nlp.get_pipe_meta(name).factory == "transformer" and model is not None and model.layers \
                and model.layers[0].shims:
            return component
    raise ModelLoadError(f"{why}: the pipeline has no transformer component (a decoder tagger or tok2vec "
                         "pipeline has no HF encoder to export)")


def _pooling_of(model: Any) -> str:
    for node in model.walk():
        if node.name.startswith("subword_") and "mode" in node.attrs:
            return node.attrs["mode"]
        if node.name == "reduce_mean":
            return "mean"
        if node.name in ("reduce_first", "reduce_last"):
            return node.name.split("_")[1]
    return "unknown"


def _hub_url(source: str, where: str) -> str:
    return "" if Path(where).exists() else f"https://huggingface.co/{source}"


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__

