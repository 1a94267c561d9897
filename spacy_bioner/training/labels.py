"""The labels a head starts with, when spaCy cannot see them all in the data it initializes from.

spaCy initializes a streamed training corpus (``max_epochs = -1``, as a corpus mix
trains) from its first 100 Examples only, where a rare type may not occur; the
head would then never learn it. :func:`~spacy_bioner.training.config.use_mix`
gives every head the mix's types in ``[initialize.components.NAME] labels``:
a list for ``bioner_tagger``, and for spaCy's ``ner`` the action table
``spacy init labels`` writes, built by ``spacy_bioner.ner_actions.v1`` (a config
cannot spell that table's empty label).
"""
from typing import Dict, List

from spacy.util import registry


def ner_actions(labels: List[str]) -> Dict[str, Dict[str, int]]:
    """spaCy ``ner``'s initial actions for these labels, as ``spacy init labels`` writes them.

    labels (List[str]): entity labels.
    RETURNS (Dict[str, Dict[str, int]]): action id (MISSING 0, BEGIN 1, IN 2, LAST 3, UNIT 4, OUT 5) →
        label → count (the empty label: outside any entity).
    """
    every = {label: 1 for label in labels}
    return {"0": {}, "1": dict(every), "2": dict(every), "3": dict(every), "4": {"": 1, **every}, "5": {"": 1}}


@registry.misc("spacy_bioner.ner_actions.v1")
def configure_ner_actions(labels: List[str]) -> Dict[str, Dict[str, int]]:
    """``[initialize.components.ner] labels`` from a list of entity labels.

    labels (List[str]): entity labels.
    RETURNS (Dict[str, Dict[str, int]]): :func:`ner_actions`.
    """
    return ner_actions(labels)
