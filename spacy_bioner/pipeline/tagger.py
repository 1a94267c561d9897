"""``bioner_tagger``: the published studies' token-classification head, as a spaCy component.

A softmax over BIO (IOB2) or BILUO tags on top of token vectors (a transformer
listener whose word vector is the first, last or mean subword), trained with
cross-entropy computed in a few batched array operations, and decoded with a
constrained Viterbi so ``doc.ents`` never comes from an invalid tag sequence.

Partially annotated corpora (a corpus mix, :mod:`spacy_bioner.corpus.mixes`): with
``partial_labels = "partial"``, a token tagged ``O`` in a corpus that does not
annotate type X may be any tag of X, and the loss is the negative log of the
total probability of the tags consistent with the annotation (the marginal
likelihood over the allowed set, Greenberg et al., EMNLP 2018, here per token);
``"naive"`` (the default) takes every unannotated token as ``O``.
"""
import math
from itertools import islice
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Linear, Model
from thinc.types import Floats2d

from ..corpus.mixes import annotated_types, prompted_types
from ..corpus.sentences import sentence_bounds
from ..errors import ConfigValueError
from .decoding import HEAD_SCHEMES, marginals, tag_names, tags_to_spans, transition_mask, viterbi

#: Default ``doc.spans`` key where the tagger puts its entities with their confidences.
SPANS_KEY = "ents"
#: How the loss reads a token tagged O in a corpus that does not annotate every type.
PARTIAL_LABELS = ("naive", "partial")

class TaggerPrediction(NamedTuple):
    """What :meth:`BioNERTagger.predict` returns for a batch of Docs."""

    tag_ids: List[numpy.ndarray]
    """Per Doc, the decoded tag id of each token (the best valid sequence of each sentence)."""
    confidences: Optional[List[numpy.ndarray]]
    """Per Doc, each token's probability of its decoded tag under the constrained model (None: not computed)."""


class TagTables(NamedTuple):
    """What decoding and the loss look up, for one set of labels."""

    labels: Tuple[str, ...]
    tags: List[str]
    tag_index: Dict[str, int]
    label_index: Dict[str, int]
    transitions: Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]


DEFAULT_CONFIG = """
[model]
@architectures = "spacy_bioner.TokenClassifier.v1"
nO = null
dropout = 0.1

[model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[model.tok2vec.pooling]
@layers = "spacy_bioner.subword_pooling.v1"
mode = "first"
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_CONFIG)["model"]


@Language.factory(
    "bioner_tagger",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={"model": DEFAULT_MODEL, "scheme": "iob2", "spans_key": SPANS_KEY, "constrained": True,
                    "partial_labels": "naive", "scorer": {"@scorers": "spacy.ner_scorer.v1"}},
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_bioner_tagger(nlp: Language, name: str, model: Model[List[Doc], List[Floats2d]], scheme: str,
                       spans_key: Optional[str], scorer: Optional[Callable], constrained: bool = True,
                       partial_labels: str = "naive") -> "BioNERTagger":
    """A token-classification NER head with constrained decoding.

    model (Model[List[Doc], List[Floats2d]]): tag scores per token (``spacy_bioner.TokenClassifier.v1``).
    scheme (str): ``iob2`` (B/I/O, as the studies) or ``bilou``.
    spans_key (Optional[str]): ``doc.spans`` key of the entities with their confidences in
        ``doc.spans[spans_key].attrs["scores"]`` (``null``: no confidences, decoding only).
    scorer (Optional[Callable]): scores ``doc.ents`` (spaCy's NER scorer).
    constrained (bool): decode with the constrained Viterbi (default); ``false``: each token's most
        probable tag, read as Hugging Face's token-classification pipeline reads it (an ``I-X`` after
        ``O`` opens an entity), for the same entities as an HF checkpoint's argmax.
    partial_labels (str): ``naive`` (an unannotated token is ``O``) or ``partial`` (in an Example whose
        corpus does not annotate type X, a token tagged ``O`` may be any tag of X: marginal likelihood).
    """
    return BioNERTagger(nlp.vocab, model, name, scheme=scheme, spans_key=spans_key, scorer=scorer,
                        constrained=constrained, partial_labels=partial_labels)


class BioNERTagger(TrainablePipe):
    """Token classification over entity tags, decoded into ``doc.ents``."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "bioner_tagger", *, scheme: str = "iob2",
                 spans_key: Optional[str] = SPANS_KEY, scorer: Optional[Callable] = None,
                 constrained: bool = True, partial_labels: str = "naive") -> None:
        if scheme not in HEAD_SCHEMES:
            raise ValueError(f"bioner_tagger: unknown scheme {scheme!r}; choose one of {', '.join(HEAD_SCHEMES)}")
        if partial_labels not in PARTIAL_LABELS:
            raise ValueError(f"bioner_tagger: partial_labels must be one of {', '.join(PARTIAL_LABELS)}, "
                             f"got {partial_labels!r}")
        self.partial_labels = partial_labels
        self.vocab = vocab
        self.model = model
        self.name = name
        self.spans_key = spans_key
        self.constrained = constrained
        self.cfg: Dict = {"labels": [], "scheme": scheme}
        self.scorer = scorer
        self._tables: Optional[TagTables] = None

    # ------------------------------------------------------------------ labels
    @property
    def labels(self) -> Tuple[str, ...]:
        """The entity labels (not the tags)."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def tags(self) -> List[str]:
        """Tag names: ``O`` and each label's B/I (or B/I/L/U) tags."""
        return self.tables.tags

    @property
    def tables(self) -> "TagTables":
        """Tags, their lookups and valid transitions, rebuilt only when the labels change."""
        if self._tables is None or self._tables.labels != self.labels:
            tags = tag_names(self.labels, scheme=self.cfg["scheme"])
            self._tables = TagTables(labels=self.labels, tags=tags, tag_index={t: i for i, t in enumerate(tags)},
                                     label_index={label: k for k, label in enumerate(self.labels)},
                                     transitions=transition_mask(tags))
        return self._tables

    def add_label(self, label: str) -> int:
        """Add an entity label; on a trained component its tags get new output rows (zero weights), so
        every existing tag keeps its scores.

        label (str): the entity label.
        RETURNS (int): 1 when added, 0 when already known.
        """
        if not isinstance(label, str):
            raise ValueError(f"bioner_tagger: a label must be a string, got {label!r}")
        if label in self.labels:
            return 0
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        self._grow_output()
        return 1

    def _grow_output(self) -> None:
        """Give tags added after the output layer has weights their rows: zero weights and bias, appended
        (:func:`~.decoding.tag_names` puts a new label's tags last)."""
        output = self.model.get_ref("output")
        if not (output.has_dim("nO") and output.get_dim("nO") is not None and output.has_param("W")):
            return
        W, b = output.get_param("W"), output.get_param("b")
        extra = len(self.tags) - W.shape[0]
        if extra <= 0:
            return
        xp = output.ops.xp
        grown = Linear(nO=len(self.tags), nI=W.shape[1])
        grown.initialize()
        grown.set_param("W", xp.concatenate([W, output.ops.alloc2f(extra, W.shape[1])]))
        grown.set_param("b", xp.concatenate([b, output.ops.alloc1f(extra)]))
        self.model.replace_node(output, grown)

    # -------------------------------------------------------------- prediction
    def predict(self, docs: Iterable[Doc]) -> TaggerPrediction:
        """Decoded tag ids per Doc (the best valid sequence of each sentence) and their confidences."""
        docs = list(docs)
        want_confidence = self.spans_key is not None
        if not any(len(doc) for doc in docs):
            empty = [numpy.zeros((len(doc),), dtype="int32") for doc in docs]
            return TaggerPrediction(empty, [numpy.zeros((len(doc),), dtype="float32") for doc in docs]
                                    if want_confidence else None)
        scores = self.model.predict(docs)
        return self.decode(scores, bounds=[sentence_bounds(doc) for doc in docs], confidence=want_confidence)

    def decode(self, scores: Sequence[Floats2d], *, bounds: Optional[Sequence[Sequence[Tuple[int, int]]]] = None,
               confidence: bool = False) -> TaggerPrediction:
        """Constrained Viterbi over log-softmax scores, every sentence of every document at once.

        Each sentence is decoded on its own, so no entity crosses a sentence boundary (gold never does).
        scores (Sequence[Floats2d]): per Doc, ``(n_tokens, n_tags)`` scores.
        bounds (Optional[Sequence[Sequence[Tuple[int, int]]]]): per Doc, its sentences' ``(start, end)``
            token offsets (:func:`~spacy_bioner.corpus.sentences.sentence_bounds`); None: each Doc is one sequence.
        confidence (bool): also compute each token's marginal probability of its decoded tag.
        RETURNS (TaggerPrediction): tag ids per Doc and, with ``confidence``, their probabilities.
        """
        ops = self.model.ops
        lengths = numpy.asarray([len(s) for s in scores], dtype="int32")
        flat = ops.flatten(list(scores))
        flat = flat - flat.max(axis=1, keepdims=True)
        logp = flat - ops.xp.log(ops.xp.exp(flat).sum(axis=1, keepdims=True))
        per_doc = ops.unflatten(logp, lengths)
        if bounds is None:
            bounds = [[(0, int(n))] for n in lengths]
        segments = [doc_logp[start:end] for doc_logp, doc_bounds in zip(per_doc, bounds)
                    for start, end in doc_bounds]
        allowed, start, end = self.tables.transitions
        if not self.constrained:  # each token's most probable tag (Hugging Face's argmax)
            paths = [_host(s.argmax(axis=1)).astype("int32") for s in segments]
            probs = ([_host(ops.xp.exp(s))[numpy.arange(len(p)), p] for s, p in zip(segments, paths)]
                     if confidence else None)
        else:
            paths = viterbi(segments, allowed=allowed, start=start, end=end)
            probs = None
        if confidence and probs is None:
            probs = [m[numpy.arange(len(path)), path] if len(path) else numpy.zeros((0,), dtype="float32")
                     for m, path in zip(marginals(segments, allowed=allowed, start=start, end=end), paths)]
        tag_ids, confidences, k = [], [], 0
        for doc_bounds, n in zip(bounds, lengths):
            parts = len(doc_bounds)
            tag_ids.append(numpy.concatenate(paths[k:k + parts]).astype("int32") if parts
                           else numpy.zeros((int(n),), dtype="int32"))
            if probs is not None:
                confidences.append(numpy.concatenate(probs[k:k + parts]).astype("float32") if parts
                                   else numpy.zeros((int(n),), dtype="float32"))
            k += parts
        return TaggerPrediction(tag_ids, confidences if probs is not None else None)

    def set_annotations(self, docs: Iterable[Doc], prediction: TaggerPrediction) -> None:  # type: ignore[override]
        """Set ``doc.ents`` from decoded tag ids (every other token becomes ``O``), and the same entities
        with their confidences (the mean of their tokens' tag probabilities) in
        ``doc.spans[spans_key]``, ``.attrs["scores"]``."""
        tags = self.tags
        if not isinstance(prediction, TaggerPrediction):  # bare tag ids per Doc
            prediction = TaggerPrediction(list(prediction), None)
        confidences = prediction.confidences
        for k, (doc, ids) in enumerate(zip(docs, prediction.tag_ids)):
            found = tags_to_spans(ids, tags)
            spans = [Span(doc, start, end, label=label) for start, end, label in found]
            doc.set_ents(spans, default="outside")
            if self.spans_key is not None and confidences is not None:
                doc.spans[self.spans_key] = spans
                doc.spans[self.spans_key].attrs["scores"] = [round(float(confidences[k][start:end].mean()), 6)
                                         for start, end, _ in found]

    # ---------------------------------------------------------------- training
    def get_loss(self, examples: Iterable[Example], scores: Sequence[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """Mean softmax cross-entropy over the batch's tokens, in a few array operations.

        Tokens whose gold tag is unknown (missing annotation, misaligned) add nothing. With
        ``partial_labels = "partial"``, an ``O`` token of an Example whose corpus does not annotate
        some labels scores the total probability of ``O`` and those labels' tags (:func:`allowed_tags`).
        """
        validate_examples(examples, "BioNERTagger.get_loss")
        ops = self.model.ops
        xp = ops.xp
        examples = list(examples)
        tables = self.tables
        gold = numpy.concatenate([gold_tag_ids(eg, tables.label_index, scheme=self.cfg["scheme"])
                                  if same_tokens(eg) else self._gold_ids(eg, tables.tag_index) for eg in examples])
        lengths = numpy.asarray([len(s) for s in scores], dtype="int32")
        flat = ops.flatten(list(scores))
        truth = xp.asarray(gold)
        known = truth >= 0
        n = max(int(known.sum()), 1)
        shifted = flat - flat.max(axis=1, keepdims=True)
        exp = xp.exp(shifted)
        probs = exp / exp.sum(axis=1, keepdims=True)
        rows = xp.arange(len(truth))
        safe = xp.where(known, truth, 0)
        allowed = allowed_tags(examples, gold, labels=self.labels, scheme=self.cfg["scheme"]) \
            if self.partial_labels == "partial" else None
        if allowed is None:
            log_picked = shifted[rows, safe] - xp.log(exp.sum(axis=1))  # log-softmax: exact, never clipped
            d_scores = probs.copy()
            d_scores[rows, safe] -= 1.0
        else:  # in log space: −log Σ_allowed p = logsumexp(z) − logsumexp(z over the allowed tags)
            mask = xp.asarray(allowed, dtype=probs.dtype)
            mask[rows, safe] = 1.0
            masked = xp.where(mask > 0, shifted, -xp.inf)
            top = masked.max(axis=1, keepdims=True)
            inside = xp.exp(masked - top)
            d_scores = probs - inside / inside.sum(axis=1, keepdims=True)
            log_picked = (top[:, 0] + xp.log(inside.sum(axis=1))) - xp.log(exp.sum(axis=1))
        loss = float(-(log_picked * known).sum()) / n
        d_scores *= (known[:, None] / n).astype(d_scores.dtype)
        if math.isnan(loss):
            raise ValueError(f"{self.name}: the loss is NaN (learning rate too high, or fp16 overflow)")
        return loss, ops.unflatten(d_scores, lengths)

    def _gold_ids(self, example: Example, index: Dict[str, int]) -> numpy.ndarray:
        """Gold tag id per predicted token, through spaCy's alignment (other tokenisations); -1 where unknown."""
        biluo = example.get_aligned_ner()
        scheme = self.cfg["scheme"]
        out = numpy.full((len(biluo),), -1, dtype="int32")
        for k, tag in enumerate(biluo):
            if tag is None or tag == "-" or tag == "":
                continue
            if tag != "O" and scheme == "iob2":
                tag = ("B" if tag[0] in "BU" else "I") + tag[1:]
            out[k] = index.get(tag, -1)
        return out

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp: Optional[Language] = None,
                   labels: Optional[Sequence[str]] = None) -> None:
        """Take the labels from the data (or ``labels``), size the output layer, initialise the model."""
        validate_get_examples(get_examples, "BioNERTagger.initialize")
        check_prompt_loss(nlp, partial_labels=self.partial_labels, name=self.name)
        if labels is None:
            labels = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        for label in labels:
            self.add_label(label)
        if not self.labels:
            raise ValueError(f"{self.name}: no entity labels in the training data; is paths.train annotated?")
        self.model.get_ref("output").set_dim("nO", len(self.tags))
        sample = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=sample)


def check_prompt_loss(nlp: Optional[Language], *, partial_labels: str, name: str) -> None:
    """A transformer that shows the all-type prompt to training documents needs the ``partial`` loss.

    Those documents' unannotated types were asked for but not answered; the ``naive`` loss would teach
    the prediction prompt that they are ``O``.

    nlp (Optional[Language]): the pipeline being initialized.
    partial_labels (str): the tagger's setting.
    name (str): the tagger's name (for the message).
    RAISES ConfigValueError: a prompt with ``all_types_rate > 0`` and a ``naive`` tagger.
    """
    if nlp is None or partial_labels == "partial":
        return
    for pipe_name, pipe in nlp.pipeline:
        prompt = getattr(getattr(pipe, "model", None), "attrs", {}).get("task_prompt")
        if prompt is not None and getattr(prompt, "all_types_rate", 0.0) > 0:
            raise ConfigValueError(f"{name}: {pipe_name}'s task prompt shows every type to "
                                   f"{prompt.all_types_rate:g} of training documents, whose unannotated types "
                                   f"are unknown, not O: set components.{name}.partial_labels = \"partial\" "
                                   "(or all_types_rate = 0)")


def _host(array) -> numpy.ndarray:
    return array.get() if hasattr(array, "get") else numpy.asarray(array)


def same_tokens(example: Example) -> bool:
    """Whether the predicted Doc has exactly the reference's tokens (as the corpus readers make them)."""
    x, y = example.predicted, example.reference
    return len(x) == len(y) and bool((x.to_array("ORTH") == y.to_array("ORTH")).all())


def gold_tag_ids(example: Example, labels: Dict[str, int], *, scheme: str) -> numpy.ndarray:
    """Gold tag ids from the reference's entity arrays, without a per-token Python loop.

    Tag ids follow :func:`~spacy_bioner.pipeline.decoding.tag_names`: 0 is ``O``, then
    per label B, I (IOB2) or B, I, L, U (BILUO). Tokens with missing annotation,
    or an entity label the component does not know, get -1 (no loss).

    example (Example): predicted and reference Docs with the same tokens.
    labels (Dict[str, int]): label → its position in the component's labels.
    scheme (str): ``iob2`` or ``bilou``.
    """
    doc = example.reference
    arr = doc.to_array(["ENT_IOB", "ENT_TYPE"]).astype("uint64")
    iob, types = arr[:, 0].astype("int64"), arr[:, 1]
    label_of = numpy.full(len(doc), -1, dtype="int64")
    for type_hash in numpy.unique(types[iob != 2]) if len(doc) else []:
        name = doc.vocab.strings[int(type_hash)] if type_hash else ""
        label_of[types == type_hash] = labels.get(name, -1)
    out = numpy.full(len(doc), -1, dtype="int32")
    out[iob == 2] = 0
    inside = ((iob == 1) | (iob == 3)) & (label_of >= 0)
    if scheme == "iob2":
        out[inside & (iob == 3)] = (1 + 2 * label_of[inside & (iob == 3)]).astype("int32")
        out[inside & (iob == 1)] = (2 + 2 * label_of[inside & (iob == 1)]).astype("int32")
    else:
        nxt = numpy.append(iob[1:], 2)
        last = nxt != 1  # the next token does not continue the entity
        for prefix, mask in ((1, (iob == 3) & ~last), (2, (iob == 1) & ~last), (3, (iob == 1) & last),
                             (4, (iob == 3) & last)):
            sel = inside & mask
            out[sel] = (prefix + 4 * label_of[sel]).astype("int32")
    return out


def label_tag_columns(k: int, *, scheme: str) -> List[int]:
    """The tag ids of the ``k``-th label (see :func:`~spacy_bioner.pipeline.decoding.tag_names`)."""
    width = 2 if scheme == "iob2" else 4
    return list(range(1 + width * k, 1 + width * (k + 1)))


def allowed_tags(examples: Sequence[Example], gold: numpy.ndarray, *, labels: Sequence[str],
                 scheme: str) -> Optional[numpy.ndarray]:
    """Extra tags an ``O`` token may take because its corpus does not annotate their label (None: none may).

    examples (Sequence[Example]): the batch, in the order of ``gold``'s tokens.
    gold (numpy.ndarray): gold tag id per token (0: O, -1: unknown), the batch's tokens concatenated.
    labels (Sequence[str]): the component's labels.
    scheme (str): ``iob2`` or ``bilou``.
    RETURNS (Optional[numpy.ndarray]): ``(tokens, tags)`` 0/1, with 1 at each ``O`` token's tags of the labels
        its Example's corpus does not annotate (from ``doc.user_data["bioner.annotates"]``) and, when a task
        prompt asked for some types only (``"bioner.prompted"``), that it asked for; None when every
        Example annotates every label it was asked for.
    """
    width = 2 if scheme == "iob2" else 4
    mask: Optional[numpy.ndarray] = None
    start = 0
    for eg in examples:
        size = len(eg.predicted)
        annotates = annotated_types(eg.reference)
        asked = prompted_types(eg.predicted)  # a task prompt: the types it did not ask for are O
        if annotates is not None:
            missing = [k for k, label in enumerate(labels)
                       if label not in annotates and (asked is None or label in asked)]
            if missing:
                if mask is None:
                    mask = numpy.zeros((len(gold), 1 + width * len(labels)), dtype="float32")
                outside = numpy.nonzero(gold[start:start + size] == 0)[0] + start
                cols = [c for k in missing for c in label_tag_columns(k, scheme=scheme)]
                mask[numpy.ix_(outside, cols)] = 1.0
        start += size
    return mask
