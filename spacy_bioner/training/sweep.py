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

Each run trains in its own process (``python -m spacy_bioner.training.sweep``),
so a crash, a kill or a memory blow-up ends that run only, and its peak RSS is
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
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterator, List, Optional, Sequence

from ..errors import ConfigValueError

RESULTS = "sweep.jsonl"
RESULTS_CSV = "sweep.csv"
RUNS_DIR = "runs"
RUN_RESULT = "result.json"
#: Grid keys that are not dotted config keys: they pick config files.
FILE_KEYS = ("head", "adversarial", "backbone", "base")
TOP_KEYS = {"name", "corpus", "base", "backbone", "head", "adversarial", "overrides", "grid", "seeds", "models",
            "backbones", "diverged_f1", "gpu_id"}
MODEL_KEYS = {"base", "backbone", "head", "adversarial", "overrides", "grid"}
STATUSES = ("ok", "failed", "diverged")
SEED_KEY = "system.seed"
CSV_COLUMNS = ["run_id", "status", "model", "seed", "learn_rate", "batch_size", "dev_p", "dev_r", "dev_f", "test_p",
               "test_r", "test_f", "steps", "epochs", "wall_seconds", "train_words_per_second", "peak_rss_mib",
               "peak_gpu_mib", "params", "error"]


@dataclass
class RunSpec:
    """One run of a sweep: which configs, which values, which data.

    run_id (str): stable across restarts (model, values and a hash of everything else).
    model (str): the model's name in the grid.
    params (Dict[str, Any]): the values this run takes from the grid (with ``system.seed``).
    fixed (Dict[str, Any]): the overrides every run of this model shares.
    """

    run_id: str
    model: str
    base: str
    backbone: Optional[str]
    head: Optional[str]
    adversarial: Optional[str]
    params: Dict[str, Any]
    fixed: Dict[str, Any]
    train: str
    dev: str
    test: Optional[str]
    corpus: str
    diverged_f1: float = 0.0

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "RunSpec":
        return cls(**data)

    def settings(self) -> Dict[str, Any]:
        """base / backbone / head / adversarial after the grid's values, and the dotted overrides."""
        files = {"base": self.base, "backbone": self.backbone, "head": self.head, "adversarial": self.adversarial}
        overrides: Dict[str, Any] = {}
        for key, value in {**self.fixed, **self.params}.items():
            if key in FILE_KEYS:
                files[key] = None if value in (None, "none", "") else str(value)
            else:
                overrides[key] = value
        overrides.update({"paths.train": self.train, "paths.dev": self.dev})
        return {**files, "overrides": overrides}


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


# ---------------------------------------------------------------- one run


def hardware(gpu_id: int = -1) -> Dict[str, Any]:
    """What the run ran on, for the record and the model card."""
    info: Dict[str, Any] = {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                            "platform": platform.platform(terse=True), "python": platform.python_version(),
                            "gpu": None}
    if gpu_id >= 0:
        with contextlib.suppress(Exception):
            import torch

            info["gpu"] = torch.cuda.get_device_name(gpu_id)
    return info


def _float(value: Any) -> Optional[float]:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value


def _config_value(config: Dict[str, Any], *path: str) -> Any:
    node: Any = config
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def classify(result: Dict[str, Any], *, diverged_f1: float) -> str:
    """``diverged`` when the run learned nothing (dev F1 ≤ ``diverged_f1``, or a NaN/inf loss), else ``ok``."""
    dev_f = result.get("dev_f")
    if result.get("nonfinite_loss_step") is not None:
        return "diverged"
    if dev_f is None or not math.isfinite(dev_f) or dev_f <= diverged_f1:
        return "diverged"
    return "ok"


def train_and_score(spec: RunSpec, run_dir: Path, *, gpu_id: int = -1) -> Dict[str, Any]:
    """Train one run of a sweep and score its best model on the test split (in this process).

    spec (RunSpec): the run.
    run_dir (Path): gets ``model/`` (``model-best``, ``model-last``, ``run.json``) and ``test.json``.
    gpu_id (int): GPU index, -1 for CPU.
    RETURNS (Dict[str, Any]): the measured fields of the run's record (no ``status``).
    """
    from ..evaluation.predict import evaluate_model
    from ..evaluation.report import write_json
    from .config import build_config
    from .run import peak_rss_mib, run_training

    s = spec.settings()
    overrides = s["overrides"]
    config = build_config(s["base"], backbone=s["backbone"], head=s["head"], adversarial=s["adversarial"],
                          overrides=overrides)
    record = run_training(config, run_dir / "model", gpu_id=gpu_id,
                          explicit_total_steps="training.optimizer.learn_rate.total_steps" in overrides,
                          stdout=sys.stdout, stderr=sys.stderr)
    rate = _config_value(record.config, "training", "optimizer", "learn_rate")
    rate = rate.get("initial_rate") if isinstance(rate, dict) else rate
    size = _config_value(record.config, "training", "batcher", "size")
    dev = record.dev_scores
    out: Dict[str, Any] = {
        "learn_rate": _float(rate), "batch_size": size if isinstance(size, (int, float)) else None,
        "dev_p": _float(dev.get("ents_p")), "dev_r": _float(dev.get("ents_r")), "dev_f": _float(dev.get("ents_f")),
        "test_p": None, "test_r": None, "test_f": None,
        "steps": record.steps, "epochs": record.epochs, "best_step": record.best_step,
        "train_seconds": record.train_seconds, "train_words_per_second": record.train_words_per_second,
        "peak_rss_mib": record.peak_rss_mib, "peak_gpu_mib": record.peak_gpu_mib,
        "nonfinite_loss_step": record.nonfinite_loss_step, "final_losses": record.final_losses,
        "backbone_resolved": record.backbone, "model_best": record.model_best,
    }
    if spec.test and Path(record.model_best).exists():
        _, metrics = evaluate_model(record.model_best, Path(spec.test), gpu_id=gpu_id, n_bootstrap=200, seed=0)
        write_json(metrics, run_dir / "test.json")
        out.update(test_p=metrics["ents_p"], test_r=metrics["ents_r"], test_f=metrics["ents_f"],
                   test_f_low=metrics["bootstrap"]["low"], test_f_high=metrics["bootstrap"]["high"])
        out["peak_rss_mib"] = max(out["peak_rss_mib"], peak_rss_mib())
    return out


def _die_with_parent() -> None:
    """In the child before exec (Linux): the kernel kills it when the sweep process dies."""
    with contextlib.suppress(Exception):
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _watch_parent() -> None:
    """End this worker when the sweep that started it dies (a killed sweep leaves no orphan run)."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(137)

    threading.Thread(target=watch, daemon=True).start()


def worker_main(spec_path: Path) -> int:
    """``python -m spacy_bioner.training.sweep SPEC.json``: one run, its result in ``run_dir/result.json``."""
    spec_data = json.loads(spec_path.read_text(encoding="utf8"))
    run_dir = Path(spec_data.pop("run_dir"))
    gpu_id = int(spec_data.pop("gpu_id", -1))
    if spec_data.pop("watch_parent", True):
        _watch_parent()
    spec = RunSpec.from_dict(spec_data)
    try:
        result = train_and_score(spec, run_dir, gpu_id=gpu_id)
    except BaseException as err:  # noqa: BLE001 — recorded as the run's error, then re-raised for the log
        from ..errors import config_problem

        message = config_problem(err) if type(err).__name__ == "ConfigValidationError" else \
            " ".join(f"{type(err).__name__}: {err}".split())[:500]
        (run_dir / RUN_RESULT).write_text(json.dumps({"error": message}) + "\n", encoding="utf8")
        raise
    result["hardware"] = hardware(gpu_id)
    (run_dir / RUN_RESULT).write_text(json.dumps(result, default=str) + "\n", encoding="utf8")
    return 0


def execute_run(spec: RunSpec, output_dir: Path, *, gpu_id: int = -1, timeout: Optional[float] = None,
                threads: Optional[int] = None, watch_parent: bool = True, cwd: Optional[str] = None) -> Dict[str, Any]:
    """Run one spec in a child process and return its record (``ok``, ``failed`` or ``diverged``).

    spec (RunSpec): the run.
    output_dir (Path): the sweep's folder; the run goes to ``runs/RUN_ID`` (emptied first).
    gpu_id (int): GPU index for the child, -1 for CPU.
    timeout (Optional[float]): seconds before the run is killed and recorded as failed.
    threads (Optional[int]): torch/OpenMP threads of the child (None: the default).
    watch_parent (bool): the child ends itself when this process dies.
    cwd (Optional[str]): the child's working directory (relative corpus paths; None: this one).
    RETURNS (Dict[str, Any]): the record (not yet written to the results file).
    """
    run_dir = output_dir.resolve() / RUNS_DIR / spec.run_id
    if run_dir.exists():  # a run cut short by a kill: start it again from nothing
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    spec_file = run_dir / "spec.json"
    spec_file.write_text(json.dumps({**spec.to_dict(), "run_dir": str(run_dir), "gpu_id": gpu_id,
                                     "watch_parent": watch_parent}, indent=2, default=str) + "\n", encoding="utf8")
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.time()
    begin = time.perf_counter()
    error: Optional[str] = None
    with (run_dir / "train.log").open("w", encoding="utf8") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "spacy_bioner.training.sweep", str(spec_file)],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, timeout=timeout, cwd=cwd,
                                  preexec_fn=_die_with_parent if watch_parent else None)
            returncode = proc.returncode
        except subprocess.TimeoutExpired:
            returncode, error = -9, f"timed out after {timeout:g} s (--run-timeout)"
    wall = time.perf_counter() - begin
    result: Dict[str, Any] = {}
    if (run_dir / RUN_RESULT).exists():
        with contextlib.suppress(json.JSONDecodeError):
            result = json.loads((run_dir / RUN_RESULT).read_text(encoding="utf8"))
    if error is None and "error" in result:
        error = result.pop("error")
    if error is None and returncode != 0:
        error = f"exit code {returncode}: {last_log_line(run_dir / 'train.log')}"
    settings = spec.settings()
    record: Dict[str, Any] = {
        "run_id": spec.run_id, "status": "failed" if error else classify(result, diverged_f1=spec.diverged_f1),
        "model": spec.model, "corpus": spec.corpus, "base": spec.base, "backbone": spec.backbone,
        "head": settings["head"], "adversarial": settings["adversarial"],
        "seed": spec.params.get(SEED_KEY), "params": spec.params, "fixed": spec.fixed,
        "learn_rate": result.get("learn_rate", _param_like(spec.params, "learn_rate")),
        "batch_size": result.get("batch_size", _param_like(spec.params, "batcher.size")),
        "dev_p": None, "dev_r": None, "dev_f": None, "test_p": None, "test_r": None, "test_f": None,
        "steps": None, "epochs": None, "wall_seconds": wall, "train_words_per_second": None, "peak_rss_mib": None,
        "peak_gpu_mib": None, **{k: v for k, v in result.items() if k not in ("learn_rate", "batch_size")},
        "gpu_id": gpu_id, "started_at": started, "finished_at": time.time(), "run_dir": str(run_dir),
        "error": error,
    }
    if record["status"] == "diverged":
        record["diverged_reason"] = ("non-finite loss at step %s" % result["nonfinite_loss_step"]
                                     if result.get("nonfinite_loss_step") is not None
                                     else f"dev F1 {record['dev_f']} ≤ {spec.diverged_f1}")
    return record


def _param_like(params: Dict[str, Any], fragment: str) -> Any:
    for key, value in params.items():
        if fragment in key:
            return value
    return None


def last_log_line(path: Path) -> str:
    """The last meaningful line of a run's log (the error of a crash), one line."""
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in path.read_text(encoding="utf8", errors="replace").splitlines() if ln.strip()]
        if lines:
            return lines[-1][:500]
    return "no output"


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


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m spacy_bioner.training.sweep RUN_SPEC.json (started by `spacy-bioner sweep`)",
              file=sys.stderr)
        return 2
    return worker_main(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
