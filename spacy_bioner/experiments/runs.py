"""One run of a sweep: its spec, and the child process that trains and scores it.

Each run trains in its own process (``python -m spacy_bioner.experiments.runs SPEC.json``,
started by :func:`execute_run`), so a crash, a kill or a memory blow-up ends that
run only, and its peak RSS is its own. Both sweep backends (``local`` in
:mod:`.sweep`, ``ray`` in :mod:`.ray_sweep`) run a spec through :func:`execute_run`.
"""
import contextlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

RUNS_DIR = "runs"
RUN_RESULT = "result.json"
#: Grid keys that are not dotted config keys: they pick config files.
FILE_KEYS = ("head", "adversarial", "backbone", "base")
STATUSES = ("ok", "failed", "diverged")
SEED_KEY = "system.seed"


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
    from ..training.config import build_config
    from ..training.run import peak_rss_mib, run_training

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


def _watch_parent(parent: Optional[int] = None) -> None:
    """End this worker when the sweep that started it dies (a killed sweep leaves no orphan run).

    parent (Optional[int]): the pid of the process that started this worker, as it wrote it in the spec
        (None: this worker's parent now). Given, a sweep killed before this worker could set up its
        watch (between fork and ``PR_SET_PDEATHSIG``, or before this runs) is noticed too.
    """
    import threading

    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:
        os._exit(137)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(137)

    threading.Thread(target=watch, daemon=True).start()


def worker_main(spec_path: Path) -> int:
    """``python -m spacy_bioner.experiments.runs SPEC.json``: one run, its result in ``run_dir/result.json``."""
    spec_data = json.loads(spec_path.read_text(encoding="utf8"))
    run_dir = Path(spec_data.pop("run_dir"))
    gpu_id = int(spec_data.pop("gpu_id", -1))
    parent_pid = spec_data.pop("parent_pid", None)
    if spec_data.pop("watch_parent", True):
        _watch_parent(parent_pid)
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
                                     "watch_parent": watch_parent, "parent_pid": os.getpid()},
                                    indent=2, default=str) + "\n", encoding="utf8")
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    started = time.time()
    begin = time.perf_counter()
    error: Optional[str] = None
    with (run_dir / "train.log").open("w", encoding="utf8") as log:
        try:
            proc = subprocess.run([sys.executable, "-m", "spacy_bioner.experiments.runs", str(spec_file)],
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


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m spacy_bioner.experiments.runs RUN_SPEC.json (started by `spacy-bioner sweep`)",
              file=sys.stderr)
        return 2
    return worker_main(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
