"""Adversarial training (none / FGSM / PGD × head) at equal steps, scored clean and on noisy test copies.

    python benchmarks/bench_adversarial.py train --steps 600 --json adversarial.json
    python benchmarks/bench_adversarial.py memory --steps 20        # gradient checkpointing: peak RSS on/off

``train``: MiniLM (``--backbone minilm``) on one corpus (NCBI-disease from
../shared/corpora by default), every method × head for the same number of
steps, then ``spacy-bioner evaluate --noise all`` on the test split (swaps drawn
from the training split): strict F1 with its 95 % bootstrap interval, F1 per
noise kind, and training seconds per step (loop time less dev scoring and
saving) relative to no perturbation; plus an FGSM ε sweep on the first head.
The ε, α and K are this project's defaults (configs/adversarial/), not published
values. ``--train-limit`` trains on the first N documents only (quick checks).

``memory``: the same short run with ``gradient_checkpointing`` off and on (each
in its own process), peak RSS (and peak GPU memory with ``--gpu-id``) from run.json.
"""
import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CORPORA = PROJECT.parent / "shared" / "corpora"
NOISE = ["typo", "typo_mention", "typo_context", "case", "hyphen", "spelling", "swap"]


def run(cmd: List[str]) -> None:
    subprocess.run(cmd, check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)


def convert(corpus: str, tmp: Path) -> Path:
    folder = Path(corpus) if Path(corpus).is_dir() else CORPORA / corpus
    if not folder.exists():
        sys.exit(f"{folder}: not found")
    run([sys.executable, "-m", "spacy_bioner", "convert", str(folder), str(tmp / folder.name)])
    return tmp / folder.name


def train(data: Path, out: Path, args, *, head: str, method: Optional[str], extra: Dict[str, Any]) -> Dict[str, Any]:
    cmd = [sys.executable, "-m", "spacy_bioner", "train", "transformer", "--backbone", args.backbone, "--head", head,
           "-o", str(out), "--paths.train", str(data / "train.spacy"), "--paths.dev", str(data / "dev.spacy"),
           "--training.max_steps", str(args.steps), "--training.eval_frequency", str(args.steps),
           "--training.patience", "0", "--training.batcher.size", str(args.batch_size),
           "--system.seed", str(args.seed), "--training.logger.progress_bar", "false", "--gpu-id", str(args.gpu_id)]
    if method:
        cmd += ["--adversarial", method]
    if args.train_limit:
        cmd += ["--corpora.train.limit", str(args.train_limit)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    run(cmd)
    return json.loads((out / "run.json").read_text(encoding="utf8"))


def evaluate(model: Path, data: Path, out: Path, args) -> Dict[str, Any]:
    run([sys.executable, "-m", "spacy_bioner", "evaluate", str(model), str(data / "test.spacy"), "-o", str(out),
         "--bootstrap", str(args.bootstrap), "--noise", ",".join(NOISE), "--noise-train", str(data / "train.spacy"),
         "--seed", str(args.seed), "--gpu-id", str(args.gpu_id)])
    return json.loads(out.read_text(encoding="utf8"))


def seconds_per_step(record: Dict[str, Any]) -> float:
    loop = record["train_seconds"] - record["eval_seconds"] - record["save_seconds"]
    return loop / max(record["steps"], 1)


def run_train(args) -> Dict[str, Any]:
    rows: List[Dict[str, Any]] = []
    sweep: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = convert(args.corpus, tmp)

        def one(head: str, method: Optional[str], extra: Dict[str, Any], tag: str) -> Dict[str, Any]:
            out = tmp / f"{head}-{tag}"
            record = train(data, out, args, head=head, method=method, extra=extra)
            m = evaluate(out / "model-last", data, out / "test.json", args)
            rob = m["robustness"]
            row = {"head": head, "method": method or "none", **{k.split(".")[-1]: v for k, v in extra.items()},
                   "steps": record["steps"], "f": rob["clean"]["f"], "ci_low": rob["clean"]["f_low"],
                   "ci_high": rob["clean"]["f_high"], "noisy_f": {k: v["f"] for k, v in rob["kinds"].items()},
                   "s_per_step": seconds_per_step(record), "peak_rss_mib": record["peak_rss_mib"]}
            print(f"{head} {tag}: F1 {100 * row['f']:.2f}, {row['s_per_step']:.2f} s/step", file=sys.stderr)
            return row

        for head in args.heads:
            for method in args.methods:
                rows.append(one(head, None if method == "none" else method, {}, method))
        base = {r["head"]: r["s_per_step"] for r in rows if r["method"] == "none"}
        for r in rows:
            r["relative_time"] = r["s_per_step"] / base[r["head"]] if base.get(r["head"]) else None
        for eps in args.eps_sweep:
            sweep.append(one(args.heads[0], "fgsm", {"components.bioner_adversarial.strategy.epsilon": eps},
                             f"fgsm-eps{eps}"))
    kinds = NOISE
    print(f"\n{args.backbone} on {args.corpus}, {args.steps} steps × {args.batch_size} sentences, seed {args.seed}"
          f"{f', first {args.train_limit} training documents' if args.train_limit else ''}; test split, "
          "spaCy strict F1 (%); noisy copies: rate 0.2, seeded; time per step relative to none\n")
    print("| head | method | clean F1 (95 % CI) | " + " | ".join(kinds) + " | time/step |")
    print("|---|---|---|" + "---:|" * len(kinds) + "---:|")
    for r in rows:
        rel = f"{r['relative_time']:.2f}×" if r.get("relative_time") else "–"
        print(f"| {r['head']} | {r['method']} | {100 * r['f']:.2f} ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f}) | "
              + " | ".join(f"{100 * r['noisy_f'][k]:.2f}" for k in kinds) + f" | {rel} |")
    if sweep:
        print(f"\nFGSM ε sweep ({args.heads[0]} head; L2 per sequence on the word embeddings)\n")
        print("| ε | clean F1 (95 % CI) | mean noisy F1 |")
        print("|---:|---|---:|")
        for r in sweep:
            mean_noisy = sum(r["noisy_f"].values()) / len(r["noisy_f"])
            print(f"| {r['epsilon']} | {100 * r['f']:.2f} ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f}) | "
                  f"{100 * mean_noisy:.2f} |")
    return {"rows": rows, "eps_sweep": sweep}


def run_memory(args) -> Dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = convert(args.corpus, tmp)
        for on in (False, True):
            record = train(data, tmp / f"gc-{on}", args, head=args.heads[0], method=None,
                           extra={"components.transformer.model.gradient_checkpointing": str(on).lower()})
            rows.append({"gradient_checkpointing": on, "peak_rss_mib": record["peak_rss_mib"],
                         "peak_gpu_mib": record["peak_gpu_mib"], "s_per_step": seconds_per_step(record)})
    print(f"\n{args.backbone}, {args.steps} steps × {args.batch_size} sentences, {args.heads[0]} head\n")
    print("| gradient checkpointing | peak RSS (MiB) | peak GPU (MiB) | s/step |")
    print("|---|---:|---:|---:|")
    for r in rows:
        gpu = f"{r['peak_gpu_mib']:.0f}" if r["peak_gpu_mib"] is not None else "–"
        print(f"| {'on' if r['gradient_checkpointing'] else 'off'} | {r['peak_rss_mib']:.0f} | {gpu} | "
              f"{r['s_per_step']:.2f} |")
    return {"rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["train", "memory"])
    parser.add_argument("--corpus", default="MTL-NCBI-disease-IOB", help="folder in ../shared/corpora, or a path")
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--heads", nargs="+", default=["ner", "tagger"])
    parser.add_argument("--methods", nargs="+", default=["none", "fgsm", "pgd"])
    parser.add_argument("--eps-sweep", nargs="*", type=float, default=[0.1, 0.25, 1.0],
                        help="FGSM ε values (the default 0.5 is in the main table)")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-limit", type=int, default=0, help="train on the first N documents (0: all)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run_train(args) if args.table == "train" else run_memory(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": args.table, "args": {k: str(v) for k, v in vars(args).items()},
                                         **result}, indent=2) + "\n")


if __name__ == "__main__":
    main()
