"""``bioner_tagger``: the published studies' token-classification head, as a spaCy component.

A softmax over BIO (IOB2) or BILUO tags on top of token vectors (a transformer
listener whose word vector is the first, last or mean subword), trained with
cross-entropy computed in a few batched array operations, and decoded with a
constrained Viterbi so ``doc.ents`` never comes from an invalid tag sequence.
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
from thinc.api import Config, Model
from thinc.types import Floats2d

from .decoding import HEAD_SCHEMES, tag_names, tags_to_spans, transition_mask, viterbi

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
    default_config={"model": DEFAULT_MODEL, "scheme": "iob2", "scorer": {"@scorers": "spacy.ner_scorer.v1"}},
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_bioner_tagger(nlp: Language, name: str, model: Model[List[Doc], List[Floats2d]], scheme: str,
                       scorer: Optional[Callable]) -> "BioNERTagger":
    """A token-classification NER head with constrained decoding.

    model (Model[List[Doc], List[Floats2d]]): tag scores per token (``spacy_bioner.TokenClassifier.v1``).
    scheme (str): ``iob2`` (B/I/O, as the studies) or ``bilou``.
    scorer (Optional[Callable]): scores ``doc.ents`` (spaCy's NER scorer).
    """
    return BioNERTagger(nlp.vocab, model, name, scheme=scheme, scorer=scorer)


class BioNERTagger(TrainablePipe):
    """Token classification over entity tags, decoded into ``doc.ents``."""

    def __init__(self, vocab: Vocab, model: Model, name: str = "bioner_tagger", *, scheme: str = "iob2",
                 scorer: Optional[Callable] = None) -> None:
        if scheme not in HEAD_SCHEMES:
            raise ValueError(f"bioner_tagger: unknown scheme {scheme!r}; choose one of {', '.join(HEAD_SCHEMES)}")
        self.vocab = vocab
        self.model = model
        self.name = name
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
        if not isinstance(label, str):
            raise ValueError(f"bioner_tagger: a label must be a string, got {label!r}")
        if label in self.labels:
            return 0
        self._allow_extra_label()
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def _allow_extra_label(self) -> None:
        output = self.model.get_ref("output")
        if output.has_dim("nO") and output.get_dim("nO") is not None and output.has_param("W"):
            raise ValueError(f"bioner_tagger: cannot add a label after training started (labels: {self.labels})")

    # -------------------------------------------------------------- prediction
    def predict(self, docs: Iterable[Doc]) -> List[numpy.ndarray]:
        """Decoded tag ids per Doc (the best valid sequence)."""
        docs = list(docs)
        if not any(len(doc) for doc in docs):
            return [numpy.zeros((len(doc),), dtype="int32") for doc in docs]
        scores = self.model.predict(docs)
        return self.decode(scores)

    def decode(self, scores: Sequence[Floats2d]) -> List[numpy.ndarray]:
        """Constrained Viterbi over log-softmax scores, all documents at once."""
        ops = self.model.ops
        lengths = numpy.asarray([len(s) for s in scores], dtype="int32")
        flat = ops.flatten(list(scores))
        flat = flat - flat.max(axis=1, keepdims=True)
        logp = flat - ops.xp.log(ops.xp.exp(flat).sum(axis=1, keepdims=True))
        allowed, start, end = self.tables.transitions
        return viterbi(ops.unflatten(logp, lengths), allowed=allowed, start=start, end=end)

    def set_annotations(self, docs: Iterable[Doc], tag_ids: Sequence[numpy.ndarray]) -> None:
        """Set ``doc.ents`` from decoded tag ids (every other token becomes ``O``)."""
        tags = self.tags
        for doc, ids in zip(docs, tag_ids):
            spans = [Span(doc, start, end, label=label) for start, end, label in tags_to_spans(ids, tags)]
            doc.set_ents(spans, default="outside")

    # ---------------------------------------------------------------- training
    def get_loss(self, examples: Iterable[Example], scores: Sequence[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """Mean softmax cross-entropy over the batch's tokens, in a few array operations.

        Tokens whose gold tag is unknown (missing annotation, misaligned) add nothing.
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
        picked = probs[rows, safe]
        loss = float(-(xp.log(xp.maximum(picked, 1e-12)) * known).sum()) / n
        d_scores = probs.copy()
        d_scores[rows, safe] -= 1.0
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
        if labels is None:
            labels = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        for label in labels:
            self.add_label(label)
        if not self.labels:
            raise ValueError(f"{self.name}: no entity labels in the training data; is paths.train annotated?")
        self.model.get_ref("output").set_dim("nO", len(self.tags))
        sample = [eg.predicted for eg in islice(get_examples(), 10)]
        self.model.initialize(X=sample)


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
