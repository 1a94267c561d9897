"""The annotation job: stream records through a trained pipeline, write entities, lose nothing.

* **Streaming**: records are read lazily and annotated in buffers; within a
  buffer the passages go through ``nlp.pipe`` sorted by length (less padding),
  and the results are written back in input order. Predicted Docs keep only
  their entities (a ``doc_cleaner`` drops the transformer's data), so memory
  follows the buffer, not the input.
* **Resumable**: OUTPUT and the error file are flushed after every buffer; with
  ``resume`` the ids they already hold are skipped (a record cut off by a kill
  is removed from OUTPUT first), so a killed job continues with no duplicate
  and no gap.
* **Bad records** (unreadable, empty, too long, or one the pipeline fails on)
  go to the error file with their source ``file:line``, id and reason.
* ``n_process > 1`` (CPU): spawned worker processes, one torch thread each, each
  with its own copy of the pipeline; a bounded number of buffers in flight.
"""
import json
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from ..types import AnnotatedRecord, BadRecord, CharEntity, Record
from .formats import OUTPUT_FORMATS, Writer, error_line, read_records

if TYPE_CHECKING:
    from spacy.language import Language

#: Entities of one text: ``(start_char, end_char, label)``.
TextEntities = List[Tuple[int, int, str]]


@dataclass
class AnnotateStats:
    """What an ``annotate`` run did (printed at the end, and returned)."""

    documents: int = 0
    passages: int = 0
    words: int = 0
    entities: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    labels: Dict[str, int] = field(default_factory=dict)

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "docs_per_second": self.docs_per_second, "words_per_second": self.words_per_second}


def prepare_pipeline(model: Union[str, Path], *, gpu_id: int = -1, length_buckets: float = 0.8, int8: bool = False,
                     max_chars: int = 1_000_000) -> "Language":
    """Load a pipeline for annotation: GPU or CPU, speed-ups, a doc cleaner, ``max_length``.

    model (Union[str, Path]): pipeline folder or installed package name.
    gpu_id (int): GPU index, -1 for CPU.
    length_buckets (float): length-bucket ratio for every transformer, overriding the config's (0: off).
    int8 (bool): int8 dynamic quantization (CPU).
    max_chars (int): the longest passage accepted (spaCy's ``nlp.max_length``).
    """
    from ..evaluation.predict import add_doc_cleaner, load_pipeline, speed_up
    from ..gpu import require_gpu

    require_gpu(gpu_id)
    nlp = load_pipeline(model)
    speed_up(nlp, gpu_id=gpu_id, length_buckets=length_buckets, int8=int8)
    add_doc_cleaner(nlp)
    nlp.max_length = max(nlp.max_length, max_chars + 1)
    return nlp


def annotate_texts(nlp: "Language", texts: List[str], *, batch_size: int = 64) -> Tuple[List[TextEntities], int]:
    """Entities (character offsets into each text) for every text, and the number of words.

    nlp (Language): the pipeline.
    texts (List[str]): the texts, any order (they are run sorted by length, results in input order).
    batch_size (int): texts per ``nlp.pipe`` batch.
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: List[TextEntities] = [[] for _ in texts]
    words = 0
    for i, doc in zip(order, nlp.pipe((texts[i] for i in order), batch_size=batch_size)):
        out[i] = [(e.start_char, e.end_char, e.label_) for e in doc.ents]
        words += sum(1 for t in doc if not t.is_space)
    return out, words


def annotate_records(nlp: "Language", records: List[Record], *,
                     batch_size: int = 64) -> Tuple[List[Union[AnnotatedRecord, BadRecord]], int]:
    """Annotate a buffer of records; if the pipeline fails, each record alone, so only the culprit is lost."""
    if len(records) > 1:
        try:
            return _annotate(nlp, records, batch_size=batch_size)
        except Exception:  # noqa: BLE001 - find the record that breaks it, keep the others
            pass
    results: List[Union[AnnotatedRecord, BadRecord]] = []
    words = 0
    for record in records:
        try:
            done, n = _annotate(nlp, [record], batch_size=batch_size)
        except Exception as err:  # noqa: BLE001
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            results.append(BadRecord(source=record.source, id=record.id,
                                     error=f"the pipeline failed on it: {type(err).__name__}: {first[:300]}"))
            continue
        results.extend(done)
        words += n
    return results, words


def _annotate(nlp: "Language", records: List[Record], *,
              batch_size: int) -> Tuple[List[Union[AnnotatedRecord, BadRecord]], int]:
    texts = [p.text for r in records for p in r.passages]
    found, words = annotate_texts(nlp, texts, batch_size=batch_size)
    results: List[Union[AnnotatedRecord, BadRecord]] = []
    k = 0
    for record in records:
        entities: List[CharEntity] = []
        for passage in record.passages:
            entities.extend((passage.offset + s, passage.offset + e, label, passage.text[s:e]) for s, e, label in found[k])
            k += 1
        results.append(AnnotatedRecord(id=record.id, source=record.source, passages=record.passages,
                                       entities=entities))
    return results, words


def buffers(records: Iterable[Union[Record, BadRecord]], size: int) -> Iterator[List[Union[Record, BadRecord]]]:
    """Records in lists of ``size`` (the last may be shorter)."""
    buffer: List[Union[Record, BadRecord]] = []
    for record in records:
        buffer.append(record)
        if len(buffer) >= size:
            yield buffer
            buffer = []
    if buffer:
        yield buffer


def record_key(record: Union[Record, BadRecord, AnnotatedRecord]) -> str:
    """What resume matches on: the id, or the source when a bad record has none."""
    return record.id if record.id is not None else record.source


def read_error_keys(path: Path) -> "Counter[str]":
    """Keys of the records an error file already holds, with their counts (a line cut off by a kill is removed)."""
    if not path.exists():
        return Counter()
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(end)
    keys: "Counter[str]" = Counter()
    for line in data[:end].splitlines():
        if line.strip():
            obj = json.loads(line)
            keys[obj["id"] if obj.get("id") is not None else obj["source"]] += 1
    return keys


def default_errors_path(output: Path) -> Path:
    return output.with_name(output.name + ".errors.jsonl")


def annotate(model: Union[str, Path], input_path: Path, output: Path, *, fmt: Optional[str] = None,
             output_format: str = "jsonl", id_field: str = "id", text_field: str = "text", resume: bool = False,
             errors: Optional[Path] = None, batch_size: int = 64, buffer_size: int = 1024, n_process: int = 1,
             gpu_id: int = -1, length_buckets: float = 0.8, int8: bool = False, max_chars: int = 1_000_000,
             progress: bool = True, on_buffer: Optional[Callable[[AnnotateStats], None]] = None,
             backend: str = "local", address: Optional[str] = None, gpus_per_actor: float = 0.0,
             shard_size: int = 2000) -> AnnotateStats:
    """Annotate every record of INPUT with a trained pipeline, streaming, into OUTPUT.

    model (Union[str, Path]): pipeline folder or installed package.
    input_path (Path): file or folder (text, JSONL, PubTator, BioC; ``.gz`` too).
    output (Path): output file (JSONL, PubTator or BioC).
    fmt (Optional[str]): input format; None infers it from suffixes.
    output_format (str): jsonl, pubtator or bioc.
    id_field (str): JSONL id key. text_field (str): JSONL text key.
    resume (bool): continue a killed job: skip what OUTPUT and the error file hold.
    errors (Optional[Path]): error file (default: OUTPUT + ``.errors.jsonl``).
    batch_size (int): texts per ``nlp.pipe`` batch. buffer_size (int): records per buffer (flush unit).
    n_process (int): worker processes (CPU only). gpu_id (int): GPU index, -1 for CPU.
    length_buckets (float): see :mod:`spacy_bioner.models.buckets`. int8 (bool): int8 CPU inference.
    max_chars (int): longer documents go to the error file.
    progress (bool): show a progress bar. on_buffer: called with the running stats after each buffer.
    backend (str): ``local`` (this machine, streaming) or ``ray`` (Ray Data, sharded; see
        :mod:`.ray_backend`; ``n_process`` actors). address (Optional[str]): Ray cluster address.
    gpus_per_actor (float): GPUs per Ray actor. shard_size (int): records per Ray shard.
    RETURNS (AnnotateStats): counts, seconds, words/s, peak RSS.
    """
    from tqdm import tqdm

    if n_process > 1 and gpu_id >= 0 and backend == "local":
        raise ValueError("--n-process > 1 is for CPU; on a GPU use one process and a larger --batch-size")
    if int8 and gpu_id >= 0:
        raise ValueError("--int8 is for CPU inference; drop it with --gpu-id (or use mixed precision)")
    from ..models.buckets import check_ratio

    check_ratio(length_buckets)
    if backend not in ("local", "ray"):
        raise ValueError(f"--backend {backend}: choose local or ray")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--output-format {output_format}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if batch_size < 1 or buffer_size < 1 or n_process < 1:
        raise ValueError("--batch-size, --buffer-size and --n-process must be at least 1")
    errors = errors or default_errors_path(output)
    from .ray_backend import shard_folder

    records = read_records(input_path, fmt=fmt, id_field=id_field, text_field=text_field, max_chars=max_chars,
                           exclude=(output, errors, shard_folder(output)))
    settings = dict(gpu_id=gpu_id, length_buckets=length_buckets, int8=int8, max_chars=max_chars)
    if not resume:  # before loading anything
        for path in (output, errors):
            if path.exists() and path.stat().st_size:
                raise FileExistsError(f"{path} exists: pass --resume to continue the job, or choose a new OUTPUT")
    if backend == "ray":
        if gpus_per_actor:
            settings["gpu_id"] = 0  # Ray gives each actor its own GPU(s), visible as device 0
        return _annotate_on_ray(model, input_path, output, settings=settings, fmt=fmt, output_format=output_format,
                                id_field=id_field, text_field=text_field, errors=errors, resume=resume,
                                batch_size=batch_size, shard_size=shard_size, actors=n_process,
                                gpus_per_actor=gpus_per_actor, address=address)
    runner = _Runner(model, settings, n_process=n_process, batch_size=batch_size)
    writer = Writer(output, output_format, resume=resume)
    # What OUTPUT and the error file hold, per key and count: the n-th record with a repeated id is
    # skipped only if n records with that id were done (ids repeat in PubMed baseline + update files).
    done = Counter(writer.done)
    if resume:
        done.update(read_error_keys(errors))
    stats = AnnotateStats()
    err_file = open(errors, "a", encoding="utf8")
    bar = None
    try:
        start = time.perf_counter()  # words/s and docs/s count annotation, not loading the pipeline
        bar = tqdm(desc="annotating", unit="doc", disable=not progress or None, dynamic_ncols=True)

        def todo() -> Iterator[List[Union[Record, BadRecord]]]:
            for buffer in buffers(records, buffer_size):
                left = []
                for r in buffer:
                    key = record_key(r)
                    if done[key] > 0:
                        done[key] -= 1
                    else:
                        left.append(r)
                stats.skipped += len(buffer) - len(left)
                if left:
                    yield left

        for results, words in runner.map(todo()):
            for result in results:
                if isinstance(result, BadRecord):
                    err_file.write(error_line(result))
                    stats.errors += 1
                else:
                    writer.write(result)
                    stats.documents += 1
                    stats.passages += len(result.passages)
                    stats.entities += len(result.entities)
                    for e in result.entities:
                        stats.labels[e[2]] = stats.labels.get(e[2], 0) + 1
            stats.words += words
            writer.flush()
            err_file.flush()
            stats.seconds = time.perf_counter() - start
            bar.update(len(results))
            bar.set_postfix_str(f"{stats.words_per_second:,.0f} words/s, {stats.errors} errors")
            if on_buffer is not None:
                on_buffer(stats)
    finally:
        if bar is not None:
            bar.close()
        err_file.close()
        writer.close()
    stats.seconds = time.perf_counter() - start
    stats.peak_rss_mib = _peak_rss_mib()
    return stats


def _annotate_on_ray(model: Union[str, Path], input_path: Path, output: Path, **kwargs: Any) -> AnnotateStats:
    from .ray_backend import annotate_ray, require_ray

    require_ray()
    start = time.perf_counter()
    counts = annotate_ray(model, input_path, output, **kwargs)
    return AnnotateStats(documents=counts["documents"], entities=counts["entities"], errors=counts["errors"],
                         words=counts["words"], seconds=time.perf_counter() - start, peak_rss_mib=_peak_rss_mib())


class _Runner:
    """Runs buffers in this process, or in spawned workers with a bounded number in flight."""

    def __init__(self, model: Union[str, Path], settings: Dict[str, Any], *, n_process: int, batch_size: int) -> None:
        self.model, self.settings, self.n_process, self.batch_size = model, settings, n_process, batch_size
        self.nlp = prepare_pipeline(model, **settings) if n_process == 1 else None

    def map(self, todo: Iterable[List[Union[Record, BadRecord]]]) -> Iterator[Tuple[list, int]]:
        """Results (annotated or bad records, in input order) and word counts, buffer by buffer, in order."""
        if self.nlp is not None:
            for buffer in todo:
                yield _run_buffer(self.nlp, buffer, self.batch_size)
            return
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(self.n_process, initializer=_init_worker, initargs=(str(self.model), self.settings)) as pool:
            pending: Deque[Any] = deque()
            for buffer in todo:
                pending.append(pool.apply_async(_work, (buffer, self.batch_size)))
                if len(pending) >= 2 * self.n_process:
                    yield pending.popleft().get()
            while pending:
                yield pending.popleft().get()


def _run_buffer(nlp: "Language", buffer: List[Union[Record, BadRecord]],
                batch_size: int) -> Tuple[List[Union[AnnotatedRecord, BadRecord]], int]:
    """Annotate a buffer's good records; bad ones pass through in their place."""
    good = [r for r in buffer if isinstance(r, Record)]
    annotated, words = annotate_records(nlp, good, batch_size=batch_size) if good else ([], 0)
    it = iter(annotated)
    return [r if isinstance(r, BadRecord) else next(it) for r in buffer], words


_WORKER_NLP: Optional["Language"] = None
_WORKER_ERROR: Optional[BaseException] = None


def _init_worker(model: str, settings: Dict[str, Any]) -> None:
    """Load the pipeline in a worker; a failure is kept and raised by the first task (in the parent's
    ``get()``), not raised here, where ``multiprocessing.Pool`` would respawn the worker for ever."""
    global _WORKER_NLP, _WORKER_ERROR
    import torch

    torch.set_num_threads(1)
    try:
        _WORKER_NLP = prepare_pipeline(model, **settings)
    except Exception as err:  # noqa: BLE001
        _WORKER_ERROR = err


def _work(buffer: List[Union[Record, BadRecord]], batch_size: int):
    if _WORKER_NLP is None:
        raise _WORKER_ERROR or RuntimeError("the worker has no pipeline")
    return _run_buffer(_WORKER_NLP, buffer, batch_size)


def _peak_rss_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return max(peak, children)
