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
* **Retrying** (``retry_errors``) writes a buffer's records to OUTPUT before
  the error file lets them go; a note beside the error file
  (:func:`retry_journal_path`) says which, so records that reached OUTPUT
  before a kill leave the error file at the next start (:func:`settle_interrupted_retry`)
  instead of being annotated and written twice.
* **Bad records** (unreadable, empty, too long, or one the pipeline fails on
  alone) go to the error file with their source ``file:line``, id and reason;
  ``retry_errors`` annotates the error file's records again.
* **A failing job stops** (:class:`~.worker.JobFailure`: out of memory, a device
  error, every record of a buffer failing, a worker process killed): nothing of
  the current buffer is written, so ``resume`` continues with nothing lost.
* ``n_process > 1`` (CPU): spawned worker processes, one torch thread each, each
  with its own copy of the pipeline; a bounded number of buffers in flight.
"""
import hashlib
import json
import os
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import (TYPE_CHECKING, Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple,
                    Union)

from ..types import AnnotatedRecord, BadRecord, Record
from .formats import OUTPUT_FORMATS, Writer, error_line, read_records
from .worker import (PIPELINE_FAILED, RESUME_HINT, JobFailure, MissingScoresError, TextEntities,  # noqa: F401
                     annotate_records, annotate_texts, for_retry, init_worker, peak_rss_mib, prepare_pipeline,
                     run_buffer, work)

if TYPE_CHECKING:
    from concurrent.futures import Future

#: What the peak RSS figure measures, per backend.
RSS_LOCAL = "this process"
RSS_WORKERS = "the largest of this process and its workers"
RSS_ACTORS = "the largest Ray actor"
RSS_DRIVER = "the Ray driver (no actor ran)"


@dataclass
class AnnotateStats:
    """What an ``annotate`` run did (printed at the end, and returned).

    retried (int): with ``retry_errors``, the error file's records found in INPUT and annotated again
        (``documents`` of them succeeded, ``errors`` still fail); ``not_found``: those INPUT no longer has.
    settled (int): records an interrupted ``retry_errors`` run had written to OUTPUT, removed from the
        error file at this start.
    peak_rss_of (str): whose peak RSS ``peak_rss_mib`` is.
    """

    documents: int = 0
    passages: int = 0
    words: int = 0
    entities: int = 0
    errors: int = 0
    skipped: int = 0
    retried: int = 0
    not_found: int = 0
    settled: int = 0
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    peak_rss_of: str = RSS_LOCAL
    labels: Dict[str, int] = field(default_factory=dict)

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.seconds if self.seconds else 0.0

    @property
    def words_per_second(self) -> float:
        return self.words / self.seconds if self.seconds else 0.0

    def to_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "docs_per_second": self.docs_per_second, "words_per_second": self.words_per_second}


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
    keys: "Counter[str]" = Counter()
    for line in _error_lines(path):
        obj = json.loads(line)
        keys[obj["id"] if obj.get("id") is not None else obj["source"]] += 1
    return keys


def _error_lines(path: Path) -> List[str]:
    """The complete lines of an error file (a line cut off by a kill is removed from the file)."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return [line + "\n" for line in data[:end].decode("utf8").splitlines() if line.strip()]


def default_errors_path(output: Path) -> Path:
    return output.with_name(output.name + ".errors.jsonl")


PUBTATOR_ID_CHARS = "|\t\n\r"


def writable_ids(records: Iterable[Union[Record, BadRecord]]) -> Iterator[Union[Record, BadRecord]]:
    """Records whose id PubTator can hold; the others become bad records (``id|t|`` is how PubTator reads:
    an id of one character at least, without ``|``, tab or newline; else resume could not find it)."""
    for record in records:
        if isinstance(record, Record) and (not record.id or any(c in record.id for c in PUBTATOR_ID_CHARS)):
            what = "is empty" if not record.id else "holds a '|', a tab or a newline"
            yield BadRecord(source=record.source, id=record.id,
                            error=f"its id {what}, which PubTator output cannot hold "
                                  "(choose another --output-format or --id-field)")
        else:
            yield record


class ErrorFileRetry:
    """The error file's records to annotate again (``--retry-errors``), and the file rewritten as they go.

    Records are matched on their source and id; each one annotated leaves the file, each one that still
    fails (or is still bad input) keeps its place with the new reason.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: List[Optional[str]] = list(_error_lines(path))
        self.places: Dict[Tuple[str, Optional[str]], Deque[int]] = {}
        for i, line in enumerate(self.lines):
            obj = json.loads(line)  # type: ignore[arg-type]
            self.places.setdefault((obj["source"], obj.get("id")), deque()).append(i)
        self.wanted = Counter({key: len(places) for key, places in self.places.items()})

    def select(self, records: Iterable[Union[Record, BadRecord]]) -> Iterator[Union[Record, BadRecord]]:
        """The records of INPUT that the error file holds (as many times as it holds each)."""
        for record in records:
            key = (record.source, record.id)
            if self.wanted[key] > 0:
                self.wanted[key] -= 1
                yield record

    @property
    def not_found(self) -> int:
        return sum(self.wanted.values())

    def settle(self, result: Union[AnnotatedRecord, BadRecord]) -> None:
        """Record the outcome of one retried record (annotated: its line goes; still bad: the new reason)."""
        place = self.places[(result.source, result.id)].popleft()
        self.lines[place] = error_line(result) if isinstance(result, BadRecord) else None

    def digest(self) -> str:
        """What the error file holds now (see :func:`settle_interrupted_retry`)."""
        return _digest(self.path)

    def save(self) -> None:
        """Rewrite the error file (atomically: a temporary file, then rename)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf8") as f:
            f.writelines(line for line in self.lines if line is not None)
        os.replace(tmp, self.path)


def retry_journal_path(errors: Path) -> Path:
    """The note a ``retry_errors`` run keeps beside the error file while a buffer is written."""
    return errors.with_name(errors.name + ".retrying")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def begin_retry_journal(path: Path, *, output_records: int, records: List[Tuple[str, str]], errors_sha256: str) -> None:
    """Note, durably, that ``records`` are about to be appended to OUTPUT after its first ``output_records``
    records, while the error file (``errors_sha256``) still holds them."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf8") as f:
        json.dump({"output_records": output_records, "records": records, "errors_sha256": errors_sha256}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def end_retry_journal(path: Path) -> None:
    """The error file has let the buffer's records go: the note is done with."""
    path.unlink(missing_ok=True)


def settle_interrupted_retry(errors: Path, done: List[str]) -> int:
    """Finish a ``retry_errors`` buffer a kill cut off between OUTPUT and the error file.

    The note (:func:`retry_journal_path`) is written before the buffer's records go to OUTPUT and removed
    after the error file lets them go. If it is there and the error file is as it was when it was written,
    the records OUTPUT holds after the noted count are that buffer's first ones: they leave the error file
    (annotated, not to be annotated again); the buffer's others stay in it (retried again). If the error
    file changed, it was saved after the buffer: there is nothing left to do.

    errors (Path): the error file.
    done (List[str]): ids of the complete records in OUTPUT, in order (:attr:`Writer.done`).
    RETURNS (int): how many records left the error file. ValueError when OUTPUT does not end as noted.
    """
    journal = retry_journal_path(errors)
    if not journal.exists():
        return 0
    try:
        note = json.loads(journal.read_text(encoding="utf8"))
        before, records, digest = note["output_records"], note["records"], note["errors_sha256"]
    except (ValueError, KeyError, TypeError):
        end_retry_journal(journal)  # written atomically: never half a note; not ours, and nothing to settle
        return 0
    if _digest(errors) != digest:
        end_retry_journal(journal)
        return 0
    written = done[before:]
    if len(done) < before or len(written) > len(records) or written != [r[1] for r in records[:len(written)]]:
        raise ValueError(f"{journal}: OUTPUT does not end as the interrupted --retry-errors run left it "
                         f"({len(done)} records, {before} before its last buffer of {len(records)}); check OUTPUT "
                         "and the error file, then delete this file")
    if written:
        retry = ErrorFileRetry(errors)
        for source, doc_id in records[:len(written)]:
            retry.settle(AnnotatedRecord(id=doc_id, source=source, passages=[], entities=[]))
        retry.save()
    end_retry_journal(journal)
    return len(written)


def annotate(model: Union[str, Path], input_path: Path, output: Path, *, fmt: Optional[str] = None,
             output_format: str = "jsonl", id_field: str = "id", text_field: str = "text", resume: bool = False,
             errors: Optional[Path] = None, batch_size: int = 64, buffer_size: int = 1024, n_process: int = 1,
             gpu_id: int = -1, length_buckets: float = 0.8, int8: bool = False, max_chars: int = 1_000_000,
             progress: bool = True, on_buffer: Optional[Callable[[AnnotateStats], None]] = None,
             backend: str = "local", address: Optional[str] = None, gpus_per_actor: float = 0.0,
             shard_size: int = 2000, min_confidence: Optional[float] = None,
             retry_errors: bool = False, runtime: str = "torch") -> AnnotateStats:
    """Annotate every record of INPUT with a trained pipeline, streaming, into OUTPUT.

    model (Union[str, Path]): pipeline folder or installed package.
    input_path (Path): file or folder (text, JSONL, PubTator, BioC; ``.gz`` too).
    output (Path): output file (JSONL, PubTator or BioC).
    fmt (Optional[str]): input format; None infers it from suffixes.
    output_format (str): jsonl, pubtator or bioc.
    id_field (str): JSONL id key. text_field (str): JSONL text key.
    resume (bool): continue a killed or stopped job: skip what OUTPUT and the error file hold.
    errors (Optional[Path]): error file (default: OUTPUT + ``.errors.jsonl``).
    batch_size (int): texts per ``nlp.pipe`` batch. buffer_size (int): records per buffer (flush unit).
    n_process (int): worker processes (CPU only). gpu_id (int): GPU index, -1 for CPU.
    length_buckets (float): see :mod:`spacy_bioner.models.buckets`. int8 (bool): int8 CPU inference.
    max_chars (int): longer documents go to the error file.
    progress (bool): show a progress bar. on_buffer: called with the running stats after each buffer.
    backend (str): ``local`` (this machine, streaming) or ``ray`` (Ray Data, sharded; see
        :mod:`.ray_backend`; ``n_process`` actors). address (Optional[str]): Ray cluster address.
    gpus_per_actor (float): GPUs per Ray actor. shard_size (int): records per Ray shard.
    min_confidence (Optional[float]): drop entities scored below it (pipelines that set entity scores only:
        with one that sets none it is a one-line error).
    retry_errors (bool): annotate the error file's records again (read from INPUT): those annotated are
        appended to OUTPUT and leave the error file, the others stay in it with their new reason.
    runtime (str): ``torch``, ``onnx`` or ``auto`` (see :mod:`spacy_bioner.models.onnx_runtime`); every
        worker and Ray actor runs the same one, from one cached graph.
    RETURNS (AnnotateStats): counts, seconds, words/s, peak RSS. A failure of the job (not of a record)
        is a :class:`~.worker.JobFailure`, after OUTPUT and the error file are flushed; it says to continue
        with ``--resume``, or with ``--retry-errors`` when retrying.
    """
    from tqdm import tqdm

    if n_process > 1 and gpu_id >= 0 and backend == "local":
        raise ValueError("--n-process > 1 is for CPU; on a GPU use one process and a larger --batch-size")
    if int8 and gpu_id >= 0:
        raise ValueError("--int8 is for CPU inference; drop it with --gpu-id (or use mixed precision)")
    from ..models.buckets import check_ratio

    check_ratio(length_buckets)
    from ..models.onnx_runtime import RUNTIMES

    if runtime not in RUNTIMES:
        raise ValueError(f"--runtime {runtime}: choose one of {', '.join(RUNTIMES)}")
    if backend not in ("local", "ray"):
        raise ValueError(f"--backend {backend}: choose local or ray")
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"--output-format {output_format}: choose one of {', '.join(OUTPUT_FORMATS)}")
    if batch_size < 1 or buffer_size < 1 or n_process < 1:
        raise ValueError("--batch-size, --buffer-size and --n-process must be at least 1")
    if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
        raise ValueError(f"--min-confidence {min_confidence}: a confidence is between 0 and 1")
    errors = errors or default_errors_path(output)
    if retry_errors and backend == "ray":
        raise ValueError("--retry-errors runs on this machine (the records to retry are few): drop --backend ray")
    if retry_errors and not errors.exists():
        raise FileNotFoundError(f"{errors}: no error file to retry (name it with --errors)")
    from .ray_backend import shard_folder

    records: Iterable[Union[Record, BadRecord]] = read_records(
        input_path, fmt=fmt, id_field=id_field, text_field=text_field, max_chars=max_chars,
        exclude=(output, errors, shard_folder(output), retry_journal_path(errors),
                 retry_journal_path(errors).with_name(retry_journal_path(errors).name + ".tmp"),
                 errors.with_name(errors.name + ".tmp")))
    if output_format == "pubtator":
        records = writable_ids(records)
    settings = dict(gpu_id=gpu_id, length_buckets=length_buckets, int8=int8, max_chars=max_chars, runtime=runtime)
    if not resume and not retry_errors:  # before loading anything
        for path in (output, errors):
            if path.exists() and path.stat().st_size:
                raise FileExistsError(f"{path} exists: pass --resume to continue the job, or choose a new OUTPUT")
        end_retry_journal(retry_journal_path(errors))  # a stale note of files since deleted
    if backend == "ray":
        if gpus_per_actor:
            settings["gpu_id"] = 0  # Ray gives each actor its own GPU(s), visible as device 0
        return _annotate_on_ray(model, records, output, settings=settings, output_format=output_format,
                                errors=errors, resume=resume, batch_size=batch_size, shard_size=shard_size,
                                actors=n_process, gpus_per_actor=gpus_per_actor, address=address,
                                min_confidence=min_confidence)
    runner = _Runner(model, settings, n_process=n_process, batch_size=batch_size, min_confidence=min_confidence,
                     all_failing_stops=not retry_errors)
    writer = Writer(output, output_format, resume=resume or retry_errors)
    stats = AnnotateStats(peak_rss_of=RSS_LOCAL if n_process == 1 else RSS_WORKERS)
    if resume or retry_errors:  # before the error file is read (or appended to)
        stats.settled = settle_interrupted_retry(errors, writer.done)
    retry = ErrorFileRetry(errors) if retry_errors else None
    journal = retry_journal_path(errors)
    written = len(writer.done)  # records in OUTPUT
    if retry is not None:
        todo = buffers(retry.select(records), buffer_size)
    else:
        # What OUTPUT and the error file hold, per key and count: the n-th record with a repeated id is
        # skipped only if n records with that id were done (ids repeat in PubMed baseline + update files).
        done = Counter(writer.done)
        if resume:
            done.update(read_error_keys(errors))
        todo = _not_done(records, done, buffer_size, stats)
    err_file = open(errors, "a", encoding="utf8") if retry is None else None
    bar = None
    results_by_buffer = runner.map(todo)
    start = time.perf_counter()  # words/s and docs/s count annotation, not loading the pipeline
    try:
        bar = tqdm(desc="retrying" if retry else "annotating", unit="doc", disable=not progress or None,
                   dynamic_ncols=True)
        for results, words in results_by_buffer:
            annotated = [(r.source, r.id) for r in results if not isinstance(r, BadRecord)]
            if retry is not None and annotated:  # before OUTPUT gets them, while the error file holds them
                begin_retry_journal(journal, output_records=written, records=annotated,
                                    errors_sha256=retry.digest())
            written += len(annotated)
            for result in results:
                if isinstance(result, BadRecord):
                    if err_file is not None:
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
            if err_file is not None:
                err_file.flush()
            if retry is not None:
                os.fsync(writer.file.fileno())  # OUTPUT holds them before the error file lets them go
                for result in results:
                    retry.settle(result)
                retry.save()
                if annotated:
                    end_retry_journal(journal)
                stats.retried += len(results)
            stats.seconds = time.perf_counter() - start
            bar.update(len(results))
            bar.set_postfix_str(f"{stats.words_per_second:,.0f} words/s, {stats.errors} errors")
            if on_buffer is not None:
                on_buffer(stats)
    except JobFailure as err:
        if retry is None:
            raise
        raise for_retry(err) from None  # --resume would skip the error file's records, those to retry too
    finally:
        results_by_buffer.close()  # stops the workers at once when the job stops
        if bar is not None:
            bar.close()
        if err_file is not None:
            err_file.close()
        writer.close()
    if retry is not None:
        stats.not_found = retry.not_found
    stats.seconds = time.perf_counter() - start
    stats.peak_rss_mib = peak_rss_mib()
    return stats


def _not_done(records: Iterable[Union[Record, BadRecord]], done: "Counter[str]", buffer_size: int,
              stats: AnnotateStats) -> Iterator[List[Union[Record, BadRecord]]]:
    """Buffers of the records OUTPUT and the error file do not hold yet (``stats.skipped`` counts the others)."""
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


def _annotate_on_ray(model: Union[str, Path], records: Iterable[Union[Record, BadRecord]], output: Path,
                     **kwargs: Any) -> AnnotateStats:
    from .ray_backend import annotate_ray, require_ray

    require_ray()
    start = time.perf_counter()
    counts = annotate_ray(model, records, output, **kwargs)
    actors = counts.get("peak_rss_mib")
    return AnnotateStats(documents=counts["documents"], entities=counts["entities"], errors=counts["errors"],
                         words=counts["words"], seconds=time.perf_counter() - start,
                         peak_rss_mib=actors if actors else peak_rss_mib(children=False),
                         peak_rss_of=RSS_ACTORS if actors else RSS_DRIVER)


WORKER_DIED = ("a worker process died (killed by the OS, e.g. out of memory?): nothing of its buffer was "
               f"written; {RESUME_HINT} (fewer --n-process or a lower --buffer-size use less memory)")


class _Runner:
    """Runs buffers in this process, or in spawned workers with a bounded number in flight."""

    def __init__(self, model: Union[str, Path], settings: Dict[str, Any], *, n_process: int, batch_size: int,
                 min_confidence: Optional[float] = None, all_failing_stops: bool = True) -> None:
        self.model, self.settings, self.n_process, self.batch_size = model, settings, n_process, batch_size
        self.options = (min_confidence, all_failing_stops)
        self.nlp = prepare_pipeline(model, **settings) if n_process == 1 else None

    def map(self, todo: Iterable[List[Union[Record, BadRecord]]]) -> Iterator[Tuple[list, int]]:
        """Results (annotated or bad records, in input order) and word counts, buffer by buffer, in order.

        A worker process that dies (killed by the OS) is a :class:`JobFailure`, never a wait for ever.
        """
        if self.nlp is not None:
            for buffer in todo:
                yield run_buffer(self.nlp, buffer, self.batch_size, *self.options)
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(self.n_process, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=init_worker, initargs=(str(self.model), self.settings))
        finished = False
        try:
            pending: Deque["Future"] = deque()
            for buffer in todo:
                pending.append(self._submit(pool, buffer))
                if len(pending) >= 2 * self.n_process:
                    yield self._result(pending.popleft())
            while pending:
                yield self._result(pending.popleft())
            finished = True
        finally:
            # A stopped job does not wait for the buffers still in flight (their results are dropped).
            pool.shutdown(wait=finished, cancel_futures=not finished)

    def _submit(self, pool: Any, buffer: List[Union[Record, BadRecord]]) -> "Future":
        from concurrent.futures.process import BrokenProcessPool

        try:
            return pool.submit(work, buffer, self.batch_size, *self.options)
        except BrokenProcessPool:
            raise JobFailure(WORKER_DIED) from None

    @staticmethod
    def _result(future: "Future") -> Tuple[list, int]:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return future.result()
        except BrokenProcessPool:
            raise JobFailure(WORKER_DIED) from None
