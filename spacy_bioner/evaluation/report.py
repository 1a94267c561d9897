"""Write scores once: ``metrics.json``, a Markdown report and PNG plots."""
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .scoring import LENGTH_BUCKETS, MISSED, RELAXED_SCHEMES, SPURIOUS, SentencePair, errors


def write_json(metrics: Dict[str, Any], path: Path) -> None:
    """Write the metrics (overwriting, never appending)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=False) + "\n", encoding="utf8")


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _bootstrap_sentence(b: Dict[str, Any]) -> str:
    if not b.get("n_samples"):
        return ""
    return (f" Strict F1 95 % bootstrap interval ({b['n_samples']} resamples of sentences, seed {b['seed']}): "
            f"{_pct(b['low'])}–{_pct(b['high'])}.")


def _thin_data_note(metrics: Dict[str, Any]) -> Optional[str]:
    """A plain sentence when one side (or both) has no entity, else None."""
    n_gold, n_pred = metrics["n_gold"], metrics["n_pred"]
    if not n_gold and not n_pred:
        return ("**Neither the gold data nor the predictions have any entity**: precision, recall and F1 are "
                "undefined (shown as 0.00), and there is nothing to show per type, in the confusion table or "
                "among the errors.")
    if not n_gold:
        return ("**The gold data has no entities**: recall is undefined (shown as 0.00) and every prediction "
                "counts as a false positive.")
    if not n_pred:
        return ("**No entity was predicted**: precision is undefined (shown as 0.00) and every gold entity "
                "counts as a false negative.")
    return None


def markdown_report(
    metrics: Dict[str, Any],
    pairs: Sequence[SentencePair],
    *,
    title: str = "NER evaluation",
    plots: Optional[Dict[str, Path]] = None,
    relative_to: Optional[Path] = None,
) -> str:
    """A Markdown page: headline table, per type, per length, relaxed, confusion, top errors."""
    sp, sq = metrics["spacy"], metrics["seqeval"]
    lines: List[str] = [f"# {title}", ""]
    lines += [
        f"{metrics['n_sentences']} sentences, {metrics['n_tokens']} tokens, "
        f"{metrics['n_gold']} gold and {metrics['n_pred']} predicted entities. Scores in %.",
        "",
        "| scorer | precision | recall | F1 |",
        "|---|---:|---:|---:|",
        f"| spaCy (strict) | {_pct(sp['ents_p'])} | {_pct(sp['ents_r'])} | {_pct(sp['ents_f'])} |",
        f"| seqeval (strict, IOB2) | {_pct(sq['precision'])} | {_pct(sq['recall'])} | {_pct(sq['f1'])} |",
        f"| untyped (boundaries only) | {_pct(metrics['untyped']['p'])} | {_pct(metrics['untyped']['r'])} | {_pct(metrics['untyped']['f'])} |",
        "",
        f"Token accuracy: {_pct(metrics['token_accuracy'])}." + _bootstrap_sentence(metrics["bootstrap"]),
        "",
    ]
    note = _thin_data_note(metrics)
    if note:
        lines += [note, ""]
    if metrics.get("unknown_gold_labels"):
        listed = ", ".join(f"{k} ({v})" for k, v in metrics["unknown_gold_labels"].items())
        lines += [f"**Gold labels the pipeline never predicts** (counted as misses): {listed}.", ""]
    if "words_per_second" in metrics:
        lines += [f"Pipeline speed: {metrics['words_per_second']:.0f} words/s.", ""]
    if metrics.get("robustness"):
        rob = metrics["robustness"]
        lines += ["## Robustness: clean vs noisy copies (spaCy strict)", "",
                  f"Seeded noisy copies of the data (seed {rob['seed']}, rate {rob['rate']}; swaps drawn from "
                  f"{rob['swap_source']}). Scores in %.", "",
                  "| data | precision | recall | F1 | F1 95% CI | ΔF1 | tokens changed |",
                  "|---|---:|---:|---:|---|---:|---:|"]
        c = rob["clean"]
        lines.append(f"| clean | {_pct(c['p'])} | {_pct(c['r'])} | {_pct(c['f'])} | "
                     f"{_pct(c['f_low'])}–{_pct(c['f_high'])} | | |")
        for kind, v in rob["kinds"].items():
            lines.append(f"| {kind} | {_pct(v['p'])} | {_pct(v['r'])} | {_pct(v['f'])} | "
                         f"{_pct(v['f_low'])}–{_pct(v['f_high'])} | {100 * v['delta_f']:+.2f} | "
                         f"{_pct(v['changed_tokens'])} |")
        if rob.get("attack"):
            a = rob["attack"]
            lines.append(f"| FGSM attack, ε {a['strategy']['epsilon']} | {_pct(a['p'])} | {_pct(a['r'])} | "
                         f"{_pct(a['f'])} | {_pct(a['f_low'])}–{_pct(a['f_high'])} | {100 * a['delta_f']:+.2f} | |")
        lines.append("")
        if rob.get("attack"):
            lines += [f"The attack moves each token's embedding along the gradient of the loss on the gold "
                      f"annotation by ε × the mean token norm (measured per token: mean "
                      f"{100 * rob['attack']['ratio_mean']:.1f} %, max {100 * rob['attack']['ratio_max']:.1f} % "
                      "of its own norm).", ""]
    lines += ["## Per type (seqeval strict)", ""]
    if sq["per_type"]:
        lines += ["| type | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
        for label, v in sq["per_type"].items():
            lines.append(f"| {label} | {_pct(v['precision'])} | {_pct(v['recall'])} | {_pct(v['f1'])} | {v['support']} |")
    else:
        lines.append("No entities of any type in the gold data or the predictions.")
    lines += ["", "## By gold entity length (strict)", "", "| tokens | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for bucket in LENGTH_BUCKETS:
        v = metrics["by_length"][bucket]
        lines.append(f"| {bucket} | {_pct(v['p'])} | {_pct(v['r'])} | {_pct(v['f'])} | {v['support']} |")
    lines += ["", "## Relaxed matching (SemEval-2013)", "", "| scheme | precision | recall | F1 |", "|---|---:|---:|---:|"]
    for scheme in RELAXED_SCHEMES:
        v = metrics["relaxed"][scheme]
        lines.append(f"| {scheme} | {_pct(v['p'])} | {_pct(v['r'])} | {_pct(v['f'])} |")
    lines += [
        "",
        "strict: same boundaries and type; exact: same boundaries; partial: same boundaries count 1, "
        "overlaps ½; type: overlap with the same type.",
        "",
        "## Confusion (gold rows × predicted columns, overlapping entities)",
        "",
    ]
    conf = metrics["confusion"]
    if conf:
        rows, cols = _confusion_axes(conf)
        lines.append("| gold \\ predicted | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---:|" * len(cols))
        for gold in rows:
            lines.append(f"| {gold} | " + " | ".join(str(conf[gold].get(c, 0)) for c in cols) + " |")
    else:
        lines.append("No entities on either side: nothing to confuse.")
    for kind, heading in (("fp", "false positives"), ("fn", "false negatives")):
        lines += ["", f"## The 20 most frequent {heading}", ""]
        found = errors(pairs, kind=kind, top=20)
        if not found:
            lines.append(f"No {heading}.")
            continue
        lines += ["| count | entity | type | context |", "|---:|---|---|---|"]
        for err in found:
            text, context = (err[k].replace("|", "\\|") for k in ("text", "context"))
            lines.append(f"| {err['count']} | {text} | {err['label']} | {context} |")
    if plots:
        lines += ["", "## Plots", ""]
        if not metrics["n_gold"] and not metrics["n_pred"]:
            lines += ["There are no entities, so there is nothing to plot; the plots below say so.", ""]
        for name, path in plots.items():
            shown = os.path.relpath(path, relative_to) if relative_to else str(path)
            lines.append(f"![{name}]({shown})")
    return "\n".join(lines) + "\n"


def _confusion_axes(conf: Dict[str, Dict[str, int]]) -> Tuple[List[str], List[str]]:
    """Rows (gold types, then spurious) and columns (predicted types, then missed) of the confusion table."""
    rows = sorted(set(conf) - {SPURIOUS}) + ([SPURIOUS] if SPURIOUS in conf else [])
    cols = sorted({c for row in conf.values() for c in row} - {MISSED}) + [MISSED]
    return rows, cols


def _note_plot(plt: Any, path: Path, title: str, note: str) -> None:
    """A PNG with a title and a note instead of a chart (nothing to draw)."""
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.5, note, ha="center", va="center", wrap=True, fontsize=11, transform=ax.transAxes)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_plots(metrics: Dict[str, Any], out_dir: Path) -> Dict[str, Path]:
    """Per-type bar chart, confusion heatmap and F1 by length, as PNG files.

    Every file is always written; a plot with nothing to draw (no entity on
    either side) holds a note saying so instead of empty axes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    paths: Dict[str, Path] = {}

    per_type = metrics["seqeval"]["per_type"]
    labels = list(per_type)
    paths["per_type"] = out_dir / "per_type.png"
    if labels:
        _per_type_plot(plt, np, per_type, paths["per_type"])
    else:
        _note_plot(plt, paths["per_type"], "Per type (seqeval strict)",
                   "No entities in the gold data or the predictions:\nnothing to plot.")

    conf = metrics["confusion"]
    paths["confusion"] = out_dir / "confusion.png"
    if conf:
        _confusion_plot(plt, np, conf, paths["confusion"])
    else:
        _note_plot(plt, paths["confusion"], "Confusion (entities)",
                   "No entities in the gold data or the predictions:\nnothing to plot.")

    paths["f1_by_length"] = out_dir / "f1_by_length.png"
    _length_plot(plt, metrics["by_length"], paths["f1_by_length"])
    return paths


def _per_type_plot(plt: Any, np: Any, per_type: Dict[str, Dict[str, Any]], path: Path) -> None:
    labels = list(per_type)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(labels) + 2), 4))
    x = np.arange(len(labels))
    for k, key in enumerate(("precision", "recall", "f1")):
        ax.bar(x + (k - 1) * 0.27, [per_type[l][key] for l in labels], width=0.27, label=key)
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_title("Per type (seqeval strict)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _confusion_plot(plt: Any, np: Any, conf: Dict[str, Dict[str, int]], path: Path) -> None:
    rows, cols = _confusion_axes(conf)
    matrix = np.array([[conf.get(r, {}).get(c, 0) for c in cols] for r in rows], dtype=float)
    fig, ax = plt.subplots(figsize=(max(4, 0.8 * len(cols) + 3), max(3, 0.6 * len(rows) + 2)))
    im = ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(len(rows)):
        for j in range(len(cols)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black", fontsize=8)
    fig.colorbar(im, ax=ax)
    ax.set_title("Confusion (entities)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _length_plot(plt: Any, by_length: Dict[str, Dict[str, Any]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 4))
    f1 = [by_length[b]["f"] for b in LENGTH_BUCKETS]
    bars = ax.bar(LENGTH_BUCKETS, f1, color="tab:green")
    for bar, bucket in zip(bars, LENGTH_BUCKETS):
        ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01,
                f"n={by_length[bucket]['support']}", ha="center", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("gold entity length (tokens)")
    ax.set_ylabel("strict F1")
    ax.set_title("F1 by entity length")
    if not any(by_length[b]["support"] for b in LENGTH_BUCKETS):
        ax.text(0.5, 0.5, "No gold entities: F1 by length is undefined (shown as 0).", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(
    metrics: Dict[str, Any],
    pairs: Sequence[SentencePair],
    *,
    output: Optional[Path] = None,
    report: Optional[Path] = None,
    plots: Optional[Path] = None,
    title: str = "NER evaluation",
) -> None:
    """Write whichever of metrics JSON, Markdown report and plot folder were asked for."""
    if output is not None:
        write_json(metrics, output)
    plot_paths = write_plots(metrics, plots) if plots is not None else None
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        text = markdown_report(metrics, pairs, title=title, plots=plot_paths, relative_to=report.parent)
        report.write_text(text, encoding="utf8")
