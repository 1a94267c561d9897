"""Run a trained pipeline over gold data and score it (``spacy-bioner evaluate``).

Predicted Docs keep their entities and nothing of the transformer: a
``doc_cleaner`` at the end of the pipeline drops ``doc._.trf_data`` (and
``doc.tensor``) once the entities are set, so memory follows the batch size,
not the size of the evaluation set.
"""
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple, Union

from ..errors import ConfigValueError, CorpusFormatError
from ..gpu import peak_gpu_memory_mib, require_gpu, reset_peak_gpu_memory
from ..models.inference import (ADDED_CLEANER, CLEANED_ATTRS, add_doc_cleaner, load_pipeline,  # noqa: F401
                                speed_up)
from .scoring import SentencePair, align_docs, score_pairs

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Doc

#: Factories whose components set ``doc.ents``.
ENTITY_FACTORIES = ("ner", "beam_ner", "entity_ruler", "span_ruler", "bioner_tagger")


def register_components(factories: Set[str]) -> None:
    """Register spacy-bioner's components a pipeline uses, should its entry points be stale (``load_pipeline``).

    factories (Set[str]): the factory names of the pipeline's components.
    """
    if "bioner_adversarial" in factories:
        from ..pipeline import adversarial  # noqa: F401


def gold_inputs(nlp: "Language", gold_docs: Iterable["Doc"]) -> Iterator["Doc"]:
    """Unannotated copies of the gold Docs (same words, spaces and sentence starts), for ``nlp.pipe``; a Doc
    from a corpus mix keeps its corpus's name (a ``task_prompt.v3`` prompt names a corpus it knows)."""
    from ..corpus.mixes import CORPUS
    from ..corpus.sentences import input_copy

    for doc in gold_docs:
        copy = input_copy(doc, vocab=nlp.vocab)
        if CORPUS in doc.user_data:
            copy.user_data[CORPUS] = doc.user_data[CORPUS]
        yield copy


def predict(nlp: "Language", gold_docs: Sequence["Doc"], *, batch_size: int = 64) -> List["Doc"]:
    """Run ``nlp`` over the gold tokens (not its own tokenizer), with a progress bar.

    nlp (Language): the pipeline (a ``doc_cleaner`` is added while predicting if it has none).
    gold_docs (Sequence[Doc]): the gold data.
    batch_size (int): Docs per ``nlp.pipe`` batch.
    RETURNS (List[Doc]): predicted Docs, without transformer data.
    """
    from tqdm import tqdm

    before = list(nlp.pipe_names)
    add_doc_cleaner(nlp)
    # Docs of similar length share a batch, so the transformer pads little (as HF's sorted batching);
    # the predictions come back in the gold order.
    order = sorted(range(len(gold_docs)), key=lambda i: len(gold_docs[i]))
    try:
        predicted = list(tqdm(nlp.pipe(gold_inputs(nlp, [gold_docs[i] for i in order]), batch_size=batch_size),
                              total=len(gold_docs), desc="predicting", unit="doc", disable=None))
        out: List["Doc"] = [None] * len(gold_docs)  # type: ignore[list-item]
        for i, doc in zip(order, predicted):
            out[i] = doc
        return out
    finally:
        if ADDED_CLEANER in nlp.pipe_names and ADDED_CLEANER not in before:
            nlp.remove_pipe(ADDED_CLEANER)  # leave the caller's pipeline as it was


def require_tokens(docs: Sequence["Doc"], path: Path) -> Sequence["Doc"]:
    """Gold data with nothing in it is a mistake, not a score of 0."""
    if not any(len(doc) for doc in docs):
        raise CorpusFormatError("no tokens to score (an empty file, or only -DOCSTART- lines)", path=path)
    return docs


def score_docs(gold: Sequence["Doc"], pred: Sequence["Doc"], *, n_bootstrap: int,
               seed: int) -> Tuple[List[SentencePair], Dict[str, Any]]:
    """Align predictions with gold sentence by sentence and compute every metric."""
    pairs = align_docs(gold, pred)
    return pairs, score_pairs(pairs, n_bootstrap=n_bootstrap, seed=seed)


def entity_labels(nlp: "Language") -> Optional[Set[str]]:
    """Labels the pipeline's entity-setting components can predict (None: no such component)."""
    names = [n for n in nlp.pipe_names if nlp.get_pipe_meta(n).factory in ENTITY_FACTORIES]
    if not names:
        return None
    return {label for n in names for label in nlp.pipe_labels.get(n, [])}


def unknown_gold_labels(known: Optional[Set[str]], gold_docs: Sequence["Doc"]) -> Dict[str, int]:
    """Gold entity labels outside ``known``, with their number of gold entities."""
    if known is None:
        return {}
    return dict(sorted(Counter(e.label_ for doc in gold_docs for e in doc.ents if e.label_ not in known).items()))


def robustness(nlp: "Language", gold: Sequence["Doc"], kinds: Sequence[str], *, clean: Dict[str, Any],
               pool_from: Optional[Path] = None, rate: float = 0.2, seed: int = 0, batch_size: int = 64,
               n_bootstrap: int = 1000) -> Dict[str, Any]:
    """Scores on seeded noisy copies of the gold data, next to the clean scores.

    nlp (Language): the pipeline.
    gold (Sequence[Doc]): the clean gold Docs.
    kinds (Sequence[str]): noise kinds (:data:`~spacy_bioner.corpus.noise.NOISE_KINDS`).
    clean (Dict[str, Any]): the clean metrics (from :func:`score_docs`).
    pool_from (Optional[Path]): corpus whose mentions ``swap`` draws (None: the gold data's own).
    rate (float): noise rate (see :func:`~spacy_bioner.corpus.noise.noisy_doc`).
    seed (int): noise (and bootstrap) seed.
    batch_size (int): Docs per ``nlp.pipe`` batch.
    n_bootstrap (int): bootstrap resamples for each noisy F1 interval.
    RETURNS (Dict[str, Any]): ``clean`` and per kind ``p``, ``r``, ``f``, ``f_low``, ``f_high``,
        ``delta_f`` (noisy − clean) and ``changed_tokens``; plus the settings.
    """
    from ..corpus.readers import load_corpus_docs
    from ..corpus.noise import changed_tokens, mention_pool, noisy_docs

    pool = mention_pool(load_corpus_docs(pool_from, vocab=nlp.vocab)) if pool_from is not None else None
    out: Dict[str, Any] = {"seed": seed, "rate": rate, "swap_source": str(pool_from) if pool_from else "test set",
                           "clean": _row(clean), "kinds": {}}
    for kind in kinds:
        noisy = noisy_docs(gold, kind, seed=seed, rate=rate, pool=pool if kind == "swap" else None)
        _, metrics = score_docs(noisy, predict(nlp, noisy, batch_size=batch_size), n_bootstrap=n_bootstrap,
                                seed=seed)
        result = _row(metrics)
        result["delta_f"] = result["f"] - out["clean"]["f"]
        result["changed_tokens"] = changed_tokens(gold, noisy)
        out["kinds"][kind] = result
    return out


def _row(metrics: Dict[str, Any]) -> Dict[str, float]:
    sp, b = metrics["spacy"], metrics["bootstrap"]
    return {"p": sp["ents_p"], "r": sp["ents_r"], "f": sp["ents_f"], "f_low": b["low"], "f_high": b["high"]}


def known_entities(doc: "Doc", known: Optional[Set[str]]) -> "Doc":
    """A copy of a gold Doc whose entities of labels the pipeline does not know are missing (no loss), not O.

    doc (Doc): gold Doc.
    known (Optional[Set[str]]): the pipeline's entity labels (None: keep every entity).
    RETURNS (Doc): the Doc itself when every label is known, else a copy.
    """
    if known is None or all(e.label_ in known for e in doc.ents):
        return doc
    copy = doc.copy()
    copy.set_ents([e for e in copy.ents if e.label_ in known], missing=[e for e in copy.ents if e.label_ not in known],
                  default="unmodified")
    return copy


def under_attack(nlp: "Language", gold: Sequence["Doc"], *, epsilon: float, clean: Dict[str, Any],
                 batch_size: int = 64, n_bootstrap: int = 1000, seed: int = 0) -> Dict[str, Any]:
    """Scores under a test-time FGSM attack on the embeddings (the training perturbation, against the model).

    nlp (Language): a trained pipeline on the torch runtime.
    gold (Sequence[Doc]): the gold Docs (the attack uses their annotation, as training does).
    epsilon (float): ``spacy_bioner.FGSM.v2``'s ε: each token moves by ε × the mean token norm (L2).
    clean (Dict[str, Any]): the clean metrics.
    batch_size (int): Examples per attacked batch.
    n_bootstrap (int): bootstrap resamples for the interval.
    seed (int): bootstrap seed.
    RETURNS (Dict[str, Any]): ``p``, ``r``, ``f``, ``f_low``, ``f_high``, ``delta_f``, the strategy, and
        the measured per-token ratio ‖δ‖/‖e‖ (``ratio_mean``, ``ratio_max``).
    """
    from spacy.training import Example

    from ..pipeline.adversarial import attack, configure_fgsm_v2

    strategy = configure_fgsm_v2(epsilon=epsilon, max_ratio=float("inf"))
    known = entity_labels(nlp)
    examples = [Example(doc, known_entities(ref, known)) for doc, ref in zip(gold_inputs(nlp, gold), gold)]
    result = attack(nlp, examples, strategy=strategy, batch_size=batch_size)
    _, metrics = score_docs(gold, result["docs"], n_bootstrap=n_bootstrap, seed=seed)
    row = _row(metrics)
    row.update(delta_f=row["f"] - _row(clean)["f"], ratio_mean=result["ratio_mean"], ratio_max=result["ratio_max"],
               strategy={k: v for k, v in strategy.to_dict().items() if k != "max_ratio"})
    return row


def evaluate_model(model: Union[str, Path], data: Path, *, gpu_id: int = -1, batch_size: int = 64,
                   n_bootstrap: int = 1000, seed: int = 0, length_buckets: float = 0.8, int8: bool = False,
                   runtime: str = "torch", noise: Sequence[str] = (), noise_train: Optional[Path] = None, noise_rate: float = 0.2,
                   attack: Optional[float] = None, warn=None) -> Tuple[List[SentencePair], Dict[str, Any]]:
    """Load a pipeline, predict on ``data`` and score.

    model (Union[str, Path]): pipeline folder or package name.
    data (Path): gold data (IOB/CoNLL file or folder, or ``.spacy``).
    gpu_id (int): GPU index, -1 for CPU.
    batch_size (int): Docs per ``nlp.pipe`` batch.
    n_bootstrap (int): bootstrap resamples for the F1 interval (0: none).
    seed (int): bootstrap seed.
    length_buckets (float): length-bucket ratio for every transformer, overriding the config's (0: off).
    int8 (bool): int8 dynamic quantization of the transformers (CPU; not bit-identical).
    runtime (str): ``torch``, ``onnx`` or ``auto`` (see :mod:`spacy_bioner.models.onnx_runtime`).
    noise (Sequence[str]): noise kinds to score on too (``metrics["robustness"]``).
    noise_train (Optional[Path]): corpus whose mentions ``swap`` draws (None: the test set's own).
    noise_rate (float): noise rate.
    attack (Optional[float]): also score under a test-time FGSM attack of this relative ε
        (``metrics["robustness"]["attack"]``; torch runtime, no int8).
    warn (Callable[[str], None]): called with a warning about unknown gold labels.
    RETURNS: the sentence pairs and the metrics, with ``words_per_second``, ``inference``,
        ``unknown_gold_labels``, ``peak_gpu_mib`` (GPU) and spaCy's flat ``ents_*`` keys.
    """
    from ..corpus.readers import load_corpus_docs

    require_gpu(gpu_id)
    if attack is not None and (runtime != "torch" or int8):
        raise ConfigValueError("--attack needs gradients: use it with --runtime torch and without --int8")
    if attack is not None and not attack > 0:
        raise ConfigValueError(f"--attack: epsilon must be > 0, got {attack}")
    nlp = load_pipeline(model, register=register_components)
    inference = speed_up(nlp, gpu_id=gpu_id, length_buckets=length_buckets, int8=int8, runtime=runtime)
    gold = require_tokens(load_corpus_docs(data, vocab=nlp.vocab), data)
    known = entity_labels(nlp)
    unknown = unknown_gold_labels(known, gold)
    if unknown and warn is not None:
        listed = ", ".join(f"{label} ({n} in gold)" for label, n in unknown.items())
        warn(f"The gold data has labels the pipeline never predicts: {listed}. They count as misses; "
             f"the pipeline predicts {', '.join(sorted(known or ())) or 'no labels'}.")
    reset_peak_gpu_memory(gpu_id)
    start = time.perf_counter()
    pred = predict(nlp, gold, batch_size=batch_size)
    elapsed = time.perf_counter() - start
    pairs, metrics = score_docs(gold, pred, n_bootstrap=n_bootstrap, seed=seed)
    metrics["words_per_second"] = metrics["n_tokens"] / elapsed if elapsed else 0.0
    metrics["unknown_gold_labels"] = unknown
    metrics["inference"] = inference
    if gpu_id >= 0:
        metrics["peak_gpu_mib"] = peak_gpu_memory_mib(gpu_id)
    # spaCy's flat keys too, so scripts written for `spacy evaluate` find them
    metrics.update({k: metrics["spacy"][k] for k in ("ents_p", "ents_r", "ents_f", "ents_per_type")})
    if noise or attack is not None:
        metrics["robustness"] = robustness(nlp, gold, noise, clean=metrics, pool_from=noise_train, rate=noise_rate,
                                           seed=seed, batch_size=batch_size, n_bootstrap=n_bootstrap)
    if attack is not None:
        metrics["robustness"]["attack"] = under_attack(nlp, gold, epsilon=attack, clean=metrics,
                                                       batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed)
    return pairs, metrics
