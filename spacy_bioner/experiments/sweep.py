"""Sweeps: a grid of training runs (model × any dotted config key × seeds), each
recorded in ``OUTPUT/sweep.jsonl`` the moment it ends, resumable after a kill.

A grid file (YAML or JSON)::

    corpus:                       # paths are relative to the working directory
      name: MTL-NCBI-disease-IOB  # for the report and the model card
      train: corpus/MTL-NCBI-disease-IOB/train.spacy
      dev: corpus/MTL-NCBI-disease-IOB/dev.spacy
      test: corpus/MTL-NCBI-disease-IOB/test.spacy
    base: transformer             # default base config of every model
    overrides: {training.max_steps: 300}        # fixed for every run
    seeds: [0, 1]                 # each cell once per seed (system.seed)
    grid:                         # every combination, for every model
      training.batcher.size: [16, 32]
      training.optimizer.learn_rate.initial_rate: [1.0e-5, 1.0e-4, 1.0e-3]
    models:                       # name → base / backbone / head / overrides / grid
      minilm: {backbone: minilm}
      biobert: {backbone: biobert}

``grid`` and ``overrides`` take dotted config keys, plus ``head`` (``ner`` or
``tagger``) and ``adversarial`` (``fgsm``, ``pgd`` or ``none``). A model's own
``grid`` and ``overrides`` are merged over the top-level ones (its keys win).
``backbones: [minilm, biobert]`` is short for ``models`` with one backbone each.

Each run trains in its own process (``python -m spacy_bioner.experiments.runs``,
see :mod:`.runs`), so a crash, a kill or a memory blow-up ends that run only, and its peak RSS is
its own. Its record: ``run_id``, ``status`` (``ok`` | ``failed`` | ``diverged``),
``params``, dev and test P/R/F1 (test is never used to select), steps, epochs,
wall seconds, train words/s, peak RSS, peak GPU memory and, if it failed, its
error. A run that learns nothing (dev F1 at or below ``diverged_f1``, default 0,
or a non-finite loss) is ``diverged``.
"""
import contextlib
import csv
import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from ..errors import ConfigValueError
from .runs import SEED_KEY, STATUSES, RunSpec, execute_run

RESULTS = "sweep.jsonl"
RESULTS_CSV = "sweep.csv"
TOP_KEYS = {"name", "corpus", "base", "backbone", "head", "adversarial", "overrides", "grid", "seeds", "models",
            "backbones", "diverged_f1", "gpu_id"}
MODEL_KEYS = {"base", "backbone", "head", "adversarial", "overrides", "grid"}
CSV_COLUMNS = ["run_id", "status", "model", "seed", "learn_rate", "batch_size", "dev_p", "dev_r", "dev_f", "test_p",
               "test_r", "test_f", "steps", "epochs", "wall_seconds", "train_words_per_second", "peak_rss_mib",
               "peak_gpu_mib", "params", "error"]


@dataclass
class Grid:
    """A parsed grid file."""

    path: str
    name: str
    corpus: Dict[str, Any]
    models: Dict[str, Dict[str, Any]]
    seeds: List[int]
    diverged_f1: float = 0.0
    runs: List[RunSpec] = field(default_factory=list)


def _as_list(value: Any, *, key: str, where: str) -> List[Any]:
    if isinstance(value, (list, tuple)):
        if not value:
            raise ConfigValueError(f"{where}: {key} is an empty list (give at least one value)")
        return list(value)
    return [value]


def _mapping(value: Any, *, key: str, where: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigValueError(f"{where}: {key} must be a mapping of dotted config keys to values, "
                               f"not {type(value).__name__}")
    return dict(value)


def read_grid_file(path: Path) -> Dict[str, Any]:
    """The grid file as a dict (YAML, or JSON by extension); one-line errors."""
    import srsly

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such grid file")
    try:
        data = srsly.read_json(path) if path.suffix == ".json" else srsly.read_yaml(path)
    except Exception as err:  # ruamel / json errors span several lines
        raise ConfigValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'YAML'}: "
                               f"{' '.join(str(err).split())[:300]}") from None
    if not isinstance(data, dict):
        raise ConfigValueError(f"{path}: a grid file is a mapping (corpus, models, grid, seeds…)")
    return data


def load_grid(path: Path) -> Grid:
    """Parse and expand a grid file into its runs.

    path (Path): YAML (``.yml``/``.yaml``) or JSON grid file.
    RETURNS (Grid): with ``runs`` in a stable order (model, then the grid's order, seed last).
    """
    data = read_grid_file(path)
    where = str(path)
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigValueError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(TOP_KEYS))})")
    corpus = _mapping(data.get("corpus"), key="corpus", where=where)
    for split in ("train", "dev"):
        if not corpus.get(split):
            raise ConfigValueError(f"{where}: corpus.{split} is not set (a .spacy DocBin or an IOB/CoNLL file)")
        if not Path(str(corpus[split])).exists():
            raise FileNotFoundError(f"{where}: corpus.{split}: {corpus[split]} not found "
                                    "(paths are relative to the working directory)")
    if corpus.get("test") and not Path(str(corpus["test"])).exists():
        raise FileNotFoundError(f"{where}: corpus.test: {corpus['test']} not found")
    corpus.setdefault("name", Path(str(corpus["train"])).parent.name)
    models = _mapping(data.get("models"), key="models", where=where)
    for backbone in data.get("backbones") or []:
        models.setdefault(Path(str(backbone)).stem, {"backbone": str(backbone)})
    if not models:
        models = {Path(str(data.get("backbone") or data.get("base") or "transformer")).stem: {}}
    top_grid = _mapping(data.get("grid"), key="grid", where=where)
    top_fixed = _mapping(data.get("overrides"), key="overrides", where=where)
    seeds = [int(s) for s in _as_list(data.get("seeds", [0]), key="seeds", where=where)]
    diverged_f1 = float(data.get("diverged_f1", 0.0))
    grid = Grid(path=str(path), name=str(data.get("name") or path.stem), corpus=corpus, models={}, seeds=seeds,
                diverged_f1=diverged_f1)
    for name, model in models.items():
        model = _mapping(model, key=f"models.{name}", where=where)
        bad = sorted(set(model) - MODEL_KEYS)
        if bad:
            raise ConfigValueError(f"{where}: models.{name}: unknown key(s) {', '.join(bad)} "
                                   f"(known: {', '.join(sorted(MODEL_KEYS))})")
        merged = {
            "base": str(model.get("base") or data.get("base") or "transformer"),
            "backbone": model.get("backbone", data.get("backbone")),
            "head": model.get("head", data.get("head")),
            "adversarial": model.get("adversarial", data.get("adversarial")),
            "overrides": {**top_fixed, **_mapping(model.get("overrides"), key=f"models.{name}.overrides", where=where)},
            "grid": {**top_grid, **_mapping(model.get("grid"), key=f"models.{name}.grid", where=where)},
        }
        if SEED_KEY in merged["grid"]:
            raise ConfigValueError(f"{where}: give seeds as `seeds: [...]`, not as a grid key ({SEED_KEY})")
        grid.models[str(name)] = merged
        grid.runs.extend(expand_model(str(name), merged, corpus=corpus, seeds=seeds, diverged_f1=diverged_f1,
                                      where=where))
    ids = [r.run_id for r in grid.runs]
    if len(set(ids)) != len(ids):
        raise ConfigValueError(f"{where}: the grid lists the same run twice (duplicate values in a list?)")
    return grid


def expand_model(name: str, model: Dict[str, Any], *, corpus: Dict[str, Any], seeds: Sequence[int],
                 diverged_f1: float, where: str) -> List[RunSpec]:
    """Every combination of the model's grid values, once per seed."""
    keys = list(model["grid"])
    values = [_as_list(model["grid"][k], key=f"grid.{k}", where=where) for k in keys]
    runs = []
    for combo in product(*values):
        for seed in seeds:
            params = {**dict(zip(keys, combo)), SEED_KEY: seed}
            spec = RunSpec(run_id="", model=name, base=model["base"],
                           backbone=None if model["backbone"] is None else str(model["backbone"]),
                           head=None if model["head"] is None else str(model["head"]),
                           adversarial=None if model["adversarial"] is None else str(model["adversarial"]),
                           params=params, fixed=dict(model["overrides"]), train=str(corpus["train"]),
                           dev=str(corpus["dev"]), test=str(corpus["test"]) if corpus.get("test") else None,
                           corpus=str(corpus["name"]), diverged_f1=diverged_f1)
            spec.run_id = make_run_id(spec)
            runs.append(spec)
    return runs


def _short(key: str) -> str:
    last = key.split(".")[-1]
    return {"initial_rate": "lr", "learn_rate": "lr", "size": "bs", "seed": "seed"}.get(last, last)


def make_run_id(spec: RunSpec) -> str:
    """``model_bs16_lr1e-05_seed0_3fa2c1``: readable values plus a hash of the whole spec.

    The same grid gives the same ids on every start; changing anything the run
    depends on (a fixed override, a config file, the corpus) gives new ones.
    """
    described = {k: v for k, v in spec.to_dict().items() if k != "run_id"}
    digest = hashlib.sha1(json.dumps(described, sort_keys=True, default=str).encode("utf8")).hexdigest()[:6]
    parts = [spec.model] + [f"{_short(k)}{v}" for k, v in spec.params.items()]
    readable = re.sub(r"[^A-Za-z0-9.+_-]+", "-", "_".join(str(p) for p in parts))[:80].strip("-_")
    return f"{readable}_{digest}"


# ---------------------------------------------------------------- results file


class SweepResults:
    """``sweep.jsonl`` (one record per finished run, appended and synced) and ``sweep.csv``.

    A line cut short by a kill is dropped when the file is opened again.
    """

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = output_dir
        self.path = output_dir / RESULTS
        self.csv_path = output_dir / RESULTS_CSV

    def load(self) -> Dict[str, Dict[str, Any]]:
        """Finished runs by ``run_id`` (the last record wins)."""
        if not self.path.exists():
            return {}
        raw = self.path.read_bytes()
        if raw and not raw.endswith(b"\n"):  # killed mid-write: drop the partial line
            raw = raw[: raw.rfind(b"\n") + 1]
            self.path.write_bytes(raw)
        records: Dict[str, Dict[str, Any]] = {}
        for line in raw.decode("utf8").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and record.get("status") in STATUSES and record.get("run_id"):
                records[record["run_id"]] = record
        return records

    def records(self) -> List[Dict[str, Any]]:
        return list(self.load().values())

    def append(self, record: Dict[str, Any]) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf8") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.write_csv()

    def write_csv(self) -> None:
        rows = self.records()
        tmp = self.csv_path.with_suffix(".csv.tmp")
        with tmp.open("w", encoding="utf8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            for r in rows:
                writer.writerow({**r, "params": json.dumps(r.get("params", {}), default=str)})
        tmp.replace(self.csv_path)


@contextlib.contextmanager
def sweep_lock(output_dir: Path) -> Iterator[None]:
    """One sweep per output folder at a time (released when the process dies)."""
    import fcntl

    output_dir.mkdir(parents=True, exist_ok=True)
    with (output_dir / ".sweep.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigValueError(f"{output_dir}: another sweep is running on this folder "
                                   "(wait for it, or give another OUTPUT_DIR)") from None
        yield


# ---------------------------------------------------------------- the sweep


def pending_runs(grid: Grid, results: SweepResults) -> List[RunSpec]:
    """The grid's runs that have no record yet (a finished run, whatever its status, is never redone)."""
    done = results.load()
    return [spec for spec in grid.runs if spec.run_id not in done]


def run_sweep(grid_path: Path, output_dir: Path, *, backend: str = "local", address: Optional[str] = None,
              gpu_id: int = -1, gpus_per_trial: float = 0.0, cpus_per_trial: Optional[float] = None,
              timeout: Optional[float] = None, limit: Optional[int] = None,
              on_record: Optional[Callable[[Dict[str, Any]], None]] = None,
              progress: bool = True) -> List[Dict[str, Any]]:
    """Run every pending run of a grid; each record goes to ``sweep.jsonl`` when its run ends.

    grid_path (Path): the grid file.
    output_dir (Path): results, runs and reports (the same folder resumes).
    backend (str): ``local`` (one run after another here) or ``ray`` (Ray Tune).
    address (Optional[str]): Ray cluster address (``ray`` only; None: a local Ray).
    gpu_id (int): ``local``: the GPU every run uses, -1 for CPU.
    gpus_per_trial (float): ``ray``: GPUs per trial (0 on CPU).
    cpus_per_trial (Optional[float]): ``ray``: CPUs per trial (None: all of them, one trial at a time).
    timeout (Optional[float]): seconds before a run is killed and recorded as failed.
    limit (Optional[int]): stop after this many runs (None: all pending).
    on_record (Callable): called with each record as it is written.
    RETURNS (List[Dict[str, Any]]): every record of the grid so far, in grid order.
    """
    grid = load_grid(grid_path)
    if backend not in ("local", "ray"):
        raise ConfigValueError(f"--backend {backend}: use local or ray")
    results = SweepResults(output_dir)
    with sweep_lock(output_dir):
        (output_dir / "grid.json").write_text(json.dumps({"grid": read_grid_file(grid_path), "path": str(grid_path),
                                                          "runs": [s.run_id for s in grid.runs]}, indent=2,
                                                         default=str) + "\n", encoding="utf8")
        todo = pending_runs(grid, results)
        if limit is not None:
            todo = todo[:limit]

        def write(record: Dict[str, Any]) -> None:
            results.append(record)
            if on_record is not None:
                on_record(record)

        if todo:
            if backend == "ray":
                from .ray_sweep import run_on_ray

                run_on_ray(todo, output_dir, write=write, address=address, gpus_per_trial=gpus_per_trial,
                           cpus_per_trial=cpus_per_trial, timeout=timeout)
            else:
                _run_local(todo, output_dir, write=write, gpu_id=gpu_id, timeout=timeout, progress=progress)
        results.write_csv()
        done = results.load()
    return [done[s.run_id] for s in grid.runs if s.run_id in done]


def _run_local(todo: List[RunSpec], output_dir: Path, *, write: Callable[[Dict[str, Any]], None], gpu_id: int,
               timeout: Optional[float], progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(todo, desc="sweep", unit="run", disable=not progress, file=sys.stderr)
    for spec in bar:
        bar.set_postfix_str(spec.run_id[:40])
        record = execute_run(spec, output_dir, gpu_id=gpu_id, timeout=timeout)
        write(record)
        f = record.get("dev_f")
        bar.write(f"{record['status']:>8}  {spec.run_id}  dev F1 {'–' if f is None else f'{100 * f:.2f}'}  "
                  f"{record['wall_seconds']:.0f} s" + (f"  ({record['error']})" if record.get("error") else ""),
                  file=sys.stderr)

