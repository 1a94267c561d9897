"""``annotate --backend ray``: the same job on Ray Data, resumable by shard.

1. The driver streams INPUT once into shards of ``shard_size`` records
   (``OUTPUT.shards/input-NNNNN.jsonl``; bad records go straight to the error
   file) and writes ``manifest.json`` when every record is sharded.
2. Ray Data runs ``map_batches`` over the shard list with an actor pool
   (``ActorPoolStrategy``): each actor loads the pipeline once (one GPU per
   actor when ``gpus_per_actor`` > 0), annotates a shard and writes
   ``output-NNNNN.jsonl`` / ``errors-NNNNN.jsonl`` atomically (temporary file,
   then rename). A shard whose output exists is never redone, so a killed job
   resumes shard by shard. Each actor reports its peak RSS; the job's figure is
   the largest.
3. The driver concatenates the shard outputs in order into OUTPUT (in the
   requested format) and the shard errors into the error file.

A failure of the job (see :mod:`.worker`: out of memory, a device error, an
actor that died) stops it with a :class:`~.worker.JobFailure` of one line; the
finished shards are kept, so ``resume`` continues.

Local Ray by default; ``address`` joins a cluster (``ray://host:10001`` or
``auto``): the shard folder must then be on storage every node sees. Ray is an
optional extra: ``pip install "spacy-bioner[ray]"``.
"""
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Union

from ..types import AnnotatedRecord, BadRecord, Passage, Record
from .formats import Writer, error_line
from .worker import JobFailure, annotate_records, first_line, peak_rss_mib, prepare_pipeline

RAY_HINT = 'the ray backend needs Ray: pip install "spacy-bioner[ray]" (or pip install "ray[data]")'


def require_ray():
    """Import Ray, or a one-line ImportError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise ImportError(RAY_HINT) from None
    return ray


def shard_folder(output: Path) -> Path:
    return output.with_name(output.name + ".shards")


def record_to_json(record: Union[Record, AnnotatedRecord]) -> Dict[str, Any]:
    out = {"id": record.id, "source": record.source,
           "passages": [{"offset": p.offset, "text": p.text, "infons": p.infons} for p in record.passages]}
    if isinstance(record, AnnotatedRecord):
        out["entities"] = [list(e) for e in record.entities]
        if record.scores is not None:
            out["scores"] = record.scores
    return out


def record_from_json(obj: Dict[str, Any]) -> Union[Record, AnnotatedRecord]:
    passages = [Passage(offset=p["offset"], text=p["text"], infons=p.get("infons") or {}) for p in obj["passages"]]
    if "entities" in obj:
        return AnnotatedRecord(id=obj["id"], source=obj["source"], passages=passages,
                               entities=[tuple(e) for e in obj["entities"]],  # type: ignore[misc]
                               scores=obj.get("scores"))
    return Record(id=obj["id"], source=obj["source"], passages=passages)


def write_atomic(path: Path, lines: List[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf8") as f:
        f.writelines(lines)
    os.replace(tmp, path)


def make_shards(records: Iterable[Union[Record, BadRecord]], folder: Path, *, shard_size: int) -> List[str]:
    """Write INPUT as shards (once: an existing manifest is reused) and return their names."""
    manifest = folder / "manifest.json"
    if manifest.exists():
        return json.loads(manifest.read_text(encoding="utf8"))["shards"]
    folder.mkdir(parents=True, exist_ok=True)
    names: List[str] = []
    lines: List[str] = []
    bad: List[str] = []

    def flush() -> None:
        name = f"{len(names):05d}"
        write_atomic(folder / f"input-{name}.jsonl", lines)
        write_atomic(folder / f"readerrors-{name}.jsonl", bad)
        names.append(name)

    for record in records:
        if isinstance(record, BadRecord):
            bad.append(error_line(record))
        else:
            lines.append(json.dumps(record_to_json(record), ensure_ascii=False) + "\n")
        if len(lines) + len(bad) >= shard_size:
            flush()
            lines, bad = [], []
    if lines or bad or not names:
        flush()
    write_atomic(manifest, [json.dumps({"shards": names})])
    return names


class ShardAnnotator:
    """A Ray actor: holds the pipeline, annotates whole shards."""

    def __init__(self, model: str, settings: Dict[str, Any], folder: str, batch_size: int,
                 min_confidence: Optional[float] = None) -> None:
        # A pipeline that cannot load is raised by the first call, where Ray keeps the exception (an error
        # in the constructor only reaches the driver as the text of an ActorDiedError).
        self.error: Optional[Exception] = None
        try:
            self.nlp = prepare_pipeline(model, **settings)
        except Exception as err:  # noqa: BLE001
            self.error = err
        self.folder, self.batch_size, self.min_confidence = Path(folder), batch_size, min_confidence

    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        if self.error is not None:
            raise self.error
        names = [str(n) for n in batch["shard"]]
        words_out, docs_out = [], []
        for name in names:
            out_path = self.folder / f"output-{name}.jsonl"
            if out_path.exists():  # done by an earlier (killed) run
                words_out.append(0)
                docs_out.append(0)
                continue
            text = (self.folder / f"input-{name}.jsonl").read_text(encoding="utf8")
            records = [record_from_json(json.loads(line)) for line in text.splitlines() if line.strip()]
            results, words = (annotate_records(self.nlp, records, batch_size=self.batch_size,
                                               min_confidence=self.min_confidence) if records else ([], 0))
            good = [json.dumps(record_to_json(r), ensure_ascii=False) + "\n"
                    for r in results if isinstance(r, AnnotatedRecord)]
            bad = [error_line(r) for r in results if isinstance(r, BadRecord)]
            write_atomic(self.folder / f"errors-{name}.jsonl", bad)
            write_atomic(out_path, good)  # last: its existence marks the shard done
            words_out.append(words)
            docs_out.append(len(good))
        rss = peak_rss_mib(children=False)  # this actor's own peak
        return {"shard": names, "words": words_out, "documents": docs_out, "peak_rss_mib": [rss] * len(names)}


def annotate_ray(model: Union[str, Path], records: Iterable[Union[Record, BadRecord]], output: Path, *,
                 settings: Dict[str, Any], output_format: str, errors: Path, resume: bool, batch_size: int,
                 shard_size: int = 2000, actors: int = 1, gpus_per_actor: float = 0.0,
                 address: Optional[str] = None, min_confidence: Optional[float] = None) -> Dict[str, Any]:
    """Annotate INPUT's records on Ray Data (see the module docs).

    model (Union[str, Path]): pipeline folder or installed package (each actor loads it).
    records (Iterable): INPUT's records, read lazily (sharded once; unread with ``resume`` and a manifest).
    output (Path): OUTPUT; its shards go to :func:`shard_folder`.
    settings (Dict[str, Any]): :func:`~.worker.prepare_pipeline`'s settings.
    output_format (str): jsonl, pubtator or bioc. errors (Path): the error file.
    resume (bool): keep finished shards. batch_size (int): texts per ``nlp.pipe`` batch.
    shard_size (int): records per shard. actors (int): actor pool size. gpus_per_actor (float): GPUs each.
    address (Optional[str]): cluster address (None: local Ray). min_confidence: see :func:`~.worker.doc_entities`.
    RETURNS (Dict[str, Any]): counts for the caller's stats; ``peak_rss_mib`` is the largest actor's
        (None when no shard was left to run).
    """
    ray = require_ray()
    folder = shard_folder(output)
    if not resume and folder.exists():
        for stale in folder.iterdir():
            stale.unlink()
    names = make_shards(records, folder, shard_size=shard_size)
    todo = [n for n in names if not (folder / f"output-{n}.jsonl").exists()]
    words = 0
    peak: Optional[float] = None
    if todo:
        started = False
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True, **({} if address else {"num_cpus": max(actors, 1)}))
            started = True
        context = ray.data.DataContext.get_current()
        # What an actor raised reaches the driver (else Ray Data's UserCodeException, without its cause).
        original = getattr(context, "raise_original_map_exception", None)
        if original is not None:
            context.raise_original_map_exception = True
        try:
            from ray.data import ActorPoolStrategy

            ds = ray.data.from_items([{"shard": n} for n in todo])
            done = ds.map_batches(ShardAnnotator, batch_size=1, compute=ActorPoolStrategy(size=actors),
                                  fn_constructor_kwargs={"model": str(model), "settings": settings,
                                                         "folder": str(folder.resolve()), "batch_size": batch_size,
                                                         "min_confidence": min_confidence},
                                  num_gpus=gpus_per_actor or None, num_cpus=1)
            try:
                for row in done.iter_rows():
                    words += int(row["words"])
                    peak = max(peak or 0.0, float(row["peak_rss_mib"]))
            except Exception as err:  # noqa: BLE001 - Ray wraps what the actor raised
                raise ray_failure(err) from None
        finally:
            if original is not None:
                context.raise_original_map_exception = original
            if started:
                ray.shutdown()
    # Merge: OUTPUT and the error file are rebuilt from the shards, in input order.
    n_docs = n_entities = n_errors = 0
    for path in (output, errors):
        if path.exists():
            path.unlink()
    writer = Writer(output, output_format, resume=False)
    try:
        with open(errors, "w", encoding="utf8") as err_file:
            for name in names:
                for kind in ("readerrors", "errors"):
                    shard_errors = folder / f"{kind}-{name}.jsonl"
                    if shard_errors.exists():
                        text = shard_errors.read_text(encoding="utf8")
                        err_file.write(text)
                        n_errors += text.count("\n")
                for line in (folder / f"output-{name}.jsonl").read_text(encoding="utf8").splitlines():
                    if line.strip():
                        record = record_from_json(json.loads(line))
                        writer.write(record)  # type: ignore[arg-type]
                        n_docs += 1
                        n_entities += len(record.entities)  # type: ignore[union-attr]
    finally:
        writer.close()
    return {"documents": n_docs, "entities": n_entities, "errors": n_errors, "words": words,
            "shards": len(names), "shards_run": len(todo), "peak_rss_mib": peak}


def ray_failure(err: BaseException) -> Exception:
    """What to raise for an error out of Ray: what the actor raised if it is one of ours and says it
    all in one line (JobFailure, a pipeline that cannot load, --min-confidence without scores), else a
    :class:`JobFailure` naming the innermost cause."""
    from ..errors import ModelLoadError
    from .worker import MissingScoresError

    seen = set()
    current: Optional[BaseException] = err
    innermost = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        cause = getattr(current, "cause", None)
        if isinstance(cause, BaseException):  # Ray's RayTaskError: what the actor raised is its cause
            current = cause
            continue
        for kind in (JobFailure, ModelLoadError, MissingScoresError):
            if isinstance(current, kind):
                return kind((str(current).strip().splitlines() or [kind.__name__])[0])
        innermost = current
        current = current.__cause__ or current.__context__
    return JobFailure(f"the Ray job failed ({first_line(innermost)}); finished shards are kept: fix the cause and "
                      "continue with --resume")
