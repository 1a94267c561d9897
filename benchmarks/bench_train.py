"""Train NER three ways on the same corpus and print one table:

* spacy-bioner (configs/transformer.cfg + a backbone file, e.g. MiniLM),
* Hugging Face's own recipe: AutoModelForTokenClassification + Trainer, same
  weights, same data, same epochs, batch size (sentences), learning rate and
  linear warm-up/decay,
* the CPU tok2vec baseline (configs/tok2vec.cfg).

Every system is scored on the test split by the same scorer (seqeval strict,
IOB2; spaCy's scorer agrees to 1e-9). Each run is a subprocess, timed from the
outside, with its peak RSS.

    python benchmarks/bench_train.py --corpus ../shared/corpora/MTL-NCBI-disease-IOB --epochs 3

Needs the `bench` extra (accelerate, for transformers' Trainer).
"""
import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DEFAULT_CORPUS = PROJECT.parent / "shared" / "corpora" / "MTL-NCBI-disease-IOB"


def run_timed(cmd: List[str]) -> Dict[str, float]:
    """Run a command; wall seconds and its peak RSS in MiB (GNU time's %M)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    wrapped = [gnu_time, "-f", "__maxrss_kib=%M"] + cmd if Path(gnu_time).exists() else cmd
    start = time.perf_counter()
    proc = subprocess.run(wrapped, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")
    found = re.findall(r"__maxrss_kib=(\d+)", proc.stdout)
    return {"wall_s": wall, "peak_rss_mib": int(found[-1]) / 1024 if found else float("nan"), "log": proc.stdout}


def split_files(corpus: Path) -> Dict[str, Path]:
    files = {}
    for split in ("train", "dev", "test"):
        found = [p for p in corpus.iterdir() if p.stem == split and p.suffix in (".tsv", ".txt", ".conll")]
        if not found:
            sys.exit(f"{corpus}: no {split} file")
        files[split] = found[0]
    return files


# ---------------------------------------------------------------- HF worker
def hf_worker(args: argparse.Namespace) -> None:
    """Fine-tune with transformers' Trainer; write test predictions as IOB2."""
    import numpy as np
    import torch
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    from spacy_bioner.models.backbones import resolve_backbone
    from spacy_bioner.corpus.conll import read_docs
    from spacy_bioner.corpus.schemes import encode

    torch.manual_seed(args.seed)
    path = resolve_backbone(args.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    train_docs, test_docs = read_docs(args.train), read_docs(args.test)
    labels = ["O"] + sorted({f"{p}-{e.label_}" for d in train_docs for e in d.ents for p in "BI"})
    label_id = {l: i for i, l in enumerate(labels)}

    def sentences(docs):
        for doc in docs:
            for sent in doc.sents:
                spans = [(e.start - sent.start, e.end - sent.start, e.label_) for e in sent.ents]
                yield [t.text for t in sent], encode(spans, len(sent), scheme="iob2")

    def encode_sentence(words, tags=None):
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=512)
        if tags is not None:
            previous, ids = None, []
            for w in enc.word_ids():
                ids.append(-100 if w is None or w == previous else label_id.get(tags[w], 0))
                previous = w
            enc["labels"] = ids
        return enc

    train = [encode_sentence(w, t) for w, t in sentences(train_docs)]
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_id)
    steps = args.epochs * math.ceil(len(train) / args.batch_size)
    targs = TrainingArguments(
        output_dir=args.workdir, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        num_train_epochs=args.epochs, warmup_steps=int(0.1 * steps), lr_scheduler_type="linear",
        weight_decay=0.01, max_grad_norm=1.0, save_strategy="no", eval_strategy="no", logging_steps=50,
        report_to=[], seed=args.seed, use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train,
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    model.eval()
    out_docs = []
    for doc in test_docs:
        pred_tags = []
        for sent in doc.sents:
            words = [t.text for t in sent]
            enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=512, return_tensors="pt")
            with torch.no_grad():
                logits = model(**{k: v for k, v in enc.items()}).logits[0].numpy()
            tags, seen = ["O"] * len(words), set()
            for i, w in enumerate(enc.word_ids()):
                if w is not None and w not in seen:
                    seen.add(w)
                    tags[w] = labels[int(np.argmax(logits[i]))]
            pred_tags.extend(tags)
        out_docs.append((doc, pred_tags))
    with open(args.pred, "w", encoding="utf8") as f:
        for doc, tags in out_docs:
            for sent in doc.sents:
                f.write("".join(f"{t.text}\t{tags[t.i]}\n" for t in sent) + "\n")
    Path(args.pred + ".json").write_text(json.dumps({"train_s": train_s, "steps": steps}))


# ---------------------------------------------------------------- main
def score(gold: Path, pred: Path) -> Dict[str, float]:
    from spacy.vocab import Vocab

    from spacy_bioner.corpus.readers import load_corpus_docs
    from spacy_bioner.evaluation.scoring import align_docs, score_pairs

    vocab = Vocab()
    m = score_pairs(align_docs(load_corpus_docs(gold, vocab=vocab), load_corpus_docs(pred, vocab=vocab)), n_bootstrap=0)
    return {"p": m["seqeval"]["precision"], "r": m["seqeval"]["recall"], "f": m["seqeval"]["f1"],
            "spacy_f": m["spacy"]["ents_f"]}


def count_words(path: Path) -> int:
    return sum(1 for line in path.open(encoding="utf8") if line.strip() and not line.startswith("-DOCSTART-"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--backbone", default="sentence-transformers/all-MiniLM-L6-v2")
    parser.add_argument("--backbone-config", type=Path, default=PROJECT / "configs" / "backbones" / "minilm.cfg")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tok2vec-steps", type=int, default=3000)
    parser.add_argument("--only", choices=["spacy", "hf", "tok2vec"], action="append")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--train", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--test", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pred", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker:
        hf_worker(args)
        return
    if not args.corpus.exists():
        sys.exit(f"{args.corpus}: not found")
    systems = args.only or ["spacy", "hf", "tok2vec"]
    files = split_files(args.corpus)
    train_words = count_words(files["train"])
    n_sents = sum(1 for block in files["train"].read_text(encoding="utf8").split("\n\n") if block.strip())
    steps = args.epochs * math.ceil(n_sents / args.batch_size)
    py = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([py, "-m", "spacy_bioner", "convert", str(args.corpus), str(tmp / "corpus")],
                       check=True, stdout=subprocess.DEVNULL)
        data = {s: tmp / "corpus" / f"{files[s].stem}.spacy" for s in files}
        if "spacy" in systems:
            out = tmp / "spacy"
            run = run_timed([
                py, "-m", "spacy_bioner", "train", str(PROJECT / "configs" / "transformer.cfg"),
                "--backbone", str(args.backbone_config), "--output", str(out),
                "--paths.train", str(data["train"]), "--paths.dev", str(data["dev"]),
                "--paths.backbone", args.backbone, "--system.seed", str(args.seed),
                "--training.max_epochs", str(args.epochs), "--training.max_steps", "0",
                "--training.eval_frequency", "1000000", "--training.batcher.size", str(args.batch_size),
                "--training.optimizer.learn_rate.initial_rate", str(args.lr),
                "--training.optimizer.learn_rate.total_steps", str(steps),
                "--training.logger.progress_bar", "false",
            ])
            subprocess.run([py, "-m", "spacy_bioner", "evaluate", str(out / "model-last"), str(data["test"]),
                            "-o", str(tmp / "spacy.json"), "--bootstrap", "0"], check=True, stdout=subprocess.DEVNULL)
            m = json.loads((tmp / "spacy.json").read_text())
            rows.append({"system": "spacy-bioner (MiniLM)", **run, "train_words_per_s": args.epochs * train_words / run["wall_s"],
                         "p": m["seqeval"]["precision"], "r": m["seqeval"]["recall"], "f": m["seqeval"]["f1"],
                         "predict_words_per_s": m["words_per_second"]})
        if "hf" in systems:
            pred = tmp / "hf_pred.tsv"
            run = run_timed([py, __file__, "--hf-worker", "--backbone", args.backbone, "--train", str(files["train"]),
                             "--test", str(files["test"]), "--pred", str(pred), "--workdir", str(tmp / "hf"),
                             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                             "--seed", str(args.seed)])
            s = score(files["test"], pred)
            # The worker's wall time also covers test prediction; words/s uses trainer.train() alone.
            loop_s = json.loads(Path(str(pred) + ".json").read_text())["train_s"]
            rows.append({"system": "HF Trainer (MiniLM)", **run, "train_loop_s": loop_s,
                         "train_words_per_s": args.epochs * train_words / loop_s, **s})
        if "tok2vec" in systems:
            out = tmp / "tok2vec"
            run = run_timed([py, "-m", "spacy", "train", str(PROJECT / "configs" / "tok2vec.cfg"), "--output", str(out),
                             "--paths.train", str(data["train"]), "--paths.dev", str(data["dev"]),
                             "--training.max_steps", str(args.tok2vec_steps), "--system.seed", str(args.seed)])
            subprocess.run([py, "-m", "spacy_bioner", "evaluate", str(out / "model-best"), str(data["test"]),
                            "-o", str(tmp / "t2v.json"), "--bootstrap", "0"], check=True, stdout=subprocess.DEVNULL)
            m = json.loads((tmp / "t2v.json").read_text())
            rows.append({"system": f"tok2vec CNN ({args.tok2vec_steps} steps)", **run, "train_words_per_s": None,
                         "p": m["seqeval"]["precision"], "r": m["seqeval"]["recall"], "f": m["seqeval"]["f1"],
                         "predict_words_per_s": m["words_per_second"]})
    print(f"\n{args.corpus.name}: train {train_words:,} words / {n_sents:,} sentences; {args.epochs} epochs, "
          f"batch {args.batch_size} sentences, lr {args.lr}; test scored with seqeval strict\n")
    print("spacy-bioner's words/s counts its whole `train` command (start-up, step-0 dev pass); "
          "HF's counts trainer.train() only, so the comparison favours HF.\n")
    print("| system | wall (s) | train loop (s) | train words/s | peak RSS (MiB) | test P | test R | test F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        wps = f"{r['train_words_per_s']:.0f}" if r.get("train_words_per_s") else "–"
        loop = f"{r['train_loop_s']:.0f}" if r.get("train_loop_s") else "–"
        print(f"| {r['system']} | {r['wall_s']:.0f} | {loop} | {wps} | {r['peak_rss_mib']:.0f} | "
              f"{100 * r['p']:.2f} | {100 * r['r']:.2f} | {100 * r['f']:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "log"} for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
