"""What every annotate backend runs: load the pipeline, annotate a buffer of records, tell a bad record
from a failing job.

Shared by the local job (:mod:`.job`, in this process or in spawned workers) and
the Ray actors (:mod:`.ray_backend`), so neither imports the other's module.

* A record the pipeline fails on is retried alone and, if it fails again,
  becomes a :class:`~spacy_bioner.types.BadRecord` (the error file), its
  reason starting with :data:`PIPELINE_FAILED`.
* A failure of the job is a :class:`JobFailure`: out of memory (``MemoryError``,
  ``torch.cuda.OutOfMemoryError``, a ``RuntimeError`` saying "out of memory" or,
  as torch's CPU allocator does, "can't allocate memory": :data:`MEMORY_ERROR_MARKS`),
  a device error ("CUDA error", "device-side assert"), or every record of a
  buffer failing alone. Nothing of that buffer is written, so ``--resume``
  continues with nothing lost.
"""
import resource
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Set, Tuple, Union

from ..types import AnnotatedRecord, BadRecord, CharEntity, Record

if TYPE_CHECKING:
    from pathlib import Path

    from spacy.language import Language
    from spacy.tokens import Doc

#: Entities of one text: ``(start_char, end_char, label, score or None)``.
TextEntities = List[Tuple[int, int, str, Optional[float]]]
#: How the error file's reason starts for a record the pipeline failed on.
PIPELINE_FAILED = "the pipeline failed on it"
#: Messages (lower case) of running out of memory: CUDA's, and torch's CPU allocator's ("DefaultCPUAllocator:
#: can't allocate memory: ... (Cannot allocate memory)"; "not enough memory" on Windows).
MEMORY_ERROR_MARKS = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory")
#: Messages (lower case) of errors that are the device's or the memory's, not the record's.
JOB_ERROR_MARKS = MEMORY_ERROR_MARKS + ("cuda error", "device-side assert", "cublas_status", "cudnn_status")
#: Where the entity scores are: ``doc.spans[key].attrs["scores"]``, aligned with the group's spans; the key
#: is the ``spans_key`` of the pipeline's ``bioner_tagger`` (this one when it has none).
SCORES_GROUP = "ents"


#: How a :class:`JobFailure` says to go on, and how it says it in ``--retry-errors`` mode (where ``--resume``
#: would skip every record the error file holds, those still to retry included).
RESUME_HINT = "continue with --resume"
RETRY_HINT = "rerun with --retry-errors"


class JobFailure(RuntimeError):
    """The job (not a record) failed: stop, write nothing of the current buffer; ``--resume`` continues."""


def for_retry(err: JobFailure) -> JobFailure:
    """The same failure, telling to rerun with ``--retry-errors`` instead of ``--resume``.

    err (JobFailure): a failure of a ``--retry-errors`` job.
    """
    text = str(err)
    return JobFailure(text.replace(RESUME_HINT, RETRY_HINT) if RESUME_HINT in text else f"{text}; {RETRY_HINT}")


class MissingScoresError(ValueError):
    """``--min-confidence`` with a pipeline that sets no entity scores."""


def job_failure_reason(err: BaseException) -> Optional[str]:
    """Why ``err`` is a failure of the job rather than of one record (None: the record's).

    err (BaseException): what the pipeline raised (its causes are looked at too).
    RETURNS (Optional[str]): ``out of memory`` or ``device error``, or None.
    """
    seen: Set[int] = set()
    current: Optional[BaseException] = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MemoryError) or type(current).__name__ == "OutOfMemoryError":
            return "out of memory"
        text = str(current).lower()
        if isinstance(current, RuntimeError) and any(mark in text for mark in MEMORY_ERROR_MARKS):
            return "out of memory"
        if isinstance(current, RuntimeError) and any(mark in text for mark in JOB_ERROR_MARKS):
            return "device error"
        current = current.__cause__ or current.__context__
    return None


def first_line(err: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters)."""
    text = (str(err).strip().splitlines() or [""])[0][:300]
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def register_components(factories: Set[str]) -> None:
    """Register spacy-bioner's components a pipeline uses, should its entry points be stale."""
    if "bioner_adversarial" in factories:
        from ..pipeline import adversarial  # noqa: F401


def prepare_pipeline(model: Union[str, "Path"], *, gpu_id: int = -1, length_buckets: float = 0.8,
                     int8: bool = False, max_chars: int = 1_000_000, runtime: str = "torch") -> "Language":
    """Load a pipeline for annotation: GPU or CPU, speed-ups, a doc cleaner, ``max_length``.

    model (Union[str, Path]): pipeline folder or installed package name.
    gpu_id (int): GPU index, -1 for CPU.
    length_buckets (float): length-bucket ratio for every transformer, overriding the config's (0: off).
    int8 (bool): int8 dynamic quantization (CPU).
    max_chars (int): the longest passage accepted (spaCy's ``nlp.max_length``).
    runtime (str): ``torch``, ``onnx`` or ``auto`` (see :mod:`spacy_bioner.models.onnx_runtime`).
    """
    from ..gpu import require_gpu
    from ..models.inference import add_doc_cleaner, load_pipeline, speed_up

    require_gpu(gpu_id)
    nlp = load_pipeline(model, register=register_components)
    speed_up(nlp, gpu_id=gpu_id, length_buckets=length_buckets, int8=int8, runtime=runtime)
    add_doc_cleaner(nlp)
    nlp.max_length = max(nlp.max_length, max_chars + 1)
    return nlp


def scores_key(nlp: "Language") -> str:
    """The ``doc.spans`` key of the entity scores: the last ``bioner_tagger``'s ``spans_key``, else ``ents``."""
    for name in reversed(nlp.pipe_names):
        if nlp.get_pipe_meta(name).factory == "bioner_tagger":
            return getattr(nlp.get_pipe(name), "spans_key", None) or SCORES_GROUP
    return SCORES_GROUP


def entity_scores(doc: "Doc", *, key: str = SCORES_GROUP) -> Optional[Dict[Tuple[int, int, str], float]]:
    """Each entity's confidence, by ``(start_char, end_char, label)``; None when the Doc has no scores.

    doc (Doc): a predicted Doc; the scores are ``doc.spans[key].attrs["scores"]`` (``bioner_tagger``).
    key (str): the span group (:func:`scores_key`).
    """
    if key not in doc.spans:
        return None
    group = doc.spans[key]
    scores = group.attrs.get("scores")
    if scores is None:
        return None
    return {(span.start_char, span.end_char, span.label_): float(score) for span, score in zip(group, scores)}


def doc_entities(doc: "Doc", *, min_confidence: Optional[float] = None, key: str = SCORES_GROUP) -> TextEntities:
    """The entities of a predicted Doc with their scores (None: not scored), low scores dropped.

    doc (Doc): a predicted Doc.
    min_confidence (Optional[float]): drop entities scored below it; a Doc with entities and no
        scores is a :class:`MissingScoresError`.
    key (str): the span group of the scores (:func:`scores_key`).
    """
    scores = entity_scores(doc, key=key)
    if min_confidence is not None and scores is None and doc.ents:
        raise MissingScoresError("--min-confidence needs entity scores, and this pipeline sets none "
                                 f"(doc.spans[{key!r}].attrs['scores'], as bioner_tagger does); "
                                 "drop --min-confidence")
    out: TextEntities = []
    for ent in doc.ents:
        score = None if scores is None else scores.get((ent.start_char, ent.end_char, ent.label_))
        if min_confidence is not None and score is not None and score < min_confidence:
            continue
        out.append((ent.start_char, ent.end_char, ent.label_, score))
    return out


def annotate_texts(nlp: "Language", texts: Sequence[str], *, batch_size: int = 64,
                   min_confidence: Optional[float] = None) -> Tuple[List[TextEntities], int]:
    """Entities (character offsets into each text, label, score) for every text, and the number of words.

    nlp (Language): the pipeline.
    texts (Sequence[str]): the texts, any order (they are run sorted by length, results in input order).
    batch_size (int): texts per ``nlp.pipe`` batch.
    min_confidence (Optional[float]): see :func:`doc_entities`.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: List[TextEntities] = [[] for _ in texts]
    words = 0
    key = scores_key(nlp)
    for i, doc in zip(order, nlp.pipe((texts[i] for i in order), batch_size=batch_size)):
        out[i] = doc_entities(doc, min_confidence=min_confidence, key=key)
        words += sum(1 for t in doc if not t.is_space)
    return out, words


#: Errors that stop the job at once, wherever they are raised.
STOP = (JobFailure, MissingScoresError)


def annotate_records(nlp: "Language", records: List[Record], *, batch_size: int = 64,
                     min_confidence: Optional[float] = None,
                     all_failing_stops: bool = True) -> Tuple[List[Union[AnnotatedRecord, BadRecord]], int]:
    """Annotate a buffer of records; if the pipeline fails, each record alone, so only the culprit is lost.

    nlp (Language): the pipeline.
    records (List[Record]): the buffer.
    batch_size (int): texts per ``nlp.pipe`` batch.
    min_confidence (Optional[float]): see :func:`doc_entities`.
    all_failing_stops (bool): every record of the buffer failing alone is a :class:`JobFailure` (off for
        ``--retry-errors``, whose records failed before).
    RETURNS: annotated records or, for those the pipeline fails on alone, bad records (in order), and the
        number of words. A failure of the job is a :class:`JobFailure` (see the module docs).
    """
    if len(records) > 1:
        try:
            return _annotate(nlp, records, batch_size=batch_size, min_confidence=min_confidence)
        except STOP:
            raise
        except Exception as err:  # noqa: BLE001 - find the record that breaks it, keep the others
            _stop_if_job_failure(err, records)
    results: List[Union[AnnotatedRecord, BadRecord]] = []
    words = 0
    failures: List[BaseException] = []
    for record in records:
        try:
            done, n = _annotate(nlp, [record], batch_size=batch_size, min_confidence=min_confidence)
        except STOP:
            raise
        except Exception as err:  # noqa: BLE001
            _stop_if_job_failure(err, [record])
            failures.append(err)
            results.append(BadRecord(source=record.source, id=record.id,
                                     error=f"{PIPELINE_FAILED}: {first_line(err)}"))
            continue
        results.extend(done)
        words += n
    if all_failing_stops and len(records) > 1 and len(failures) == len(records):
        raise JobFailure(f"every record of a buffer of {len(records)} (from {records[0].source}) failed, each alone "
                         f"({first_line(failures[0])}): the pipeline, not the records, looks broken; nothing of "
                         f"that buffer was written. Fix the cause and {RESUME_HINT} (with --buffer-size 1 "
                         "each failing record goes to the error file instead)")
    return results, words


def _stop_if_job_failure(err: BaseException, records: List[Record]) -> None:
    reason = job_failure_reason(err)
    if reason is None:
        return
    hint = (" (lower --batch-size or --buffer-size; a lower --max-chars sends the longest records to the error "
            "file)" if reason == "out of memory" else "")
    raise JobFailure(f"{reason} while annotating {len(records)} record(s) from {records[0].source} "
                     f"({first_line(err)}); nothing of that buffer was written. Fix the cause{hint} and "
                     f"{RESUME_HINT}") from None


def _annotate(nlp: "Language", records: List[Record], *, batch_size: int,
              min_confidence: Optional[float]) -> Tuple[List[Union[AnnotatedRecord, BadRecord]], int]:
    texts = [p.text for r in records for p in r.passages]
    found, words = annotate_texts(nlp, texts, batch_size=batch_size, min_confidence=min_confidence)
    results: List[Union[AnnotatedRecord, BadRecord]] = []
    k = 0
    for record in records:
        entities: List[CharEntity] = []
        scores: List[Optional[float]] = []
        for passage in record.passages:
            for s, e, label, score in found[k]:
                entities.append((passage.offset + s, passage.offset + e, label, passage.text[s:e]))
                scores.append(None if score is None else round(score, 4))
            k += 1
        results.append(AnnotatedRecord(id=record.id, source=record.source, passages=record.passages,
                                       entities=entities, scores=scores if any(s is not None for s in scores)
                                       else None))
    return results, words


def run_buffer(nlp: "Language", buffer: List[Union[Record, BadRecord]], batch_size: int,
               min_confidence: Optional[float] = None,
               all_failing_stops: bool = True) -> Tuple[List[Union[AnnotatedRecord, BadRecord]], int]:
    """Annotate a buffer's good records (:func:`annotate_records`); bad ones pass through in their place."""
    good = [r for r in buffer if isinstance(r, Record)]
    annotated, words = (annotate_records(nlp, good, batch_size=batch_size, min_confidence=min_confidence,
                                         all_failing_stops=all_failing_stops) if good else ([], 0))
    it = iter(annotated)
    return [r if isinstance(r, BadRecord) else next(it) for r in buffer], words


# ------------------------------------------------------------ worker processes (``--n-process``)
_WORKER_NLP: Optional["Language"] = None
_WORKER_ERROR: Optional[BaseException] = None


def init_worker(model: str, settings: Dict[str, Any]) -> None:
    """Load the pipeline in a worker process; a failure is kept and raised by the first task (in the
    parent), not raised here, where it would only say that the pool broke."""
    global _WORKER_NLP, _WORKER_ERROR
    import torch

    torch.set_num_threads(1)
    try:
        _WORKER_NLP = prepare_pipeline(model, **settings)
    except Exception as err:  # noqa: BLE001
        _WORKER_ERROR = err


def work(buffer: List[Union[Record, BadRecord]], batch_size: int, min_confidence: Optional[float] = None,
         all_failing_stops: bool = True):
    """A worker's task: :func:`run_buffer` with the worker's pipeline."""
    if _WORKER_NLP is None:
        raise _WORKER_ERROR or RuntimeError("the worker has no pipeline")
    return run_buffer(_WORKER_NLP, buffer, batch_size, min_confidence, all_failing_stops)


def peak_rss_mib(*, children: bool = True) -> float:
    """Peak resident memory of this process (and of its finished child processes), in MiB (Linux)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if children:
        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return peak
