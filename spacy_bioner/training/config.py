"""Training configs: find them (a path, or a name shipped with the package), merge
base + backbone + ``--section.key`` overrides, and fit the learning-rate
schedule to the run's real length.
"""
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from thinc.api import Config

from ..errors import ConfigNotFoundError, ConfigValueError
from ..models.backbones import resolve_backbone

#: The configs that ship inside the package (``configs/`` in a clone links here).
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
BACKBONE_DIR = CONFIG_DIR / "backbones"
HEAD_DIR = CONFIG_DIR / "heads"
ADVERSARIAL_DIR = CONFIG_DIR / "adversarial"
AUGMENT_DIR = CONFIG_DIR / "augment"
#: The adversarial-training component added by an ``adversarial`` config file.
ADVERSARIAL_COMPONENT = "bioner_adversarial"
#: ``--adversarial none``: train without it (so a project variable can switch it off).
NO_ADVERSARIAL = "none"
#: Head name → the pipeline component it adds (the one it replaces must be one of these).
HEADS = {"ner": "ner", "tagger": "bioner_tagger"}
#: Architectures that read the Docs themselves (causal decoders): a backbone file puts one in
#: ``[components.transformer.model]`` and :func:`inline_decoder` moves it into the head.
DECODER_ARCHITECTURES = ("spacy_bioner.DecoderTagger.v1", "spacy_bioner.DecoderTagger.v2")
LISTENER_PREFIX = "spacy-transformers.TransformerListener"


def packaged_configs() -> Dict[str, List[Path]]:
    """The base configs and backbone files shipped with the package, by kind."""
    return {
        "base": sorted(CONFIG_DIR.glob("*.cfg")),
        "backbone": sorted(BACKBONE_DIR.glob("*.cfg")),
        "head": sorted(HEAD_DIR.glob("*.cfg")),
        "adversarial": sorted(ADVERSARIAL_DIR.glob("*.cfg")),
        "augment": sorted(AUGMENT_DIR.glob("*.cfg")),
    }


def resolve_config_path(value: Union[str, Path], *, kind: str = "base") -> Path:
    """A config file from a path, or from a name shipped with the package.

    value (Union[str, Path]): a path (``configs/transformer.cfg``) or a name
        (``transformer``; for backbones ``minilm``, ``biobert``…).
    kind (str): ``base``, ``backbone``, ``head``, ``adversarial`` or ``augment``.
    RETURNS (Path): an existing file.
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    folder = {"backbone": BACKBONE_DIR, "head": HEAD_DIR, "adversarial": ADVERSARIAL_DIR,
              "augment": AUGMENT_DIR}.get(kind, CONFIG_DIR)
    name = path.name[:-4] if path.name.endswith(".cfg") else path.name
    shipped = folder / f"{name}.cfg"
    if shipped.is_file() and (path.parent == Path(".") or path.parent.name in (folder.name, "configs")):
        return shipped
    choices = ", ".join(p.stem for p in packaged_configs()[kind])
    raise ConfigNotFoundError(
        f"{value}: no such {kind} config file, and not the name of one shipped with spacy-bioner "
        f"({choices}); `spacy-bioner configs` lists them with their paths"
    )


def build_config(
    base: Union[str, Path],
    *,
    backbone: Union[str, Path, None] = None,
    head: Union[str, Path, None] = None,
    adversarial: Union[str, Path, None] = None,
    augment: Union[str, Path, None] = None,
    mix: Union[str, Path, None] = None,
    partial_labels: Optional[str] = None,
    overrides: Optional[Dict[str, Any]] = None,
) -> Config:
    """The base config merged with a backbone's overrides and a head, then ``--section.key`` overrides.

    base (Union[str, Path]): e.g. ``configs/transformer.cfg`` or ``transformer``.
    backbone (Union[str, Path, None]): e.g. ``configs/backbones/biobert.cfg`` or ``biobert``.
    head (Union[str, Path, None]): ``ner`` or ``tagger`` (or a head file): replaces the
        base's entity component, whatever the backbone.
    adversarial (Union[str, Path, None]): ``fgsm`` or ``pgd`` (or a file with a
        ``[components.bioner_adversarial]`` block): adds adversarial training after the head;
        ``none`` (or ``None``) trains without it.
    augment (Union[str, Path, None]): ``noise`` (or a file with a ``[corpora.train.augmenter]``
        block): augments the training corpus.
    mix (Union[str, Path, None]): a corpus mix file or a shipped mix's name (``huner``): the train
        and dev corpora read it (``spacy_bioner.MixedCorpus.v1``; ``paths.mix``).
    partial_labels (Optional[str]): ``naive``, ``partial`` or ``prompt`` (how the ``bioner_tagger``
        learns from corpora that annotate only some types; see :func:`set_partial_labels`).
    overrides (Optional[Dict[str, Any]]): dotted keys, as from the command line.
    RETURNS (Config): the merged config, not interpolated. ``total_steps`` of the
        schedule is fitted later (:func:`fit_schedule`), when the corpus is known.
    """
    config = Config().from_disk(resolve_config_path(base, kind="base"), interpolate=False)
    if backbone is not None:
        config = config.merge(Config().from_disk(resolve_config_path(backbone, kind="backbone"), interpolate=False))
    if head is not None:
        config = swap_head(config, Config().from_disk(resolve_config_path(head, kind="head"), interpolate=False))
    config = inline_decoder(config)
    if adversarial is not None and str(adversarial).lower() != NO_ADVERSARIAL:
        config = add_adversarial(config, Config().from_disk(resolve_config_path(adversarial, kind="adversarial"),
                                                            interpolate=False))
    if augment is not None:
        config = add_augmenter(config, Config().from_disk(resolve_config_path(augment, kind="augment"),
                                                          interpolate=False))
    if mix is not None:
        config = use_mix(config, mix)
    if partial_labels is not None:
        config = set_partial_labels(config, partial_labels)
    overrides = dict(overrides or {})
    if overrides:
        config = Config().from_str(config.to_str(), overrides=overrides, interpolate=False)
    return prompt_trained_corpora(config)


def prompt_trained_corpora(config: Config) -> Config:
    """A ``task_prompt.v3`` names only the corpora the training reader reads (``[corpora.train] corpora``).

    config (Config): a full config.
    RETURNS (Config): the config, its prompt's ``corpora`` cut to the trained ones.
    """
    model = config.get("components", {}).get("transformer", {}).get("model", {})
    prompt = model.get("task_prompt") if isinstance(model, dict) else None
    trained = config.get("corpora", {}).get("train", {}).get("corpora")
    if not isinstance(prompt, dict) or not isinstance(prompt.get("corpora"), list) or not isinstance(trained, list):
        return config
    merged = Config(config).copy()
    merged["components"]["transformer"]["model"]["task_prompt"]["corpora"] = \
        [c for c in prompt["corpora"] if c in set(trained)]
    return merged


def swap_head(config: Config, head: Config) -> Config:
    """Replace the config's entity component (``ner`` or ``bioner_tagger``) with the head's.

    config (Config): a full config whose pipeline has one head component.
    head (Config): a head file: ``[nlp] pipeline`` and its ``[components.NAME]`` block.
    RETURNS (Config): a new config.
    """
    config = Config(config).copy()
    new = [name for name in head["components"]]
    components = config.setdefault("components", {})
    for old in HEADS.values():
        components.pop(old, None)
    merged = config.merge(head)
    if "pipeline" not in head.get("nlp", {}):
        pipeline = [name for name in config["nlp"]["pipeline"] if name not in HEADS.values()]
        merged["nlp"]["pipeline"] = pipeline[:1] + new + pipeline[1:]
    return merged


def inline_decoder(config: Config) -> Config:
    """Move a decoder backbone from the ``transformer`` component into the head that listened to it.

    A decoder backbone file (``gpt2.cfg``) sets ``[components.transformer.model]``
    to a decoder architecture (``spacy_bioner.DecoderTagger.v1``). A causal model
    cannot feed listeners (each word must take its vector from the one window
    with the most left context), so the block becomes the ``tok2vec`` of every
    component whose ``tok2vec`` was a ``TransformerListener`` (``bioner_tagger``
    or ``ner``), and the ``transformer`` component leaves the pipeline. Any other
    config is returned unchanged.

    config (Config): a merged config (base + backbone + head).
    RETURNS (Config): a new config when something moved, else ``config``.
    """
    block = config.get("components", {}).get("transformer", {}).get("model", {})
    if block.get("@architectures") not in DECODER_ARCHITECTURES:
        return config
    from ..models import decoder  # noqa: F401  (registers the architecture, whatever the installed entry points)

    config = Config(config).copy()
    components = config["components"]
    block = components.pop("transformer")["model"]
    pipeline = [name for name in config["nlp"]["pipeline"] if name != "transformer"]
    listeners = [name for name in pipeline
                 if str(components.get(name, {}).get("model", {}).get("tok2vec", {}).get("@architectures", ""))
                 .startswith(LISTENER_PREFIX)]
    if not listeners:
        raise ConfigValueError(f"the decoder backbone ({block['@architectures']}) needs an entity head that listened to "
                         f"the transformer (--head tagger or --head ner); pipeline: {pipeline}")
    for name in listeners:
        components[name]["model"]["tok2vec"] = Config(block).copy()
    config["nlp"]["pipeline"] = pipeline
    return config


def embed_decoder_base(config: Config) -> Config:
    """``train --embed-base``: every ``DecoderTagger.v2`` with LoRA stores its base weights in the saved
    pipeline (``embed_base = true``) instead of referencing them by name and checksum.

    config (Config): a full config.
    RETURNS (Config): a new config.
    """
    config = Config(config).copy()
    found = []
    for name, component in config.get("components", {}).items():
        block = component.get("model", {}).get("tok2vec", {})
        if block.get("@architectures") == "spacy_bioner.DecoderTagger.v2" and block.get("lora", {}).get("r", 0):
            block["embed_base"] = True
            found.append(name)
    if not found:
        raise ConfigValueError("--embed-base needs a LoRA decoder on spacy_bioner.DecoderTagger.v2 (e.g. "
                               "--backbone mistral-7b); encoders and DecoderTagger.v1 always store their weights")
    return config


def add_adversarial(config: Config, adversarial: Config) -> Config:
    """Merge an adversarial-training block and put its component right after the entity head(s).

    config (Config): a full config.
    adversarial (Config): a file with ``[components.bioner_adversarial]`` (and its strategy).
    RETURNS (Config): a new config; its pipeline runs the component after the last
        component listening to the transformer (the heads), before ``doc_cleaner``.
        The file's ``[training.before_to_disk]`` (which keeps the component out of
        saved pipelines) wraps the config's own callback, if it has one, as ``then``.
    """
    if "transformer" not in config["nlp"]["pipeline"]:
        raise ConfigValueError("adversarial training perturbs the `transformer` component's embeddings; this "
                               f"pipeline has none ({config['nlp']['pipeline']}: a decoder backbone or tok2vec "
                               "config). Use an encoder backbone with the transformer base config")
    own = config.get("training", {}).get("before_to_disk")
    hook = adversarial.get("training", {}).get("before_to_disk")
    merged = Config(config).copy().merge(adversarial)
    if isinstance(own, dict) and isinstance(hook, dict) and own != hook:
        merged["training"]["before_to_disk"] = {**Config(hook).copy(), "then": Config(own).copy()}
    names = [name for name in adversarial.get("components", {})]
    pipeline = [name for name in merged["nlp"]["pipeline"] if name not in names]
    heads = [i for i, name in enumerate(pipeline) if name in HEADS.values()]
    at = heads[-1] + 1 if heads else len(pipeline)
    merged["nlp"]["pipeline"] = pipeline[:at] + names + pipeline[at:]
    return merged


def use_mix(config: Config, mix: Union[str, Path]) -> Config:
    """Train and evaluate on a corpus mix: ``[corpora.train]`` and ``[corpora.dev]`` read ``${paths.mix}``.

    Training streams the mix (``max_epochs = -1``: every pass a new draw; ``max_steps`` ends the run), and the
    entity heads' dev scorer counts only the types each corpus annotates.

    config (Config): a full config.
    mix (Union[str, Path]): the mix file, or a shipped mix's name (checked here).
    RETURNS (Config): a new config (an augmenter of the old training reader is kept).
    """
    from ..corpus.mixes import load_mix, resolve_mix_path

    path = resolve_mix_path(mix)
    merged = Config(config).copy()
    merged.setdefault("paths", {})["mix"] = str(path)
    corpora = merged.setdefault("corpora", {})
    augmenter = (corpora.get("train") or {}).get("augmenter")
    for split in ("train", "dev"):
        corpora[split] = {"@readers": "spacy_bioner.MixedCorpus.v1", "path": "${paths.mix}", "split": split,
                          "temperature": None, "epoch_size": 0, "limit": 0, "seed": "${system.seed}",
                          "corpora": None, "corpora_dir": None}
    if augmenter is not None:
        corpora["train"]["augmenter"] = augmenter
    # each epoch calls the reader again, so each draws afresh (spaCy reshuffles one list when max_epochs >= 0)
    merged.setdefault("training", {})["max_epochs"] = -1
    types = load_mix(path).types
    init = merged.setdefault("initialize", {}).setdefault("components", {})
    for name, component in merged.get("components", {}).items():  # dev F1 on the types each corpus annotates
        if isinstance(component, dict) and component.get("factory") in ("ner", "bioner_tagger"):
            component["scorer"] = {"@scorers": "spacy_bioner.annotated_ner_scorer.v1"}
            # spaCy initializes a streamed corpus (max_epochs -1) from its first 100 Examples only, where a
            # rare type may not occur: the heads get every type of the mix
            init[name] = {"labels": list(types) if component["factory"] == "bioner_tagger" else
                          {"@misc": "spacy_bioner.ner_actions.v1", "labels": list(types)}}
    return merged


#: How ``--partial-labels`` trains on corpora that annotate only some types.
PARTIAL_LABEL_MODES = ("naive", "partial", "prompt", "corpus-prompt")


def set_partial_labels(config: Config, mode: str) -> Config:
    """Set how the ``bioner_tagger`` learns from partially annotated corpora.

    ``naive`` and ``partial`` are the tagger's loss (``partial_labels``). ``prompt`` gives the transformer a
    task prompt naming the types each corpus annotates, or for half the training documents every type
    (``spacy_bioner.TransformerModel.v5`` with ``spacy_bioner.task_prompt.v2``, its types the mix's); the
    tagger's ``partial`` loss then takes a type the prompt did not ask for as ``O`` and one it asked for
    but the corpus does not annotate as unknown. ``corpus-prompt`` is ``prompt`` whose prompt also names
    the document's corpus for half the training documents, and at prediction for a document of a corpus of
    the mix (``spacy_bioner.task_prompt.v3``, its corpora the mix's).

    config (Config): a full config with a ``bioner_tagger`` (and, for ``prompt`` and ``corpus-prompt``, a
        corpus mix and ``spacy_bioner.TransformerModel.v4`` or ``.v5``).
    mode (str): ``naive``, ``partial``, ``prompt`` or ``corpus-prompt``.
    RETURNS (Config): a new config.
    """
    if mode not in PARTIAL_LABEL_MODES:
        raise ConfigValueError(f"--partial-labels must be one of {', '.join(PARTIAL_LABEL_MODES)}, got {mode!r}")
    merged = Config(config).copy()
    names = [n for n, c in merged.get("components", {}).items()
             if isinstance(c, dict) and c.get("factory") == "bioner_tagger"]
    if not names:
        raise ConfigValueError("--partial-labels needs the bioner_tagger head (--head tagger); spaCy's ner "
                               "has no partial-label loss")
    for name in names:
        merged["components"][name]["partial_labels"] = "naive" if mode == "naive" else "partial"
    if mode in ("prompt", "corpus-prompt"):
        merged = add_task_prompt(merged, name_corpora=mode == "corpus-prompt", mode=mode)
    return merged


def add_task_prompt(config: Config, *, name_corpora: bool = False, mode: str = "prompt") -> Config:
    """Switch the transformer to ``spacy_bioner.TransformerModel.v5`` with a task prompt naming the mix's types.

    config (Config): a full config that trains on a mix (``paths.mix``) with ``TransformerModel.v4`` or ``.v5``.
    name_corpora (bool): the prompt also names the document's corpus (``task_prompt.v3``, the mix's corpora).
    mode (str): the ``--partial-labels`` mode asked for (for messages).
    RETURNS (Config): a new config.
    """
    from ..corpus.mixes import load_mix
    from ..models.prompts import ALL_TYPES_RATE, CORPUS_RATE

    mix = config.get("paths", {}).get("mix")
    if not mix:
        raise ConfigValueError(f"--partial-labels {mode} needs a corpus mix (--mix): the prompt names the types "
                               "each corpus annotates")
    model = config.get("components", {}).get("transformer", {}).get("model", {})
    arch = model.get("@architectures") if isinstance(model, dict) else None
    if arch not in ("spacy_bioner.TransformerModel.v4", "spacy_bioner.TransformerModel.v5"):
        raise ConfigValueError(f"--partial-labels {mode} needs an encoder backbone with spacy_bioner.TransformerModel.v4 "
                               f"or .v5 in [components.transformer.model]; this config has {arch or 'none'}")
    spans = model.get("get_spans", {})
    if not isinstance(spans, dict) or spans.get("@span_getters") != "spacy_bioner.subword_windows.v1":
        raise ConfigValueError(f"--partial-labels {mode} needs the span getter spacy_bioner.subword_windows.v1 "
                               "(it leaves room for the prompt in every window)")
    merged = Config(config).copy()
    block = merged["components"]["transformer"]["model"]
    block["@architectures"] = "spacy_bioner.TransformerModel.v5"
    loaded = load_mix(mix)
    block["task_prompt"] = {"@misc": "spacy_bioner.task_prompt.v2", "types": loaded.types,
                             "all_types_rate": ALL_TYPES_RATE}
    if name_corpora:
        block["task_prompt"].update({"@misc": "spacy_bioner.task_prompt.v3",
                                     "corpora": [c.name for c in loaded.corpora], "corpus_rate": CORPUS_RATE})
    return merged


def add_augmenter(config: Config, augment: Config) -> Config:
    """Set the training corpus's augmenter from an augment file (``[corpora.train.augmenter]``).

    config (Config): a full config.
    augment (Config): a file with ``[corpora.train.augmenter]``.
    RETURNS (Config): a new config whose training reader augments (replacing any augmenter it had).
    """
    block = augment.get("corpora", {}).get("train", {}).get("augmenter")
    if not isinstance(block, dict):
        raise ConfigValueError("an augment config needs a [corpora.train.augmenter] block")
    merged = Config(config).copy()
    train = merged.get("corpora", {}).get("train")
    if not isinstance(train, dict):
        raise ConfigValueError("augmentation needs a [corpora.train] reader in the config")
    train["augmenter"] = Config(block).copy()
    return merged


@dataclass
class SchedulePlan:
    """How long a run is, worked out before it starts.

    total_steps (int): optimizer steps the schedule spans.
    steps_per_epoch (Optional[int]): batches in one pass over the training corpus.
    epochs (Optional[int]): ``training.max_epochs`` when it bounds the run.
    train_examples (Optional[int]): Examples (Docs) in the training corpus.
    train_words (Optional[int]): words in one epoch.
    source (str): what decided ``total_steps``.
    """

    total_steps: Optional[int]
    steps_per_epoch: Optional[int] = None
    epochs: Optional[int] = None
    train_examples: Optional[int] = None
    train_words: Optional[int] = None
    source: str = "unchanged"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def count_epoch(config: Config) -> Tuple[int, int, int]:
    """Batches, Examples and words in one epoch, with the config's own reader and batcher.

    config (Config): a full training config whose train corpus can be read.
    RETURNS (Tuple[int, int, int]): (batches, examples, words).
    """
    import spacy
    from spacy.util import registry, resolve_dot_names

    resolved = config.interpolate()
    nlp = spacy.blank(resolved["nlp"]["lang"])
    (corpus,) = resolve_dot_names(resolved, [resolved["training"]["train_corpus"]])
    batcher = registry.resolve({"batcher": resolved["training"]["batcher"]})["batcher"]
    examples = list(corpus(nlp))
    state = random.getstate()  # a bucketing batcher shuffles; leave the run's randomness alone
    try:
        batches = sum(1 for _ in batcher(examples))
    finally:
        random.setstate(state)
    return batches, len(examples), sum(len(eg) for eg in examples)


def _count_or_none(config: Config) -> Optional[Tuple[int, int, int]]:
    try:
        return count_epoch(config)
    except Exception:  # no paths.train yet (e.g. `spacy-bioner config` before conversion)
        return None


def fit_schedule(config: Config, *, explicit: bool = False, need_corpus: bool = True) -> Tuple[Config, SchedulePlan]:
    """Make the learning-rate schedule's ``total_steps`` follow the run's real length.

    * ``training.max_epochs = N > 0``: N × the batches per epoch of the training
      corpus (counted with the config's reader and batcher), capped by
      ``training.max_steps`` when that is set too;
    * else ``training.max_steps > 0``: ``max_steps``;
    * else (no bound) or ``explicit``: left as written.

    The value is written as a literal (``nlp.resume_training()`` resolves the
    optimizer block on its own).

    config (Config): the merged config (modified in place and returned).
    explicit (bool): ``total_steps`` was set on purpose; keep it.
    need_corpus (bool): the training corpus must be readable (training: its
        errors surface here, before spaCy starts); if False an unreadable one
        leaves an epoch-bounded schedule unfitted, with the reason in the plan.
    RETURNS (Tuple[Config, SchedulePlan]): the config and the plan.
    """
    training = config.get("training", {})
    schedule = training.get("optimizer", {}).get("learn_rate")
    max_steps = training.get("max_steps") or 0
    max_epochs = training.get("max_epochs") or 0
    has_total = isinstance(schedule, dict) and "total_steps" in schedule
    current = schedule.get("total_steps") if has_total else None
    if not isinstance(max_steps, int) or not isinstance(max_epochs, int):
        return config, SchedulePlan(total_steps=current, source="unchanged (max_steps/max_epochs not literal)")
    plan = SchedulePlan(total_steps=current)
    counted = None
    if max_epochs > 0 or max_steps > 0:
        counted = count_epoch(config) if need_corpus else _count_or_none(config)
    if max_epochs > 0 and counted is None:
        return config, SchedulePlan(total_steps=current, epochs=max_epochs,
                                    source="unchanged: set paths.train to fit it to the epochs")
    if max_epochs > 0 and counted is not None:
        batches, n_examples, n_words = counted
        total = max_epochs * batches
        if max_steps > 0:
            total = min(total, max_steps)
        plan = SchedulePlan(total_steps=total, steps_per_epoch=batches, epochs=max_epochs,
                            train_examples=n_examples, train_words=n_words,
                            source=f"{max_epochs} epochs × {batches} batches" + (
                                f", capped by max_steps {max_steps}" if 0 < max_steps < max_epochs * batches else ""))
    elif max_steps > 0:
        plan = SchedulePlan(total_steps=max_steps, source="training.max_steps")
        if counted is not None:
            plan.steps_per_epoch, plan.train_examples, plan.train_words = counted
    if explicit or not has_total:
        plan.total_steps, plan.source = current, "explicit" if explicit else "no total_steps in the schedule"
        return config, plan
    if plan.total_steps:
        schedule["total_steps"] = int(plan.total_steps)
    return config, plan


def check_backbone(config: Config) -> Optional[str]:
    """Fail fast, before spaCy starts, if the config's backbone cannot be found."""
    name = config.get("paths", {}).get("backbone")
    return resolve_backbone(str(name)) if name else None
