"""Training-only components stay out of saved pipelines.

``bioner_adversarial`` does its work inside ``nlp.update`` and is the identity
at inference, so a saved pipeline (``model-best``, ``model-last``, a wheel) has
no use for it and would need spacy-bioner's factory to load. spaCy's training
loop saves ``before_to_disk(nlp).to_disk(...)``: the callback
``spacy_bioner.drop_training_only.v1`` (set in the adversarial configs) returns a
shallow copy of the pipeline without those components, sharing their weights;
the pipeline that keeps training is left whole, and the training config keeps
them (resuming with it trains adversarially again).
"""
import copy
from functools import partial
from typing import Any, Callable, Dict, Iterable, List, Optional

from spacy.language import Language
from spacy.util import registry
from thinc.api import Config

#: Factories whose components act only while training: dropped from saved pipelines.
TRAINING_ONLY_FACTORIES = frozenset({"bioner_adversarial"})
#: This module's callback, as named in configs.
CALLBACK = "spacy_bioner.drop_training_only.v1"


def training_only_components(config: Dict[str, Any]) -> List[str]:
    """Names of the config's components made by a training-only factory.

    config (Dict[str, Any]): a pipeline's config.
    RETURNS (List[str]): component names, in the config's order.
    """
    return [name for name, block in (config.get("components") or {}).items()
            if isinstance(block, dict) and block.get("factory") in TRAINING_ONLY_FACTORIES]


def strip_config(config: Dict[str, Any], names: Iterable[str]) -> Config:
    """A copy of ``config`` for a saved pipeline: without the components ``names`` and references to them.

    Removes them from ``[nlp] pipeline`` / ``disabled``, ``[components]``,
    ``[training] frozen_components`` / ``annotating_components`` and
    ``[initialize.components]``, and puts back the ``before_to_disk`` that
    :data:`CALLBACK` wrapped (``null`` if none).

    config (Dict[str, Any]): a pipeline's config (not changed).
    names (Iterable[str]): components to drop.
    RETURNS (Config): the new config.
    """
    names = set(names)
    out = Config(config).copy()
    nlp = out.get("nlp", {})
    for key in ("pipeline", "disabled"):
        if isinstance(nlp.get(key), list):
            nlp[key] = [name for name in nlp[key] if name not in names]
    for name in names:
        out.get("components", {}).pop(name, None)
        (out.get("initialize", {}).get("components") or {}).pop(name, None)
    training = out.get("training", {})
    for key in ("frozen_components", "annotating_components"):
        if isinstance(training.get(key), list):
            training[key] = [name for name in training[key] if name not in names]
    hook = training.get("before_to_disk")
    while isinstance(hook, dict) and hook.get("@callbacks") == CALLBACK:
        hook = hook.get("then")
    if "before_to_disk" in training:
        training["before_to_disk"] = hook
    return out


def drop_training_only(nlp: Language, *, then: Optional[Callable[[Language], Language]] = None) -> Language:
    """The pipeline to save: ``nlp`` without its training-only components (``nlp`` itself is not changed).

    A shallow copy sharing the vocab, tokenizer and components (no weights are
    copied); its config has no reference to the dropped components. ``nlp`` is
    returned as is when there is nothing to drop.

    nlp (Language): the pipeline being trained.
    then (Optional[Callable[[Language], Language]]): another ``before_to_disk`` callback, applied first.
    RETURNS (Language): the pipeline to write.
    """
    if then is not None:
        nlp = then(nlp)
    config = nlp.config
    names = [name for name in nlp.component_names if nlp.get_pipe_meta(name).factory in TRAINING_ONLY_FACTORIES]
    hook = config.get("training", {}).get("before_to_disk")
    if not names and not (isinstance(hook, dict) and hook.get("@callbacks") == CALLBACK):
        return nlp
    clone = copy.copy(nlp)
    clone._components = [(name, proc) for name, proc in nlp._components if name not in names]
    clone._pipe_meta = {name: meta for name, meta in nlp._pipe_meta.items() if name not in names}
    clone._pipe_configs = {name: cfg for name, cfg in nlp._pipe_configs.items() if name not in names}
    clone._disabled = {name for name in nlp._disabled if name not in names}
    clone._meta = copy.deepcopy(nlp._meta)
    for name in names:
        clone._meta.get("_sourced_vectors_hashes", {}).pop(name, None)
    clone._config = strip_config(config, names)
    return clone


@registry.callbacks(CALLBACK)
def configure_drop_training_only(*, then: Optional[Callable[[Language], Language]] = None
                                 ) -> Callable[[Language], Language]:
    """``[training.before_to_disk]``: save the pipeline without its training-only components (``bioner_adversarial``).

    then (Optional[Callable[[Language], Language]]): another ``before_to_disk`` callback, applied first.
    """
    return partial(drop_training_only, then=then)


__all__ = ["CALLBACK", "TRAINING_ONLY_FACTORIES", "configure_drop_training_only", "drop_training_only",
           "strip_config", "training_only_components"]
