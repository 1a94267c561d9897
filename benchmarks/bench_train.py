"""Train NER three ways on the same corpus and print one table:

* spacy-bioner (the shipped ``transformer`` base config + a backbone file,
  ``minilm`` by default), through ``spacy-bioner train``;
* Hugging Face's own recipe: AutoModelForTokenClassification + Trainer, same
  weights, same data, same epochs, batch size (sentences), learning rate and
  linear warm-up/decay;
* the tok2vec CNN baseline (the shipped ``tok2vec`` config), also through
  ``spacy-bioner train``.

Every system is scored on the test split by the same scorer (seqeval strict,
IOB2; spaCy's scorer agrees to 1e-9). Each run is a subprocess, timed from the
outside (wall seconds, peak RSS from GNU time). The spacy-bioner runs' own
numbers come from the run builder's record, ``OUTPUT/run.json``: seconds and
words/s of the training loop alone (no start-up, config or model loading),
steps, epochs and peak GPU memory; their prediction words/s and test scores
come from ``spacy-bioner evaluate``. The HF worker measures the same things
around ``trainer.train()`` and two predictions of the test split with the
trained model: a batched forward (64 sentences per batch, sorted by length,
padded; the ``HF Trainer`` row) and HF's stock ``Trainer.predict`` (batches of
64 in file order, tokenization timed; its own row, same model, scored on its own).
The sorted-forward prediction runs ``--predict-repeats`` times per system (3; a fresh
``evaluate`` process each time for spacy-bioner, so every pass includes its cold start,
the same forward again in the warm worker for HF) and the table shows the median
words/s: on a small shared machine one pass can be 30 % off. Both choices favour HF.
``Trainer.predict`` runs once.

spacy-bioner's learning-rate schedule is fitted by the run builder to
``--epochs`` × its batches per epoch, as HF's Trainer fits its own.

    python benchmarks/bench_train.py --corpus ../shared/corpora/MTL-NCBI-disease-IOB --epochs 3
    python benchmarks/bench_train.py --epochs 3 --gpu-id 0      # on a GPU (docs/gpu.md)

Needs the `bench` extra (accelerate, for transformers' Trainer).
"""
import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DEFAULT_CORPUS = PROJECT.parent / "shared" / "corpora" / "MTL-NCBI-disease-IOB"
HF_PREDICT_BATCH = 64


def run_timed(cmd: List[str], env: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Run a command; wall seconds and its peak RSS in MiB (GNU time's %M)."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    wrapped = [gnu_time, "-f", "__maxrss_kib=%M"] + cmd if Path(gnu_time).exists() else cmd
    start = time.perf_counter()
    proc = subprocess.run(wrapped, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-4000:]}")
    found = re.findall(r"__maxrss_kib=(\d+)", proc.stdout)
    return {"wall_s": wall, "peak_rss_mib": int(found[-1]) / 1024 if found else None, "log": proc.stdout}


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
    """Fine-tune with transformers' Trainer; write test predictions as IOB2 and the run's numbers as JSON."""
    import torch
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    from spacy_bioner.corpus.conll import doc_tags, read_docs
    from spacy_bioner.corpus.sentences import sentences
    from spacy_bioner.models.backbones import resolve_backbone

    on_gpu = args.gpu_id >= 0
    if on_gpu and not torch.cuda.is_available():
        sys.exit(f"--gpu-id {args.gpu_id}: torch sees no CUDA GPU (a CPU-only torch build?); docs/gpu.md")
    device = torch.device(f"cuda:{args.gpu_id}" if on_gpu else "cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    torch.manual_seed(args.seed)
    path = resolve_backbone(args.backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    train_docs, test_docs = read_docs(args.train), read_docs(args.test)
    labels = ["O"] + sorted({f"{p}-{e.label_}" for d in train_docs for e in d.ents for p in "BI"})
    label_id = {l: i for i, l in enumerate(labels)}

    def tagged_sentences(docs):
        for doc in docs:
            for sent, tags in zip(sentences(doc), doc_tags(doc, scheme="iob2")):
                yield [t.text for t in sent], tags

    def encode_sentence(words, tags):
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=512)
        previous, ids = None, []
        for w in enc.word_ids():
            ids.append(-100 if w is None or w == previous else label_id.get(tags[w], 0))
            previous = w
        enc["labels"] = ids
        return enc

    train = [encode_sentence(w, t) for w, t in tagged_sentences(train_docs)]
    model = AutoModelForTokenClassification.from_pretrained(
        path, num_labels=len(labels), id2label=dict(enumerate(labels)), label2id=label_id)
    model.to(device)
    steps = args.epochs * math.ceil(len(train) / args.batch_size)
    targs = TrainingArguments(
        output_dir=args.workdir, per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        num_train_epochs=args.epochs, warmup_steps=int(0.1 * steps), lr_scheduler_type="linear",
        weight_decay=0.01, max_grad_norm=1.0, save_strategy="no", eval_strategy="no", logging_steps=50,
        report_to=[], seed=args.seed, use_cpu=not on_gpu, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train,
                      data_collator=DataCollatorForTokenClassification(tokenizer))
    if on_gpu:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    trainer.train()
    if on_gpu:
        torch.cuda.synchronize(device)
    train_s = time.perf_counter() - start
    peak_gpu_mib = torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else None

    # Prediction: every test sentence, batched by length; the first subword of each word decides its tag.
    model.eval()
    test_sents = [[t.text for t in sent] for doc in test_docs for sent in sentences(doc)]
    order = sorted(range(len(test_sents)), key=lambda i: len(test_sents[i]))
    predicted: List[List[str]] = [["O"] * len(words) for words in test_sents]
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    predict_times = []
    for _ in range(args.predict_repeats):  # the same pass again: the median is what the table shows
        start = time.perf_counter()
        for b in range(0, len(order), HF_PREDICT_BATCH):
            batch = [i for i in order[b:b + HF_PREDICT_BATCH] if test_sents[i]]
            if not batch:
                continue
            enc = tokenizer([test_sents[i] for i in batch], is_split_into_words=True, truncation=True, max_length=512,
                            padding=True, return_tensors="pt")
            with torch.no_grad():
                logits = model(**{k: v.to(model.device) for k, v in enc.items()}).logits
            best = logits.argmax(dim=-1).cpu().numpy()
            for row, i in enumerate(batch):
                seen = set()
                for pos, w in enumerate(enc.word_ids(batch_index=row)):
                    if w is not None and w not in seen:
                        seen.add(w)
                        predicted[i][w] = labels[int(best[row, pos])]
        if on_gpu:
            torch.cuda.synchronize(device)
        predict_times.append(time.perf_counter() - start)
    predict_s = statistics.median(predict_times)
    n_test_words = sum(len(words) for words in test_sents)

    predict_peak_gpu_mib = torch.cuda.max_memory_allocated(device) / 2**20 if on_gpu else None

    # HF's stock prediction: Trainer.predict over the test set (encoding included, file order,
    # DataCollatorForTokenClassification padding each batch of 64 to its longest), then the same first-subword tags.
    if tokenizer.padding_side != "right":
        sys.exit(f"{args.backbone}: its tokenizer pads on the {tokenizer.padding_side}; word_ids() positions need right padding")
    trainer.args.per_device_eval_batch_size = HF_PREDICT_BATCH
    start = time.perf_counter()
    rows = [i for i, words in enumerate(test_sents) if words]
    encoded = [tokenizer(test_sents[i], is_split_into_words=True, truncation=True, max_length=512) for i in rows]
    best = trainer.predict([dict(enc) for enc in encoded]).predictions.argmax(-1)
    stock: List[List[str]] = [["O"] * len(words) for words in test_sents]
    for row, (i, enc) in enumerate(zip(rows, encoded)):
        seen = set()
        for pos, w in enumerate(enc.word_ids()):
            if w is not None and w not in seen:
                seen.add(w)
                stock[i][w] = labels[int(best[row, pos])]
    if on_gpu:
        torch.cuda.synchronize(device)
    trainer_predict_s = time.perf_counter() - start
    agree = sum(stock[i] == predicted[i] for i in rows) / max(len(rows), 1)
    with open(args.pred + ".trainer_predict.tsv", "w", encoding="utf8") as f:
        for words, tags in zip(test_sents, stock):
            f.write("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\n")
    with open(args.pred, "w", encoding="utf8") as f:
        for words, tags in zip(test_sents, predicted):
            f.write("".join(f"{w}\t{t}\n" for w, t in zip(words, tags)) + "\n")
    Path(args.pred + ".json").write_text(json.dumps({
        "train_s": train_s, "steps": int(trainer.state.global_step), "epochs": float(trainer.state.epoch or 0),
        "peak_gpu_mib": peak_gpu_mib,
        "predict_peak_gpu_mib": predict_peak_gpu_mib,
        "predict_s": predict_s, "predict_words_per_s": n_test_words / predict_s if predict_s else None,
        "predict_words_per_s_runs": [n_test_words / t for t in predict_times],
        "trainer_predict_s": trainer_predict_s, "trainer_predict_words_per_s": n_test_words / trainer_predict_s,
        "trainer_predict_same_tags": agree,
        "device": str(device), "labels": labels, "n_train_sentences": len(train),
    }))


# ---------------------------------------------------------------- main
def score(gold: Path, pred: Path) -> Dict[str, float]:
    from spacy.vocab import Vocab

    from spacy_bioner.corpus.readers import load_corpus_docs
    from spacy_bioner.evaluation.scoring import align_docs, score_pairs

    vocab = Vocab()
    m = score_pairs(align_docs(load_corpus_docs(gold, vocab=vocab), load_corpus_docs(pred, vocab=vocab)), n_bootstrap=0)
    return {"p": m["seqeval"]["precision"], "r": m["seqeval"]["recall"], "f": m["seqeval"]["f1"],
            "spacy_f": m["spacy"]["ents_f"]}


def corpus_size(path: Path) -> Dict[str, int]:
    """Words and sentences of a corpus file, as spacy-bioner reads it."""
    from spacy_bioner.corpus.conll import read_docs
    from spacy_bioner.corpus.sentences import n_sentences

    docs = read_docs(path)
    return {"words": sum(len(d) for d in docs), "sentences": sum(n_sentences(d) for d in docs if len(d))}


def check_gpu(gpu_id: int, systems: List[str]) -> None:
    """Fail before any training when --gpu-id cannot work here."""
    if gpu_id < 0:
        return
    if any(s in systems for s in ("spacy", "tok2vec")):
        from spacy_bioner.gpu import gpu_problem

        problem = gpu_problem(gpu_id)
        if problem:
            sys.exit(problem)
    import torch

    if not torch.cuda.is_available() or gpu_id >= torch.cuda.device_count():
        sys.exit(f"--gpu-id {gpu_id}: torch sees no such CUDA GPU (a CPU-only torch build?); docs/gpu.md")


def hf_worker_env(gpu_id: int) -> Dict[str, str]:
    """The HF worker sees only the chosen GPU (as cuda:0), so Trainer never spreads over others with DataParallel."""
    env = dict(os.environ)
    if gpu_id >= 0:
        visible = [d for d in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        env["CUDA_VISIBLE_DEVICES"] = visible[gpu_id] if gpu_id < len(visible) else str(gpu_id)
    return env


def evaluate(py: str, model: Path, test: Path, metrics: Path, gpu_id: int, extra: List[str],
             repeats: int = 1) -> Dict[str, Any]:
    """``spacy-bioner evaluate`` on the test split, ``repeats`` times: median prediction words/s, and scores."""
    speeds = []
    for _ in range(repeats):
        subprocess.run([py, "-m", "spacy_bioner", "evaluate", str(model), str(test), "-o", str(metrics),
                        "--bootstrap", "0", "--gpu-id", str(gpu_id)] + extra, check=True, stdout=subprocess.DEVNULL)
        m = json.loads(metrics.read_text(encoding="utf8"))
        speeds.append(m["words_per_second"])
    return {"predict_words_per_s": statistics.median(speeds), "predict_words_per_s_runs": speeds,
            "predict_peak_gpu_mib": m.get("peak_gpu_mib"),
            "p": m["seqeval"]["precision"], "r": m["seqeval"]["recall"], "f": m["seqeval"]["f1"],
            "spacy_f": m["spacy"]["ents_f"], "inference": m.get("inference")}


def spacy_bioner_run(py: str, base: str, out: Path, test: Path, metrics: Path, gpu_id: int, model: str,
                     train_args: List[str], int8: bool = False, repeats: int = 1) -> Dict[str, Any]:
    """``spacy-bioner train`` (timed from outside) + ``run.json`` + ``spacy-bioner evaluate`` on the test split
    (and again with ``--int8`` when asked: its words/s and scores under ``int8``)."""
    run = run_timed([py, "-m", "spacy_bioner", "train", base, "-o", str(out), "--gpu-id", str(gpu_id)] + train_args)
    rec = json.loads((out / "run.json").read_text(encoding="utf8"))
    return {
        **run,
        "train_loop_s": rec["train_seconds"], "train_words_per_s": rec["train_words_per_second"],
        "loop_peak_rss_mib": rec["peak_rss_mib"], "peak_gpu_mib": rec["peak_gpu_mib"],
        "steps": rec["steps"], "epochs": rec["epochs"], "train_words_seen": rec["train_words"],
        "run_wall_s": rec["wall_seconds"], "schedule": rec.get("schedule"), "learn_rates": rec.get("learn_rates"),
        **evaluate(py, out / model, test, metrics, gpu_id, [], repeats),
        "int8": evaluate(py, out / model, test, metrics, gpu_id, ["--int8"], repeats) if int8 else None,
    }


def fmt(value: Optional[float], spec: str = ".0f") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--backbone", default="sentence-transformers/all-MiniLM-L6-v2",
                        help="hub name or local folder, used by both spacy-bioner and HF")
    parser.add_argument("--backbone-config", default="minilm",
                        help="spacy-bioner backbone overrides: a shipped name (minilm, biobert…) or a path")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tok2vec-steps", type=int, default=3000)
    parser.add_argument("--gpu-id", type=int, default=-1, help="GPU id for every system, -1 for CPU")
    parser.add_argument("--only", choices=["spacy", "hf", "tok2vec"], action="append")
    parser.add_argument("--head", choices=["ner", "tagger"], action="append",
                        help="spacy-bioner's entity head(s): ner (transition-based), tagger (bioner_tagger); repeatable")
    parser.add_argument("--predict-repeats", type=int, default=3,
                        help="prediction passes per system (a fresh `evaluate` each for spacy-bioner, the same "
                             "forward again for HF); the table shows the median words/s")
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
    check_gpu(args.gpu_id, systems)
    files = split_files(args.corpus)
    size = corpus_size(files["train"])
    short = args.backbone.rstrip("/").split("/")[-1]
    py = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([py, "-m", "spacy_bioner", "convert", str(args.corpus), str(tmp / "corpus")],
                       check=True, stdout=subprocess.DEVNULL)
        data = {s: tmp / "corpus" / f"{files[s].stem}.spacy" for s in files}
        corpora = ["--paths.train", str(data["train"]), "--paths.dev", str(data["dev"]), "--system.seed", str(args.seed)]
        for head in (args.head or ["ner"]) if "spacy" in systems else []:
            # max_epochs bounds the run; the run builder fits the schedule's total_steps to it.
            row = spacy_bioner_run(py, "transformer", tmp / f"spacy-{head}", data["test"], tmp / f"spacy-{head}.json",
                                   args.gpu_id, "model-last", corpora + [
                                       "--head", head,
                                       "--backbone", args.backbone_config, "--paths.backbone", args.backbone,
                                       "--training.max_epochs", str(args.epochs), "--training.max_steps", "0",
                                       "--training.eval_frequency", "1000000", "--training.patience", "0",
                                       "--training.batcher.size", str(args.batch_size),
                                       "--training.optimizer.learn_rate.initial_rate", str(args.lr),
                                       "--training.logger.progress_bar", "false"], int8=args.gpu_id < 0,
                                   repeats=args.predict_repeats)
            rows.append({"system": f"spacy-bioner {head} ({short})", **row})
            if row["int8"]:
                rows.append({"system": f"spacy-bioner {head} ({short}), int8 prediction (same model)",
                             "wall_s": None, "peak_rss_mib": None, **row["int8"]})
        if "hf" in systems:
            pred = tmp / "hf_pred.tsv"
            worker_gpu = 0 if args.gpu_id >= 0 else -1  # the worker sees only the chosen GPU
            run = run_timed([py, __file__, "--hf-worker", "--backbone", args.backbone, "--train", str(files["train"]),
                             "--test", str(files["test"]), "--pred", str(pred), "--workdir", str(tmp / "hf"),
                             "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
                             "--seed", str(args.seed), "--gpu-id", str(worker_gpu),
                             "--predict-repeats", str(args.predict_repeats)], env=hf_worker_env(args.gpu_id))
            rec = json.loads(Path(str(pred) + ".json").read_text())
            rows.append({"system": f"HF Trainer ({short})", **run, "train_loop_s": rec["train_s"],
                         "train_words_per_s": args.epochs * size["words"] / rec["train_s"],
                         "peak_gpu_mib": rec["peak_gpu_mib"], "predict_peak_gpu_mib": rec["predict_peak_gpu_mib"],
                         "predict_words_per_s": rec["predict_words_per_s"],
                         "predict_words_per_s_runs": rec["predict_words_per_s_runs"], "steps": rec["steps"],
                         "epochs": rec["epochs"], **score(files["test"], pred)})
            # the worker's wall also covers the Trainer.predict pass, which the other systems' wall does not
            rows[-1]["wall_s"] -= rec["trainer_predict_s"]
            rows.append({"system": f"HF Trainer.predict ({short}; same model, batch {HF_PREDICT_BATCH} in file order)",
                         "wall_s": None, "peak_rss_mib": None, "predict_words_per_s": rec["trainer_predict_words_per_s"],
                         "same_tags_as_sorted_forward": rec["trainer_predict_same_tags"],
                         **score(files["test"], Path(str(pred) + ".trainer_predict.tsv"))})
        if "tok2vec" in systems:
            row = spacy_bioner_run(py, "tok2vec", tmp / "tok2vec", data["test"], tmp / "t2v.json", args.gpu_id,
                                   "model-best", corpora + ["--training.max_steps", str(args.tok2vec_steps)],
                                   repeats=args.predict_repeats)
            rows.append({"system": f"tok2vec CNN ({args.tok2vec_steps} steps)", **row})
    device = f"GPU {args.gpu_id}" if args.gpu_id >= 0 else "CPU"
    print(f"\n{args.corpus.name}: train {size['words']:,} words / {size['sentences']:,} sentences; {args.epochs} epochs, "
          f"batch {args.batch_size} sentences, lr {args.lr}; {device}; test scored with seqeval strict\n")
    print("wall: the whole subprocess (start-up, loading, training, saving); train loop: the training loop alone "
          "(spacy-bioner's run.json, HF's trainer.train()), which train words/s divides by; peak RSS: GNU time.\n")
    print("| system | wall (s) | train loop (s) | train words/s | predict words/s | peak RSS (MiB) | peak GPU (MiB) "
          "| test P | test R | test F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rss = r["peak_rss_mib"] if r.get("peak_rss_mib") is not None else r.get("loop_peak_rss_mib")
        print(f"| {r['system']} | {fmt(r['wall_s'])} | {fmt(r.get('train_loop_s'))} | {fmt(r.get('train_words_per_s'))} "
              f"| {fmt(r.get('predict_words_per_s'))} | {fmt(rss)} | {fmt(r.get('peak_gpu_mib'))} "
              f"| {100 * r['p']:.2f} | {100 * r['r']:.2f} | {100 * r['f']:.2f} |")
    print("\n" + "; ".join(f"{r['system']}: {r.get('steps')} steps, {fmt(r.get('epochs'), '.2f')} epochs"
                            for r in rows if r.get("steps")))
    hf = next((r for r in rows if r["system"].startswith("HF Trainer (")), None)
    hf_predict = next((r for r in rows if r["system"].startswith("HF Trainer.predict")), None)
    if hf:
        for r in rows:
            if r["system"].startswith(("HF", "tok2vec")):
                continue
            ratios = [f"{what} {r[key] / hf[key]:.2f}× HF" for what, key in
                      (("train", "train_words_per_s"), ("predict", "predict_words_per_s")) if r.get(key) and hf.get(key)]
            if hf_predict and r.get("predict_words_per_s"):
                ratios.append(f"predict {r['predict_words_per_s'] / hf_predict['predict_words_per_s']:.2f}× "
                              "HF Trainer.predict")
            r["vs_hf"] = ratios
            print(f"{r['system']}: " + ", ".join(ratios) + f"; test F1 {100 * (r['f'] - hf['f']):+.2f} vs HF")
        print("(predict × HF: a plain length-sorted, padded batched forward of the HF model; "
              "× HF Trainer.predict: HF's stock prediction, encoding included)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([{k: v for k, v in r.items() if k != "log"} for r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
