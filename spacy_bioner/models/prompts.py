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

Corpora of one type follow different guidelines (BC2GM's gene boundaries are
not JNLPBA's), and one model trained on all of them learns their average.
``spacy_bioner.task_prompt.v3`` also names the corpus, as UniversalNER's
dataset-specific instructions do, for a share ``corpus_rate`` of training
documents::

    [CLS] BC2GM: Tag Gene [SEP] ...

and at prediction for a Doc whose ``doc.user_data["bioner.corpus"]`` is one of
its ``corpora`` (per-corpus evaluation of a mix sets it): the model then follows
that corpus's guideline. Any other text (``nlp(text)``, a held-out corpus) gets
the prompt without a corpus, which the other training documents taught.

The prompt's subwords are given no character offsets, so no spaCy token aligns
to them: they reach the transformer's attention but never a tag, and a window
always keeps its prompt (the span getter reserves room for the longest one).
``spacy_bioner.TransformerModel.v5`` takes a :class:`TaskPrompt`
(``spacy_bioner.task_prompt.v1``, ``.v2`` or ``.v3``) and does the encoding here.
"""
import random
import string
from typing import Any, Dict, List, Optional, Sequence

from spacy.tokens import Doc
from spacy.util import registry

from ..corpus.mixes import ANNOTATES, CORPUS, PROMPTED, PROMPTED_CORPUS
from ..errors import ConfigValueError
from .tokenization import encode_pairs, pad_batch

#: The default prompt text; ``{types}`` is the requested types, joined by ", ".
TEMPLATE = "Tag {types}"
#: ``task_prompt.v2``'s default share of training Docs shown the all-type prompt.
ALL_TYPES_RATE = 0.5
#: ``task_prompt.v3``'s prompt naming a corpus; ``{corpus}`` is its name, ``{prompt}`` the prompt without it.
CORPUS_TEMPLATE = "{corpus}: {prompt}"
#: ``task_prompt.v3``'s default share of training Docs whose prompt names their corpus.
CORPUS_RATE = 0.5


def _fills(template: str, *fields: str) -> bool:
    """Whether ``template``'s placeholders are exactly ``fields``, each plain (no conversion or format spec)."""
    try:
        parsed = [(name, conversion, spec) for _, name, spec, conversion in string.Formatter().parse(template)
                  if name is not None]
    except ValueError:  # an unmatched brace
        return False
    return {name for name, _, _ in parsed} == set(fields) and all(c is None and not s for _, c, s in parsed)


class TaskPrompt:
    """Which types a window's prompt names, and its text.

    types (Sequence[str]): every type the model tags (the prediction prompt names them all).
    template (str): the prompt text, with ``{types}`` where the requested types go.
    all_types_rate (float): the fraction of training Docs (from a mix) prompted with every type
        instead of their corpus's types (0: never, as ``task_prompt.v1``).
    corpora (Sequence[str]): corpora the prompt may name (empty: none, as ``v1`` and ``v2``).
    corpus_template (str): the prompt naming a corpus, with ``{corpus}`` and ``{prompt}`` placeholders.
    corpus_rate (float): the fraction of training Docs from those corpora whose prompt names theirs.
    """

    def __init__(self, *, types: Sequence[str], template: str = TEMPLATE, all_types_rate: float = 0.0,
                 corpora: Sequence[str] = (), corpus_template: str = CORPUS_TEMPLATE,
                 corpus_rate: float = 0.0) -> None:
        if not types or any(not isinstance(t, str) or not t.strip() for t in types):
            raise ConfigValueError(f"task_prompt: `types` must list the entity types the model tags, "
                                   f"got {list(types)!r}")
        if not _fills(template, "types"):
            raise ConfigValueError(f"task_prompt: the template needs a plain {{types}} placeholder and no other braces "
                                   f"(write {{{{ }}}} for a literal brace), got {template!r}")
        for name, rate in (("all_types_rate", all_types_rate), ("corpus_rate", corpus_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ConfigValueError(f"task_prompt: {name} is a fraction of training documents, 0 to 1; "
                                       f"got {rate!r}")
        if any(not isinstance(c, str) or not c.strip() for c in corpora):
            raise ConfigValueError(f"task_prompt: `corpora` must list corpus names, got {list(corpora)!r}")
        if corpora and not _fills(corpus_template, "corpus", "prompt"):
            raise ConfigValueError("task_prompt: corpus_template needs plain {corpus} and {prompt} placeholders "
                                   f"and no other braces, got {corpus_template!r}")
        self.types = list(dict.fromkeys(types))
        self.template = template
        self.all_types_rate = float(all_types_rate)
        self.corpora = list(dict.fromkeys(corpora))
        self.corpus_template = corpus_template
        self.corpus_rate = float(corpus_rate)
        self._extra: Dict[int, int] = {}

    def text(self, types: Optional[Sequence[str]] = None, *, corpus: Optional[str] = None) -> str:
        """The prompt naming ``types`` (in the prompt's own order; None: every type) and ``corpus``.

        types (Optional[Sequence[str]]): the requested types.
        corpus (Optional[str]): the corpus whose guideline to follow (None: none named).
        RETURNS (str): the prompt text.
        """
        wanted = None if types is None else set(types)
        asked = self.types if wanted is None else [t for t in self.types if t in wanted]
        prompt = self.template.format(types=", ".join(asked))
        return prompt if corpus is None else self.corpus_template.format(corpus=corpus, prompt=prompt)

    def known_corpus(self, doc: Doc) -> Optional[str]:
        """The Doc's corpus (``doc.user_data["bioner.corpus"]``) if the prompt may name it, else None."""
        name = doc.user_data.get(CORPUS)
        return name if isinstance(name, str) and name in self.corpora else None

    def for_doc(self, doc: Doc, *, is_train: bool) -> str:
        """The prompt for a window of ``doc``: in training its corpus's annotated types (or, for a share
        ``all_types_rate`` of Docs, every type), every type otherwise.

        The training choice is drawn once per Doc a training pass sees and recorded in
        ``doc.user_data["bioner.prompted"]`` (its other windows and the tagger's loss read it). A ``v3``
        prompt also names the Doc's corpus when it is one of its ``corpora``: for a share ``corpus_rate`` of
        training Docs (drawn once, in ``doc.user_data["bioner.prompted_corpus"]``), always at prediction.

        doc (Doc): the window's document.
        is_train (bool): a training pass (the only one that reads the Doc's annotated types).
        RETURNS (str): the prompt text.
        """
        annotated = doc.user_data.get(ANNOTATES) if is_train else None
        if annotated is None:  # prediction (or not from a mix): every type, the corpus if it is a known one
            return self.text(corpus=self.known_corpus(doc))
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
        corpus = self.known_corpus(doc)
        named = doc.user_data.get(PROMPTED_CORPUS)
        if corpus is None:
            named = None
        elif named not in (corpus, ""):  # not chosen yet for this Doc ("": chosen not to name it)
            named = corpus if self.corpus_rate and random.random() < self.corpus_rate else ""
            doc.user_data[PROMPTED_CORPUS] = named
        return self.text(asked, corpus=named or None)

    def prediction_texts(self) -> List[str]:
        """Every prompt with all types: without a corpus, and naming each known corpus (the longest prompts)."""
        return [self.text()] + [self.text(corpus=c) for c in self.corpora]

    def longest(self) -> str:
        """The longest prompt text (in characters), for messages."""
        return max(self.prediction_texts(), key=len)

    def extra_subwords(self, tokenizer: Any) -> int:
        """Subwords the longest prompt adds to a window, the pair's extra special tokens included.

        tokenizer (PreTrainedTokenizerFast): the transformer's tokenizer.
        RETURNS (int): what a window's budget must leave free.
        """
        if id(tokenizer) not in self._extra:
            prompt = max(len(tokenizer(t, add_special_tokens=False, verbose=False)["input_ids"])
                         for t in self.prediction_texts())
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


@registry.misc("spacy_bioner.task_prompt.v3")
def configure_task_prompt_v3(types: List[str], corpora: List[str], template: str = TEMPLATE,
                             all_types_rate: float = ALL_TYPES_RATE, corpus_template: str = CORPUS_TEMPLATE,
                             corpus_rate: float = CORPUS_RATE) -> TaskPrompt:
    """``v2`` whose prompt also names the document's corpus, so one model learns each corpus's guideline.

    types (List[str]): every type the model tags, in the order the prompt names them.
    corpora (List[str]): the corpora the prompt may name (a mix's corpus names).
    template (str): the prompt text with a ``{types}`` placeholder (default ``"Tag {types}"``).
    all_types_rate (float): the fraction of training Docs prompted with every type (default 0.5).
    corpus_template (str): the prompt naming a corpus, ``{corpus}`` and ``{prompt}`` placeholders
        (default ``"{corpus}: {prompt}"``).
    corpus_rate (float): the fraction of training Docs whose prompt names their corpus; the others
        teach the prompt without a corpus that unseen text gets (default 0.5).
    RETURNS (TaskPrompt): the prompt.
    """
    return TaskPrompt(types=types, template=template, all_types_rate=all_types_rate, corpora=corpora,
                      corpus_template=corpus_template, corpus_rate=corpus_rate)
