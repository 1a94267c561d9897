"""Task prompts: the transformer reads which entity types to tag before each window (AIONER, HunFlair2).

A corpus that annotates only diseases teaches a naively merged model that genes
are ``O``. With a task prompt the input says what is asked: in training each
window is encoded as the pair ``(prompt, window)``, the prompt naming the types
its corpus annotates (``doc.user_data["bioner.annotates"]``, set by a corpus mix),
and the tags of every other type are ``O`` because they were not asked for; at
prediction the prompt names every type, so one pass tags them all::

    [CLS] Tag CellLine, Chemical, Disease, Gene, Species [SEP] BRCA1 mutations in breast cancer [SEP]

The prediction prompt (every type) never occurs in training when no corpus
annotates every type, and a model trained only on its corpora's own prompts
reads it as a prompt it has not seen (on the ``huner`` mix, NCBI-disease: F1 8.2
with it, 72.8 with "Tag Disease"). ``all_types_rate`` (``spacy_bioner.task_prompt.v2``)
shows that prompt to this fraction of training documents; their types the
corpus does not annotate are then unknown, not ``O``, and the tagger's
``partial`` loss marginalises over them (the prompt asked for them, the corpus
did not answer). The choice is drawn per Doc each time a training pass sees it
(``nlp.update`` works on copies) and kept in ``doc.user_data["bioner.prompted"]``,
so every window of the Doc and the tagger's loss agree.

The prompt's subwords are given no character offsets, so no spaCy token aligns
to them: they reach the transformer's attention but never a tag, and a window
always keeps its prompt (the span getter reserves room for the longest one).
``spacy_bioner.TransformerModel.v5`` takes a :class:`TaskPrompt`
(``spacy_bioner.task_prompt.v1`` or ``.v2``) and does the encoding here.
"""
import random
from typing import Any, Dict, List, Optional, Sequence

from spacy.tokens import Doc
from spacy.util import registry

from ..corpus.mixes import ANNOTATES, PROMPTED
from ..errors import ConfigValueError
from .tokenization import encode_pairs, pad_batch

#: The default prompt text; ``{types}`` is the requested types, joined by ", ".
TEMPLATE = "Tag {types}"
#: ``task_prompt.v2``'s default share of training Docs shown the all-type prompt.
ALL_TYPES_RATE = 0.5


class TaskPrompt:
    """Which types a window's prompt names, and its text.

    types (Sequence[str]): every type the model tags (the prediction prompt names them all).
    template (str): the prompt text, with ``{types}`` where the requested types go.
    all_types_rate (float): the fraction of training Docs (from a mix) prompted with every type
        instead of their corpus's types (0: never, as ``task_prompt.v1``).
    """

    def __init__(self, *, types: Sequence[str], template: str = TEMPLATE, all_types_rate: float = 0.0) -> None:
        if not types or any(not isinstance(t, str) or not t.strip() for t in types):
            raise ConfigValueError(f"task_prompt: `types` must list the entity types the model tags, "
                                   f"got {list(types)!r}")
        try:
            ok = "{types}" in template and template.format(types="x") != template
        except (KeyError, IndexError, ValueError):
            ok = False
        if not ok:
            raise ConfigValueError(f"task_prompt: the template needs a {{types}} placeholder and no other braces "
                                   f"(write {{{{ }}}} for a literal brace), got {template!r}")
        if not 0.0 <= all_types_rate <= 1.0:
            raise ConfigValueError(f"task_prompt: all_types_rate is a fraction of training documents, 0 to 1; "
                                   f"got {all_types_rate!r}")
        self.types = list(dict.fromkeys(types))
        self.template = template
        self.all_types_rate = float(all_types_rate)
        self._extra: Dict[int, int] = {}

    def text(self, types: Optional[Sequence[str]] = None) -> str:
        """The prompt naming ``types`` (in the prompt's own order; None: every type).

        types (Optional[Sequence[str]]): the requested types.
        RETURNS (str): the prompt text.
        """
        wanted = None if types is None else set(types)
        asked = self.types if wanted is None else [t for t in self.types if t in wanted]
        return self.template.format(types=", ".join(asked))

    def for_doc(self, doc: Doc, *, is_train: bool) -> str:
        """The prompt for a window of ``doc``: in training its corpus's annotated types (or, for a share
        ``all_types_rate`` of Docs, every type), every type otherwise.

        The training choice is drawn once per Doc a training pass sees and recorded in
        ``doc.user_data["bioner.prompted"]`` (its other windows and the tagger's loss read it).

        doc (Doc): the window's document.
        is_train (bool): a training pass (the only one that reads the Doc's annotated types).
        RETURNS (str): the prompt text.
        """
        if not is_train:
            return self.text()
        annotated = doc.user_data.get(ANNOTATES)
        if annotated is None:
            return self.text()
        wanted = set(annotated)
        own = [t for t in self.types if t in wanted]
        if not own:
            raise ConfigValueError(f"task_prompt: a training document annotates {sorted(annotated)}, none of "
                                   f"the prompt's types ({', '.join(self.types)}); list them in the "
                                   "task_prompt's `types`")
        asked = doc.user_data.get(PROMPTED)
        if asked not in (own, self.types):  # not chosen yet for this Doc (or chosen for other settings)
            asked = list(self.types) if self.all_types_rate and random.random() < self.all_types_rate else own
            doc.user_data[PROMPTED] = asked
        return self.text(asked)

    def extra_subwords(self, tokenizer: Any) -> int:
        """Subwords the longest prompt adds to a window, the pair's extra special tokens included.

        tokenizer (PreTrainedTokenizerFast): the transformer's tokenizer.
        RETURNS (int): what a window's budget must leave free.
        """
        if id(tokenizer) not in self._extra:
            prompt = len(tokenizer(self.text(), add_special_tokens=False, verbose=False)["input_ids"])
            self._extra = {id(tokenizer): prompt + tokenizer.num_special_tokens_to_add(pair=True)
                           - tokenizer.num_special_tokens_to_add(pair=False)}
        return self._extra[id(tokenizer)]


def prompted_batch(tokenizer: Any, prompts: Sequence[str], texts: Sequence[str], *,
                   cache: Any = None) -> Dict[str, Any]:
    """The padded batch of ``(prompt, text)`` pairs, as ``huggingface_tokenize`` returns single texts.

    tokenizer (PreTrainedTokenizerFast): the transformer's tokenizer.
    prompts (Sequence[str]): one prompt per text.
    texts (Sequence[str]): window texts.
    cache (Optional[TokenizationCache]): remembers each pair's encoding (training).
    RETURNS (Dict[str, Any]): ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the tokenizer
        returns them), ``offset_mapping``, ``input_texts``, ``pad_token``.
    """
    if cache is not None:
        return cache(tokenizer, texts, prompts=prompts)
    return pad_batch(tokenizer, encode_pairs(tokenizer, prompts, texts))


@registry.misc("spacy_bioner.task_prompt.v1")
def configure_task_prompt(types: List[str], template: str = TEMPLATE) -> TaskPrompt:
    """A task prompt for ``spacy_bioner.TransformerModel.v5``.

    types (List[str]): every type the model tags, in the order the prompt names them.
    template (str): the prompt text with a ``{types}`` placeholder (default ``"Tag {types}"``).
    RETURNS (TaskPrompt): the prompt.
    """
    return TaskPrompt(types=types, template=template)


@registry.misc("spacy_bioner.task_prompt.v2")
def configure_task_prompt_v2(types: List[str], template: str = TEMPLATE,
                             all_types_rate: float = ALL_TYPES_RATE) -> TaskPrompt:
    """``v1`` that also shows the prediction prompt (every type) to a share of training documents.

    types (List[str]): every type the model tags, in the order the prompt names them.
    template (str): the prompt text with a ``{types}`` placeholder (default ``"Tag {types}"``).
    all_types_rate (float): the fraction of training Docs prompted with every type; their
        unannotated types are learnt with the tagger's ``partial`` loss (default 0.5).
    RETURNS (TaskPrompt): the prompt.
    """
    return TaskPrompt(types=types, template=template, all_types_rate=all_types_rate)
