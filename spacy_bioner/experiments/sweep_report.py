"""A sweep's results as the thesis shows them: P/R/F1 against learning rate (one line
per batch size, per model), the model × batch-size F1 table at each model's best
rate, peak memory against training time with a fitted line, seeds as mean ± std,
and a Markdown report naming the best run by dev F1 (test scores for the record).

Everything reads ``sweep.jsonl`` only (:class:`~spacy_bioner.experiments.sweep.SweepResults`).
"""
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .runs import SEED_KEY

METRICS = ("dev_p", "dev_r", "dev_f", "test_p", "test_r", "test_f", "wall_seconds", "train_words_per_second",
           "peak_rss_mib", "peak_gpu_mib")


def mean_std(values: Sequence[float]) -> Tuple[Optional[float], Optional[float]]:
    """Mean and sample standard deviation (0 for one value; None for none)."""
    values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def cell_key(record: Dict[str, Any]) -> str:
    """A grid cell: the model and its values without the seed."""
    params = {k: v for k, v in (record.get("params") or {}).items() if k != SEED_KEY}
    return json.dumps([record.get("model"), params], sort_keys=True, default=str)


def summarise_cells(records: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One row per grid cell over its seeds: mean ± std of every metric, statuses and seeds.

    A diverged run counts with its scores (F1 0 is the result); a failed run has none.
    """
    cells: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for r in records:
        cells[cell_key(r)].append(r)
    rows = []
    for key, runs in cells.items():
        first = runs[0]
        scored = [r for r in runs if r.get("status") in ("ok", "diverged")]
        row: Dict[str, Any] = {
            "model": first.get("model"), "params": {k: v for k, v in (first.get("params") or {}).items()
                                                    if k != SEED_KEY},
            "learn_rate": first.get("learn_rate"), "batch_size": first.get("batch_size"),
            "seeds": sorted(r.get("seed") for r in runs if r.get("seed") is not None),
            "statuses": {s: sum(1 for r in runs if r.get("status") == s) for s in ("ok", "diverged", "failed")},
            "n": len(scored),
        }
        for metric in METRICS:
            row[metric], row[f"{metric}_std"] = mean_std([r.get(metric) for r in scored])
        rows.append(row)
    return rows


def best_run(records: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The ``ok`` run with the highest dev F1 (the first one on a tie); test scores never count."""
    ok = [r for r in records if r.get("status") == "ok" and r.get("dev_f") is not None]
    if not ok:
        return None
    return max(enumerate(ok), key=lambda item: (item[1]["dev_f"], -item[0]))[1]


def best_rate_table(cells: Sequence[Dict[str, Any]]) -> Dict[str, Dict[str, Dict[str, Any]]]:
    """``model → batch size → cell`` at the model's best learning rate (by mean dev F1 over batch sizes)."""
    by_model: Dict[str, List[Dict[str, Any]]] = defaultdict(list)
    for c in cells:
        by_model[c["model"]].append(c)
    table: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for model, rows in by_model.items():
        rates: Dict[Any, List[float]] = defaultdict(list)
        for c in rows:
            rates[c["learn_rate"]].append(c["dev_f"] or 0.0)
        best = max(rates, key=lambda rate: sum(rates[rate]) / len(rates[rate]))
        table[model] = {str(c["batch_size"]): c for c in rows if c["learn_rate"] == best}
    return table


def _pct(value: Optional[float], std: Optional[float] = None) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.2f}" + (f" ± {100 * std:.2f}" if std else "")


def _num(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown(records: Sequence[Dict[str, Any]], *, title: str = "Sweep", plots: Optional[Dict[str, Path]] = None,
             base: Optional[Path] = None) -> str:
    """The sweep report: best run, model × batch size table, every cell, diverged and failed runs."""
    cells = summarise_cells(records)
    counts = {s: sum(1 for r in records if r.get("status") == s) for s in ("ok", "diverged", "failed")}
    lines = [f"# {title}", "", f"{len(records)} runs: {counts['ok']} ok, {counts['diverged']} diverged, "
             f"{counts['failed']} failed. Scores are spaCy's strict entity P/R/F1 (%). Selection uses dev F1 "
             "only; test scores are for the record.", ""]
    best = best_run(records)
    if best:
        lines += ["## Best run (by dev F1)", "", f"**{best['run_id']}** — model `{best['model']}`, "
                  + ", ".join(f"`{k}` = {_num(v)}" for k, v in best["params"].items()), "",
                  "| split | P | R | F1 |", "|---|---:|---:|---:|",
                  f"| dev | {_pct(best.get('dev_p'))} | {_pct(best.get('dev_r'))} | {_pct(best.get('dev_f'))} |",
                  f"| test | {_pct(best.get('test_p'))} | {_pct(best.get('test_r'))} | {_pct(best.get('test_f'))}"
                  + (f" (95 % CI {_pct(best.get('test_f_low'))}–{_pct(best.get('test_f_high'))})"
                     if best.get("test_f_low") is not None else "") + " |", "",
                  f"{best.get('steps')} steps ({best.get('epochs')} epochs), {best.get('wall_seconds', 0):.0f} s, "
                  f"{best.get('train_words_per_second') or 0:.0f} train words/s, peak RSS "
                  f"{best.get('peak_rss_mib') or 0:.0f} MiB" + (f", peak GPU {best['peak_gpu_mib']:.0f} MiB"
                                                                if best.get("peak_gpu_mib") else "") + ".", ""]
    else:
        lines += ["No run finished `ok`: there is no best run.", ""]
    table = best_rate_table([c for c in cells if c["n"]])
    if table:
        sizes = sorted({b for per in table.values() for b in per}, key=lambda b: (len(b), b))
        lines += ["## Dev F1 (test F1) per model × batch size, at each model's best learning rate", "",
                  "A model's best rate: the one with the highest mean dev F1 over its batch sizes.", "",
                  "| model | best lr | " + " | ".join(f"batch {b}" for b in sizes) + " |",
                  "|---|---:|" + "---:|" * len(sizes)]
        for model, per in table.items():
            rate = next(iter(per.values()))["learn_rate"]
            lines.append(f"| {model} | {_num(rate)} | " + " | ".join(
                f"{_pct(per[b]['dev_f'], per[b]['dev_f_std'])} ({_pct(per[b]['test_f'], per[b]['test_f_std'])})"
                if b in per else "–" for b in sizes) + " |")
        lines.append("")
    lines += ["## Every cell (mean ± std over seeds)", "",
              "| model | lr | batch | values | seeds | dev P | dev R | dev F1 | test F1 | s/run | words/s | "
              "peak RSS MiB | peak GPU MiB | status |", "|---|---:|---:|---|---|" + "---:|" * 8 + "---|"]
    for c in sorted(cells, key=lambda c: (str(c["model"]), _sortable(c["learn_rate"]), _sortable(c["batch_size"]))):
        others = {k: v for k, v in c["params"].items() if "learn_rate" not in k and "batcher.size" not in k}
        status = ", ".join(f"{n} {s}" for s, n in c["statuses"].items() if n)
        lines.append(
            f"| {c['model']} | {_num(c['learn_rate'])} | {_num(c['batch_size'])} | "
            f"{', '.join(f'{k}={_num(v)}' for k, v in others.items()) or '–'} | {','.join(map(str, c['seeds']))} | "
            f"{_pct(c['dev_p'], c['dev_p_std'])} | {_pct(c['dev_r'], c['dev_r_std'])} | "
            f"{_pct(c['dev_f'], c['dev_f_std'])} | {_pct(c['test_f'], c['test_f_std'])} | "
            f"{_num(round(c['wall_seconds'])) if c['wall_seconds'] is not None else '–'} | "
            f"{_num(round(c['train_words_per_second'])) if c['train_words_per_second'] else '–'} | "
            f"{_num(round(c['peak_rss_mib'])) if c['peak_rss_mib'] else '–'} | "
            f"{_num(round(c['peak_gpu_mib'])) if c['peak_gpu_mib'] else '–'} | {status} |")
    lines.append("")
    diverged = [r for r in records if r.get("status") == "diverged"]
    if diverged:
        lines += ["## Diverged runs (learned nothing)", ""]
        lines += [f"- `{r['run_id']}`: {r.get('diverged_reason', 'dev F1 0')}" for r in diverged]
        lines.append("")
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        lines += ["## Failed runs", ""]
        lines += [f"- `{r['run_id']}`: {r.get('error')}" for r in failed]
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for name, path in plots.items():
            shown = path.relative_to(base) if base is not None and path.is_relative_to(base) else path
            lines.append(f"![{name}]({shown})")
        lines.append("")
    return "\n".join(lines)


def _sortable(value: Any) -> Tuple[int, Any]:
    return (0, float(value)) if isinstance(value, (int, float)) else (1, str(value))


def write_plots(records: Sequence[Dict[str, Any]], out_dir: Path) -> Dict[str, Path]:
    """``prf_vs_lr_<model>.png`` per model and ``memory_vs_time.png``; returns what was written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    written: Dict[str, Path] = {}
    cells = [c for c in summarise_cells(records) if c["n"] and isinstance(c["learn_rate"], (int, float))]
    for model in sorted({c["model"] for c in cells}):
        rows = [c for c in cells if c["model"] == model]
        fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
        for ax, (metric, name) in zip(axes, (("dev_p", "precision"), ("dev_r", "recall"), ("dev_f", "F1"))):
            for size in sorted({c["batch_size"] for c in rows}, key=_sortable):
                line = sorted((c for c in rows if c["batch_size"] == size), key=lambda c: c["learn_rate"])
                ax.errorbar([c["learn_rate"] for c in line], [100 * (c[metric] or 0) for c in line],
                            yerr=[100 * (c[f"{metric}_std"] or 0) for c in line], marker="o", capsize=3,
                            label=f"batch {size}")
            ax.set_xscale("log")
            ax.set_xlabel("learning rate")
            ax.set_title(f"dev {name}")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("%")
        axes[-1].legend(fontsize=8)
        fig.suptitle(f"{model}: dev P/R/F1 vs learning rate (mean ± std over seeds)")
        fig.tight_layout()
        path = out_dir / f"prf_vs_lr_{model}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written[f"P/R/F1 vs learning rate ({model})"] = path
    runs = [r for r in records if r.get("status") in ("ok", "diverged") and r.get("wall_seconds")]
    if runs:
        use_gpu = any(r.get("peak_gpu_mib") for r in runs)
        key, label = ("peak_gpu_mib", "peak GPU memory (MiB)") if use_gpu else ("peak_rss_mib", "peak RSS (MiB)")
        points = [(r["wall_seconds"], r[key], r["model"]) for r in runs if r.get(key)]
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for model in sorted({p[2] for p in points}):
            xs = [p[0] for p in points if p[2] == model]
            ys = [p[1] for p in points if p[2] == model]
            ax.scatter(xs, ys, label=model, alpha=0.8)
        if len({p[0] for p in points}) >= 2:
            slope, intercept = np.polyfit([p[0] for p in points], [p[1] for p in points], 1)
            xs = np.linspace(min(p[0] for p in points), max(p[0] for p in points), 50)
            ax.plot(xs, slope * xs + intercept, "k--", lw=1, label=f"fit: {slope:.2f} MiB/s + {intercept:.0f}")
        ax.set_xlabel("training time per run (s)")
        ax.set_ylabel(label)
        ax.set_title("memory vs training time")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / "memory_vs_time.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written["memory vs training time"] = path
    return written


def write_report(output_dir: Path, *, title: Optional[str] = None) -> Dict[str, Path]:
    """``report.md``, ``summary.json`` and ``plots/`` in a sweep's folder, from its ``sweep.jsonl``.

    RETURNS (Dict[str, Path]): what was written, by name.
    """
    from .sweep import SweepResults

    records = SweepResults(output_dir).records()
    plots = write_plots(records, output_dir / "plots") if records else {}
    title = title or f"Sweep: {output_dir.name}"
    report = output_dir / "report.md"
    report.write_text(markdown(records, title=title, plots=plots, base=output_dir), encoding="utf8")
    summary = output_dir / "summary.json"
    best = best_run(records)
    summary.write_text(json.dumps({"best": best, "cells": summarise_cells(records),
                                   "counts": {s: sum(1 for r in records if r.get("status") == s)
                                              for s in ("ok", "diverged", "failed")}},
                                  indent=2, default=str) + "\n", encoding="utf8")
    return {"report": report, "summary": summary, **plots}
