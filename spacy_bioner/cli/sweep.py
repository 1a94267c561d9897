"""``sweep``, ``sweep-report`` and ``package-best``: grids of runs, their report, the best one as a wheel."""
from pathlib import Path
from typing import Optional

import typer
from wasabi import msg

from ._util import app, fail, friendly_errors


@app.command("sweep")
def sweep_cli(
    grid: Path = typer.Argument(..., help="Grid file (YAML or JSON): corpus, models, grid of dotted keys, seeds"),
    output_dir: Path = typer.Argument(..., help="Results folder: sweep.jsonl/.csv, runs/, report.md, plots/"),
    backend: str = typer.Option("local", "--backend", help="local (one run after another here) or ray (Ray Tune)"),
    address: Optional[str] = typer.Option(None, "--address", help="Ray cluster address (ray; default: a local Ray)"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="local: GPU id for every run, -1 for CPU"),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial", help="ray: GPUs per trial (1 on a GPU cluster)"),
    cpus_per_trial: Optional[float] = typer.Option(None, "--cpus-per-trial",
                                                   help="ray: CPUs per trial (default: all, one trial at a time)"),
    run_timeout: Optional[float] = typer.Option(None, "--run-timeout", help="Seconds before a run is killed (failed)"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Run at most N pending runs, then stop"),
    package: bool = typer.Option(False, "--package-best", help="Then package the best run (packages/)"),
) -> None:
    """Train every run of a grid; resumable: the same command skips what sweep.jsonl already holds.

    Each run ends ok, failed (with its error) or diverged (dev F1 0 or a NaN loss);
    the sweep goes on either way. At the end: report.md, summary.json and plots/.
    """
    from ..experiments.sweep import run_sweep
    from ..experiments.sweep_report import write_report

    if backend == "ray":
        from ..experiments.ray_sweep import INSTALL_HINT

        try:
            import ray  # noqa: F401
        except ImportError:
            fail(INSTALL_HINT)
    with friendly_errors():
        records = run_sweep(grid, output_dir, backend=backend, address=address, gpu_id=gpu_id,
                            gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial, timeout=run_timeout,
                            limit=limit)
        written = write_report(output_dir)
    counts = {s: sum(1 for r in records if r["status"] == s) for s in ("ok", "diverged", "failed")}
    msg.info(f"{len(records)} runs recorded: {counts['ok']} ok, {counts['diverged']} diverged, "
             f"{counts['failed']} failed ({output_dir / 'sweep.jsonl'})")
    msg.good(f"Report: {written['report']}")
    if package:
        package_best_cli(output_dir, Path("packages"), None, "0.1.0", 1000, None)


@app.command("sweep-report")
def sweep_report_cli(
    output_dir: Path = typer.Argument(..., help="A sweep's folder (with sweep.jsonl)"),
) -> None:
    """Write report.md, summary.json and plots/ from a sweep's results (also while it runs)."""
    from ..experiments.sweep_report import write_report

    if not (output_dir / "sweep.jsonl").is_file():
        fail(f"{output_dir}: no sweep.jsonl (run `spacy-bioner sweep GRID {output_dir}` first)")
    written = write_report(output_dir)
    msg.good(f"Report: {written['report']} ({len(written) - 2} plots)")


@app.command("package-best")
def package_best_cli(
    output_dir: Path = typer.Argument(..., help="A sweep's folder (with sweep.jsonl)"),
    packages_dir: Path = typer.Option(Path("packages"), "--output", "-o", help="Where the wheels go"),
    name: Optional[str] = typer.Option(None, "--name", help="Package name without en_ (default bioner_<corpus>_<model>)"),
    version: str = typer.Option("0.1.0", "--version", help="Package version"),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the 95 % intervals"),
    licence: Optional[str] = typer.Option(None, "--license", help="The corpus' licence, if not a shipped corpus"),
) -> None:
    """Package the run with the best dev F1 as a wheel with a model card (meta.json + README).

    spacy-bioner's own wheel is written beside it: install both with
    `pip install --find-links PACKAGES PACKAGES/en_NAME-VERSION-py3-none-any.whl`.
    """
    from ..experiments.package_best import package_best

    with friendly_errors():
        out = package_best(output_dir, packages_dir, name=name, version=version, n_bootstrap=bootstrap,
                           licence=licence)
    test = out["card"].get("test")
    msg.info(f"Best run: {out['record']['run_id']} (dev F1 {100 * out['card']['dev']['f']:.2f}"
             + (f", test F1 {100 * test['f']:.2f} [{100 * test['f_low']:.1f}–{100 * test['f_high']:.1f}]" if test
                else "") + ")")
    if out["spacy_bioner_wheel"]:
        msg.info(f"spacy-bioner wheel: {out['spacy_bioner_wheel']}")
    msg.good(f"Wheel: {out['wheel']}  →  pip install --find-links {packages_dir} {out['wheel']}; "
             f"spacy.load('{out['package']}')")
