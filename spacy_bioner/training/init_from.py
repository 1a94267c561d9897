"""Continued fine-tuning: start a training run from a trained or imported pipeline (``train --init-from``).

The config's ``transformer`` and entity head are *sourced* from the pipeline (spaCy's
``[components.NAME] source``), so training continues from its weights with the run's own
settings for everything else (corpus, schedule, optimizer). A ``bioner_tagger`` keeps its
classifier when the training corpus has the same labels; labels the pipeline does not know
are added with new output rows (its known tags keep their weights), in a copy of the pipeline
written beside the run.
"""
from pathlib import Path
from typing import Any, Dict, List, Tuple

from thinc.api import Config

from ..errors import ConfigValueError
from .callbacks import TRAINING_ONLY_FACTORIES

#: Where the copy with added labels goes, inside the run's output folder.
STAGED = "init-pipeline"


def corpus_labels(config: Config) -> List[str]:
    """The entity labels of the config's training corpus, read with its own reader.

    config (Config): a full training config whose train corpus can be read.
    RETURNS (List[str]): sorted labels.
    """
    import spacy
    from spacy.util import resolve_dot_names

    resolved = config.interpolate()
    nlp = spacy.blank(resolved["nlp"]["lang"])
    (corpus,) = resolve_dot_names(resolved, [resolved["training"]["train_corpus"]])
    return sorted({ent.label_ for eg in corpus(nlp) for ent in eg.reference.ents})


def check_task_prompt(config: Config, nlp: Any, *, pipeline: Path, sourced: List[str]) -> None:
    """A sourced transformer keeps its own task prompt: the config must ask for the same one.

    config (Config): the merged training config.
    nlp (Language): the pipeline the components are sourced from.
    pipeline (Path): its path (for the message).
    sourced (List[str]): the components taken from it.
    RAISES ConfigValueError: the config's prompt (or none) differs from the pipeline's.
    """
    if "transformer" not in sourced:
        return
    block = config["components"].get("transformer", {}).get("model", {})
    wanted = block.get("task_prompt") if isinstance(block, dict) else None
    theirs = nlp.get_pipe("transformer").model.attrs.get("task_prompt")
    want_types = list(wanted.get("types") or []) if isinstance(wanted, dict) else None
    from ..models.prompts import ALL_TYPES_RATE, TEMPLATE

    want_template = (wanted.get("template") if isinstance(wanted, dict) else None) or TEMPLATE
    want_rate = 0.0
    if isinstance(wanted, dict):  # task_prompt.v2 and .v3 have a default all-type share, v1 none
        shares = str(wanted.get("@misc", "")).endswith((".v2", ".v3"))
        want_rate = float(wanted.get("all_types_rate", ALL_TYPES_RATE if shares else 0.0))
    have = (theirs.types, theirs.template) if theirs is not None else None
    have_rate = float(getattr(theirs, "all_types_rate", 0.0)) if theirs is not None else 0.0
    if have is not None and have == (want_types, want_template) and have_rate != want_rate:
        raise ConfigValueError(f"--init-from {pipeline}: its task prompt shows the all-type prompt to "
                               f"{have_rate:g} of training documents, the config asks for {want_rate:g}; "
                               "continue with the pipeline's own setting (components.transformer.model."
                               "task_prompt.all_types_rate)")
    want_corpora = list(dict.fromkeys(wanted.get("corpora") or [])) if isinstance(wanted, dict) else []
    have_corpora = list(getattr(theirs, "corpora", []) or [])
    if have is not None and have == (want_types, want_template) and want_corpora and have_corpora == want_corpora:
        from ..models.prompts import CORPUS_RATE, CORPUS_TEMPLATE

        want = (float(wanted.get("corpus_rate", CORPUS_RATE)), wanted.get("corpus_template") or CORPUS_TEMPLATE)
        if want != (theirs.corpus_rate, theirs.corpus_template):
            raise ConfigValueError(f"--init-from {pipeline}: its task prompt names the corpus for "
                                   f"{theirs.corpus_rate:g} of training documents as {theirs.corpus_template!r}, "
                                   f"the config asks for {want[0]:g} as {want[1]!r}; continue with the pipeline's "
                                   "own setting (components.transformer.model.task_prompt)")
    if have is not None and have == (want_types, want_template) and have_corpora != want_corpora:
        describe_corpora = (lambda names: ", ".join(names) if names else "no corpus")
        raise ConfigValueError(f"--init-from {pipeline}: its task prompt names {describe_corpora(have_corpora)}, "
                               f"the config's {describe_corpora(want_corpora)}; continue with the pipeline's own "
                               "setting (--partial-labels corpus-prompt with the same mix, or prompt)")
    if (want_types, want_template) != (have or (None, "Tag {types}")):
        describe = (lambda types: f"a task prompt over {', '.join(types)}" if types else "no task prompt")
        raise ConfigValueError(f"--init-from {pipeline}: its transformer reads {describe(have[0] if have else None)}, "
                               f"the config asks for {describe(want_types)}; continue with the pipeline's own "
                               "setting (--partial-labels prompt with the same mix types, or without prompt)")


def init_from_pipeline(config: Config, pipeline: Path, *, output_dir: Path) -> Tuple[Config, Dict[str, Any]]:
    """Source the config's components that the pipeline also has (same name and factory).

    config (Config): the merged training config.
    pipeline (Path): a trained or imported pipeline folder.
    output_dir (Path): the run's output folder (a copy with added labels is written there).
    RETURNS (Tuple[Config, Dict[str, Any]]): the config with ``source`` blocks, and a record: the
        pipeline, sourced components, labels kept and added.
    RAISES ConfigValueError: the pipeline lacks the config's transformer or head, or has another head.
    """
    from ..models.inference import load_pipeline
    from ..pipeline.tagger import BioNERTagger

    nlp = load_pipeline(pipeline)
    config = Config(config).copy()
    wanted = list(config["nlp"]["pipeline"])
    factories = {name: config["components"][name].get("factory") for name in wanted}
    sourced = [name for name in wanted if name in nlp.pipe_names and factories[name] != "doc_cleaner"
               and nlp.get_pipe_meta(name).factory == factories[name]]
    # training-only components (adversarial training) are never in a saved pipeline: they start afresh
    trainable = [name for name in wanted if factories[name] not in ("doc_cleaner", None)
                 and factories[name] not in TRAINING_ONLY_FACTORIES]
    missing = [name for name in trainable if name not in sourced]
    if missing:
        theirs = ", ".join(f"{n} ({nlp.get_pipe_meta(n).factory})" for n in nlp.pipe_names)
        raise ConfigValueError(f"--init-from {pipeline}: it has no {', '.join(missing)} of the config's factory "
                               f"(its components: {theirs}); pick the same --head as the pipeline's")
    check_task_prompt(config, nlp, pipeline=pipeline, sourced=sourced)
    record: Dict[str, Any] = {"init_from": str(pipeline), "sourced": sourced, "labels_kept": [],
                              "labels_added": []}
    source = Path(pipeline)
    for name in sourced:
        component = nlp.get_pipe(name)
        if isinstance(component, BioNERTagger):
            labels = corpus_labels(config)
            added = [label for label in labels if label not in component.labels]
            record["labels_kept"] = [label for label in component.labels]
            record["labels_added"] = added
            for label in added:
                component.add_label(label)
            if added:
                source = Path(output_dir) / STAGED
                source.mkdir(parents=True, exist_ok=True)
                nlp.to_disk(source)
    for name in sourced:
        config["components"][name] = {"source": str(source), "component": name}
    return config, record
