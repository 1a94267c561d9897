"""The ``ray`` backend of sweeps: Ray Tune runs the pending runs as trials.

Each trial runs the same child process as the ``local`` backend
(:func:`~spacy_bioner.experiments.runs.execute_run`) and reports the run's record
once, when the run ends; a callback in the driver appends it to ``sweep.jsonl``,
so resuming works exactly as with ``local`` (finished runs are never resubmitted).
A local Ray starts by default; ``address`` joins a cluster, where OUTPUT_DIR and
the corpus must be on storage every node sees and spacy-bioner installed on each.
"""
import json
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from .runs import RunSpec, execute_run

INSTALL_HINT = "the ray backend needs Ray Tune: pip install 'spacy-bioner[ray]' (or 'ray[tune]>=2.9')"
RECORD_KEY = "sweep_record"


def require_ray() -> Any:
    """Import Ray Tune, or one line saying how to install it."""
    try:
        import ray
        from ray import tune  # noqa: F401
    except ImportError:
        raise ModuleNotFoundError(INSTALL_HINT) from None
    return ray


def _trial(config: Dict[str, Any]) -> None:
    """One Ray Tune trial: run the spec in a child process and report its record."""
    from ray import tune

    spec = RunSpec.from_dict(config["spec"])
    gpu_id = 0 if config["gpus_per_trial"] > 0 else -1  # Ray sets CUDA_VISIBLE_DEVICES per trial
    record = execute_run(spec, Path(config["output_dir"]), gpu_id=gpu_id, timeout=config["timeout"],
                         threads=config["threads"], cwd=config["cwd"])
    tune.report({RECORD_KEY: json.dumps(record, default=str), "status": record["status"],
                 "dev_f": record.get("dev_f") if record.get("dev_f") is not None else float("nan")})


def _failed(spec: Dict[str, Any], error: str) -> Dict[str, Any]:
    return {"run_id": spec["run_id"], "status": "failed", "model": spec["model"], "corpus": spec["corpus"],
            "params": spec["params"], "seed": spec["params"].get("system.seed"), "error": error}


def run_on_ray(todo: List[RunSpec], output_dir: Path, *, write: Callable[[Dict[str, Any]], None],
               address: Optional[str] = None, gpus_per_trial: float = 0.0, cpus_per_trial: Optional[float] = None,
               timeout: Optional[float] = None) -> None:
    """Run ``todo`` as Ray Tune trials; ``write`` gets each record as its trial ends.

    todo (List[RunSpec]): the pending runs.
    output_dir (Path): the sweep's folder (``runs/`` and Tune's own files under ``ray/``).
    write (Callable): appends a record to the results (called in this process).
    address (Optional[str]): a Ray cluster's address; None starts a local Ray.
    gpus_per_trial (float): GPUs per trial (0 on CPU).
    cpus_per_trial (Optional[float]): CPUs per trial (None: all this machine's CPUs, so one trial at a time).
    timeout (Optional[float]): seconds before a run is killed and recorded as failed.
    """
    ray = require_ray()
    from ray import tune

    try:
        RunConfig = tune.RunConfig
    except AttributeError:  # Ray < 2.40
        from ray.train import RunConfig

    cpus = float(cpus_per_trial or os.cpu_count() or 1)
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 ignore_reinit_error=True)
    written = set()

    class Recorder(tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info):
            if RECORD_KEY in result:
                record = json.loads(result[RECORD_KEY])
                if record["run_id"] not in written:
                    written.add(record["run_id"])
                    write(record)

        def on_trial_error(self, iteration, trials, trial, **info):
            spec = trial.config["spec"]
            if spec["run_id"] not in written:
                written.add(spec["run_id"])
                write(_failed(spec, f"Ray trial error: {trial.error_file or 'see ' + str(trial.local_path)}"))

    output_dir = output_dir.resolve()
    param_space = {
        "spec": tune.grid_search([spec.to_dict() for spec in todo]), "output_dir": str(output_dir),
        "gpus_per_trial": gpus_per_trial, "timeout": timeout, "threads": max(1, int(cpus)), "cwd": os.getcwd(),
    }
    trainable = tune.with_resources(_trial, {"cpu": cpus, "gpu": gpus_per_trial})
    tuner = tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False),
        run_config=RunConfig(name="tune", storage_path=str(output_dir / "ray"), callbacks=[Recorder()], verbose=0),
    )
    try:
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
