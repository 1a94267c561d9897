"""Adversarial training vs augmentation at a realistic budget, scored clean, on noisy test copies and under attack.

    # 1. calibration: FGSM.v2 relative ε sweep (tagger, NCBI-disease, 1 epoch, scored on dev); picks the shipped default
    python benchmarks/bench_adversarial.py sweep --eps 0.01 0.03 0.1 0.3 --json benchmarks/results/bench_adversarial_sweep.json
    # 2. the table: none / FGSM / PGD / augmentation / FGSM + augmentation, 3 epochs, best dev checkpoint
    python benchmarks/bench_adversarial.py train --corpora MTL-NCBI-disease-IOB MTL-BC5CDR-IOB --seeds 0 1 \
        --json benchmarks/results/bench_adversarial.json
    python benchmarks/bench_adversarial.py train --corpora MTL-NCBI-disease-IOB --heads ner --seeds 0 1 \
        --json benchmarks/results/bench_adversarial_ner.json
    # peak RSS with gradient checkpointing off / on
    python benchmarks/bench_adversarial.py memory --steps 20 --json benchmarks/results/bench_adversarial_memory.json

Every run is ``spacy-bioner train transformer --backbone minilm`` (MiniLM, the only
pretrained weights here) for ``--epochs`` epochs of batches of ``--batch-size``
sentences, scored on the dev set every half epoch; training stops after
``--patience-epochs`` epochs without a dev gain and the best dev checkpoint
(``model-best``) is kept, as the studies do. Then ``spacy-bioner evaluate`` on the
test split (``--split``; the sweep scores the dev split, so the ε it picks is not
chosen on the test data the table reports): strict F1 with its 95 % bootstrap
interval, F1 on seeded noisy copies
(``--noise all``, swaps drawn from the training split) and under a test-time FGSM
attack on the embeddings (``--attack``, ε of the shipped default, relative per token).
Time per step is the loop's time less dev scoring and saving; peak RSS from run.json.
Over seeds, the table shows mean F1 and the union of the seeds' 95 % intervals
(lowest low to highest high): the verdict asks that a gain's unions do not
overlap (stricter than any one seed's test) and that mean clean F1 stays above
none's lowest bound (looser).

Each row's JSON is written to ``--json`` as soon as it finishes, and a row already in
that file, measured with the same settings, is not run again: a killed run resumes where it stopped. Converted corpora
and models live under ``training/bench_adversarial/`` (models are deleted once scored).
"""
import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from _run import run  # benchmarks/_run.py, beside this script

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CORPORA = PROJECT.parent / "shared" / "corpora"
WORK = PROJECT / "training" / "bench_adversarial"
NOISE = ["typo", "typo_mention", "typo_context", "case", "hyphen", "spelling", "swap"]
#: system name → (--adversarial, --augment)
SYSTEMS = {"none": (None, None), "fgsm": ("fgsm", None), "pgd": ("pgd", None), "aug": (None, "noise"),
           "fgsm+aug": ("fgsm", "noise")}
LABELS = {"none": "none", "fgsm": "FGSM", "pgd": "PGD", "aug": "augmentation", "fgsm+aug": "FGSM + augmentation"}


def convert(corpus: str) -> Path:
    folder = Path(corpus) if Path(corpus).is_dir() else CORPORA / corpus
    if not folder.exists():
        sys.exit(f"{folder}: not found")
    out = WORK / "data" / folder.name
    if not (out / "test.spacy").exists():
        run([sys.executable, "-m", "spacy_bioner", "convert", str(folder), str(out)], WORK / "logs" / f"convert-{folder.name}.log")
    return out


def n_sentences(path: Path) -> int:
    """Sentences in a DocBin: what the sentence batcher counts (one per Doc without sentence boundaries)."""
    import spacy
    from spacy.tokens import DocBin

    docs = DocBin().from_disk(path).get_docs(spacy.blank("en").vocab)
    return sum(len(list(doc.sents)) if doc.has_annotation("SENT_START") else 1 for doc in docs)


def settings(args) -> Dict[str, Any]:
    """What a row depends on besides its id: a row measured with other settings is run again."""
    return {"backbone": args.backbone, "epochs": args.epochs, "batch_size": args.batch_size,
            "train_limit": args.train_limit, "attack": args.attack, "evals_per_epoch": args.evals_per_epoch,
            "patience_epochs": args.patience_epochs, **({"split": args.split} if args.split != "test" else {})}


def done(rows: Dict[str, Dict[str, Any]], row_id: str, args) -> bool:
    row = rows.get(row_id)
    return row is not None and row.get("settings", settings(args)) == settings(args)


def default_epsilon() -> float:
    from spacy_bioner.pipeline.adversarial import DEFAULT_STRATEGY

    return float(DEFAULT_STRATEGY["epsilon"])


def load_rows(path: Optional[Path]) -> Dict[str, Dict[str, Any]]:
    if path is None or not path.exists():
        return {}
    return {row["id"]: row for row in json.loads(path.read_text(encoding="utf8")).get("rows", [])}


def save(path: Optional[Path], args, rows: Dict[str, Dict[str, Any]], **extra: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table": args.table, "args": {k: str(v) for k, v in vars(args).items()},
                                "rows": list(rows.values()), **extra}, indent=2) + "\n", encoding="utf8")


def one_row(row_id: str, data: Path, args, *, head: str, system: str, seed: int,
            overrides: Dict[str, Any]) -> Dict[str, Any]:
    """Train one model, score model-best on the test split (clean, noisy, attacked) and return the row."""
    adversarial, augment = SYSTEMS[system]
    out = WORK / "runs" / row_id.replace("/", "_")
    if out.exists():
        shutil.rmtree(out)
    steps_per_epoch = -(-n_sentences(data / "train.spacy") // args.batch_size)
    every = max(1, steps_per_epoch // args.evals_per_epoch)
    cmd = [sys.executable, "-m", "spacy_bioner", "train", "transformer", "--backbone", args.backbone, "--head", head,
           "-o", str(out), "--paths.train", str(data / "train.spacy"), "--paths.dev", str(data / "dev.spacy"),
           "--training.max_epochs", str(args.epochs), "--training.max_steps", "0",
           "--training.eval_frequency", str(every),
           "--training.patience", str(int(args.patience_epochs * steps_per_epoch)),
           "--training.batcher.size", str(args.batch_size), "--system.seed", str(seed),
           "--training.logger.progress_bar", "false", "--gpu-id", str(args.gpu_id)]
    if adversarial:
        cmd += ["--adversarial", adversarial]
    if augment:
        cmd += ["--augment", augment]
    if args.train_limit:
        cmd += ["--corpora.train.limit", str(args.train_limit)]
    for key, value in overrides.items():
        cmd += [f"--{key}", str(value)]
    began = time.perf_counter()
    run(cmd, out / "train.log")
    record = json.loads((out / "run.json").read_text(encoding="utf8"))
    metrics_path = out / "test.json"
    run([sys.executable, "-m", "spacy_bioner", "evaluate", str(out / "model-best"), str(data / f"{args.split}.spacy"),
         "-o", str(metrics_path), "--bootstrap", str(args.bootstrap), "--noise", ",".join(NOISE),
         "--noise-train", str(data / "train.spacy"), "--seed", str(seed), "--attack", str(args.attack),
         "--gpu-id", str(args.gpu_id)], out / "evaluate.log")
    m = json.loads(metrics_path.read_text(encoding="utf8"))
    rob = m["robustness"]
    losses = record.get("final_losses", {})
    loop = record["train_seconds"] - record["eval_seconds"] - record["save_seconds"]
    row = {"id": row_id, "corpus": data.name, "head": head, "system": system, "seed": seed,
           **{k.split(".")[-1]: v for k, v in overrides.items()},
           "steps": record["steps"], "epochs": record["epochs"], "best_step": record.get("best_step"),
           "dev_f": (record.get("best_scores") or {}).get("ents_f"),
           "f": rob["clean"]["f"], "f_low": rob["clean"]["f_low"], "f_high": rob["clean"]["f_high"],
           "noisy": {k: {"f": v["f"], "f_low": v["f_low"], "f_high": v["f_high"], "delta_f": v["delta_f"]}
                     for k, v in rob["kinds"].items()},
           "attack": {k: rob["attack"][k] for k in ("f", "f_low", "f_high", "delta_f", "ratio_mean", "ratio_max")},
           "attack_epsilon": args.attack,
           "train_ratio_mean": losses.get("bioner_adversarial.ratio_mean"),
           "train_ratio_max": losses.get("bioner_adversarial.ratio_max"),
           "s_per_step": loop / max(record["steps"], 1), "peak_rss_mib": record["peak_rss_mib"],
           "wall_seconds": time.perf_counter() - began, "settings": settings(args)}
    if not args.keep_models:
        for sub in ("model-best", "model-last"):
            shutil.rmtree(out / sub, ignore_errors=True)
    print(f"{row_id}: F1 {100 * row['f']:.2f}, attacked {100 * row['attack']['f']:.2f}, "
          f"{row['s_per_step']:.2f} s/step, {row['wall_seconds'] / 60:.1f} min", file=sys.stderr, flush=True)
    return row


def mean(values: List[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def summarise(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """One line per corpus × head × system (× ε): F1 means over seeds; bounds are the union of the seeds'
    95 % bootstrap intervals (the lowest low, the highest high)."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["corpus"], r["head"], r["system"], r.get("epsilon")), []).append(r)
    out = []
    for (corpus, head, system, eps), rs in groups.items():
        base = [r for r in rows if (r["corpus"], r["head"], r["system"]) == (corpus, head, "none")]
        line = {"corpus": corpus, "head": head, "system": system, "epsilon": eps, "seeds": sorted(r["seed"] for r in rs),
                "f": mean([r["f"] for r in rs]), "f_low": min(r["f_low"] for r in rs),
                "f_high": max(r["f_high"] for r in rs),
                "noisy": {k: mean([r["noisy"][k]["f"] for r in rs]) for k in NOISE},
                "noisy_low": {k: min(r["noisy"][k]["f_low"] for r in rs) for k in NOISE},
                "noisy_high": {k: max(r["noisy"][k]["f_high"] for r in rs) for k in NOISE},
                "attack": mean([r["attack"]["f"] for r in rs]), "attack_low": min(r["attack"]["f_low"] for r in rs),
                "attack_high": max(r["attack"]["f_high"] for r in rs),
                "epochs": mean([r["epochs"] for r in rs]), "s_per_step": mean([r["s_per_step"] for r in rs]),
                "peak_rss_mib": max(r["peak_rss_mib"] for r in rs),
                "train_ratio_mean": mean([r["train_ratio_mean"] for r in rs if r.get("train_ratio_mean") is not None])}
        base_time = mean([r["s_per_step"] for r in base])
        line["relative_time"] = line["s_per_step"] / base_time if base else None
        out.append(line)
    return out


def verdict(lines: List[Dict[str, Any]]) -> List[str]:
    """Issue 24's rule: a setting pays if a noisy or attacked F1 rises ≥ 1 point over none with the intervals
    apart, and clean F1 does not fall below none's interval."""
    notes = []
    for line in lines:
        if line["system"] == "none":
            continue
        base = next((b for b in lines if (b["corpus"], b["head"], b["system"]) == (line["corpus"], line["head"], "none")),
                    None)
        if base is None:
            continue
        gains = [k for k in NOISE if line["noisy"][k] - base["noisy"][k] >= 0.01
                 and line["noisy_low"][k] > base["noisy_high"][k]]
        if line["attack"] - base["attack"] >= 0.01 and line["attack_low"] > base["attack_high"]:
            gains.append("attack")
        clean_ok = line["f"] >= base["f_low"]
        notes.append(f"{line['corpus']} {line['head']} {LABELS.get(line['system'], line['system'])}: "
                     + (f"pays ({', '.join(gains)})" if gains and clean_ok else
                        "does not pay" + (f" (gains on {', '.join(gains)} but clean F1 below none's interval)"
                                          if gains else "")))
    return notes


def table(lines: List[Dict[str, Any]], title: str) -> str:
    kinds = NOISE
    out = [title, "", "| corpus | head | system | epochs | clean F1 (seeds' 95 % CIs) | " + " | ".join(kinds)
           + " | attacked | s/step | × none | peak RSS MiB |",
           "|---|---|---|---:|---|" + "---:|" * len(kinds) + "---:|---:|---:|---:|"]
    for r in lines:
        name = LABELS.get(r["system"], r["system"]) + (f", ε {r['epsilon']}" if r.get("epsilon") is not None else "")
        rel = f"{r['relative_time']:.2f}" if r.get("relative_time") else "–"
        out.append(f"| {r['corpus'].replace('MTL-', '').replace('-IOB', '')} | {r['head']} | {name} | {r['epochs']:.1f} | "
                   f"{100 * r['f']:.2f} ({100 * r['f_low']:.1f}–{100 * r['f_high']:.1f}) | "
                   + " | ".join(f"{100 * r['noisy'][k]:.2f} ({100 * (r['noisy'][k] - r['f']):+.1f})" for k in kinds)
                   + f" | {100 * r['attack']:.2f} ({100 * (r['attack'] - r['f']):+.1f}) | {r['s_per_step']:.2f} | {rel} | "
                   f"{r['peak_rss_mib']:.0f} |")
    return "\n".join(out)


def run_sweep(args) -> None:
    rows = load_rows(args.json)
    data = convert(args.corpora[0])
    head, seed = args.heads[0], args.seeds[0]
    todo = [("none", None)] + [("fgsm", eps) for eps in args.eps]
    for system, eps in todo:
        row_id = f"{data.name}/{head}/{system}{'' if eps is None else f'-eps{eps}'}/seed{seed}"
        if done(rows, row_id, args):
            continue
        overrides = {} if eps is None else {"components.bioner_adversarial.strategy.epsilon": eps}
        rows[row_id] = one_row(row_id, data, args, head=head, system=system, seed=seed, overrides=overrides)
        save(args.json, args, rows)
    lines = summarise(list(rows.values()))
    text = table(lines, f"FGSM.v2 ε sweep ({args.backbone}, {head} head, {data.name} {args.split}, {args.epochs} epoch(s), "
                        f"seed {seed}; "
                        "ε relative to the mean token norm, per token; noisy and attacked F1 with their change from clean)")
    print("\n" + text)
    save(args.json, args, rows, summary=lines, markdown=text)


def run_train(args) -> None:
    rows = load_rows(args.json)
    plan = [(corpus, head, system, seed) for seed in args.seeds for corpus in args.corpora for head in args.heads
            for system in args.systems]
    for corpus, head, system, seed in plan:
        data = convert(corpus)
        row_id = f"{data.name}/{head}/{system}/seed{seed}"
        if done(rows, row_id, args):
            continue
        rows[row_id] = one_row(row_id, data, args, head=head, system=system, seed=seed, overrides={})
        save(args.json, args, rows)
    lines = summarise(list(rows.values()))
    text = table(lines, f"{args.backbone}, up to {args.epochs} epochs × {args.batch_size} sentences, best dev checkpoint; "
                        f"means over seeds {', '.join(map(str, sorted({r['seed'] for r in rows.values()})))}; test F1 (%), noisy and attacked "
                        f"(FGSM ε {args.attack} relative) with their change from clean")
    notes = verdict(lines)
    print("\n" + text + "\n\n" + "\n".join(f"- {n}" for n in notes))
    save(args.json, args, rows, summary=lines, markdown=text, verdict=notes)


def run_memory(args) -> None:
    rows = {}
    data = convert(args.corpora[0])
    for on in (False, True):
        out = WORK / "runs" / f"memory-gc-{on}"
        shutil.rmtree(out, ignore_errors=True)
        run([sys.executable, "-m", "spacy_bioner", "train", "transformer", "--backbone", args.backbone,
             "--head", args.heads[0], "-o", str(out), "--paths.train", str(data / "train.spacy"),
             "--paths.dev", str(data / "dev.spacy"), "--training.max_steps", str(args.steps),
             "--training.eval_frequency", str(args.steps), "--training.batcher.size", str(args.batch_size),
             "--training.logger.progress_bar", "false", "--adversarial", "fgsm",
             "--components.transformer.model.gradient_checkpointing", str(on).lower()], out / "train.log")
        record = json.loads((out / "run.json").read_text(encoding="utf8"))
        loop = record["train_seconds"] - record["eval_seconds"] - record["save_seconds"]
        rows[f"gc-{on}"] = {"id": f"gc-{on}", "gradient_checkpointing": on, "peak_rss_mib": record["peak_rss_mib"],
                            "peak_gpu_mib": record["peak_gpu_mib"], "s_per_step": loop / max(record["steps"], 1)}
        shutil.rmtree(out, ignore_errors=True)
    print("| gradient checkpointing | peak RSS (MiB) | s/step |\n|---|---:|---:|")
    for r in rows.values():
        print(f"| {'on' if r['gradient_checkpointing'] else 'off'} | {r['peak_rss_mib']:.0f} | {r['s_per_step']:.2f} |")
    save(args.json, args, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["sweep", "train", "memory"])
    parser.add_argument("--corpora", nargs="+", default=["MTL-NCBI-disease-IOB"],
                        help="folders in ../shared/corpora, or paths")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--heads", nargs="+", default=["tagger"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--eps", nargs="+", type=float, default=[0.01, 0.03, 0.1, 0.3], help="sweep: FGSM.v2 ε values")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: 3 (train), 1 (sweep)")
    parser.add_argument("--evals-per-epoch", type=int, default=2)
    parser.add_argument("--patience-epochs", type=float, default=1.0, help="stop after this many epochs without a dev gain")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="memory: steps per run")
    parser.add_argument("--attack", type=float, default=None, help="test-time FGSM ε (default: the shipped FGSM ε)")
    parser.add_argument("--train-limit", type=int, default=0, help="train on the first N documents (0: all)")
    parser.add_argument("--split", choices=["dev", "test"], default=None,
                        help="the split scored (default: dev for sweep, test otherwise)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--keep-models", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.epochs is None:
        args.epochs = 1 if args.table == "sweep" else 3
    if args.attack is None:
        args.attack = default_epsilon()
    if args.split is None:
        args.split = "dev" if args.table == "sweep" else "test"
    {"sweep": run_sweep, "train": run_train, "memory": run_memory}[args.table](args)


if __name__ == "__main__":
    main()
