"""Token-classification heads: ``spacy_bioner.TokenClassifier.v1`` and the subword
pooling that turns a word's subword vectors into one (``spacy_bioner.subword_pooling.v1``)."""
from typing import List, Optional

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Dropout, Linear, Model, chain, reduce_mean, with_array
from thinc.types import Floats2d, Ragged

#: How a word's vector is made from its subwords' vectors.
POOLING_MODES = ("first", "last", "mean")


def subword_pooling(mode: str) -> Model[Ragged, Floats2d]:
    """A reduction over each word's subword rows: its first, last or mean subword.

    mode (str): ``first`` (BERT-style taggers), ``last`` (causal decoders, where only
        the last subword has seen the whole word) or ``mean``.
    """
    if mode not in POOLING_MODES:
        raise ValueError(f"unknown subword pooling {mode!r}; choose one of {', '.join(POOLING_MODES)}")
    if mode == "mean":
        return reduce_mean()
    return Model(f"subword_{mode}", _pick_forward, attrs={"mode": mode})


def _pick_forward(model: Model, X: Ragged, is_train: bool):
    """The first or last row of each token's subwords; a token with none (whitespace, characters the
    tokenizer drops) gets a zero vector, as ``reduce_mean`` gives it (thinc's reduce_first/last raise)."""
    xp = model.ops.xp
    data = X.dataXd
    lengths = xp.asarray(X.lengths)
    starts = xp.cumsum(lengths) - lengths
    rows = starts if model.attrs["mode"] == "first" else starts + lengths - 1
    has = lengths > 0
    picked = rows[has]
    Y = model.ops.alloc2f(len(lengths), data.shape[1])
    Y[has] = data[picked]

    def backprop(dY: Floats2d) -> Ragged:
        dX = model.ops.alloc2f(*data.shape)
        dX[picked] = dY[has]
        return Ragged(dX, X.lengths)

    return Y, backprop


@registry.layers("spacy_bioner.subword_pooling.v1")
def configure_subword_pooling(mode: str = "first") -> Model[Ragged, Floats2d]:
    """Pooling for ``spacy-transformers.TransformerListener.v1``: ``first``, ``last`` or ``mean`` subword.

    mode (str): which subword(s) give the word vector.
    """
    return subword_pooling(mode)


def token_classifier(tok2vec: Model[List[Doc], List[Floats2d]], *, nO: Optional[int] = None,
                     dropout: float = 0.1) -> Model[List[Doc], List[Floats2d]]:
    """Word vectors → dropout → linear scores over the tags (logits; softmax is in the loss and decoder).

    tok2vec (Model[List[Doc], List[Floats2d]]): one vector per token (e.g. a TransformerListener).
    nO (Optional[int]): number of tags (set by the component at initialisation).
    dropout (float): dropout rate on the word vectors (during training spaCy sets every
        dropout layer to ``training.dropout``; this value applies to other callers).
    """
    output = Linear(nO=nO)
    model = chain(tok2vec, with_array(chain(Dropout(dropout), output)))
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("output", output)
    model.attrs["dropout"] = dropout
    return model


@registry.architectures("spacy_bioner.TokenClassifier.v1")
def configure_token_classifier(tok2vec: Model[List[Doc], List[Floats2d]], nO: Optional[int] = None,
                               dropout: float = 0.1) -> Model[List[Doc], List[Floats2d]]:
    """A softmax token-classification head over a token-vector layer (the published studies' head).

    tok2vec (Model[List[Doc], List[Floats2d]]): token vectors.
    nO (Optional[int]): number of tags (inferred from the labels).
    dropout (float): dropout on the token vectors.
    """
    return token_classifier(tok2vec, nO=nO, dropout=dropout)
