"""Annotation speed: ``spacy-bioner annotate`` vs Hugging Face on the same texts and weights.

Systems, one process each, same texts (a corpus' test split, one sentence per
document, detokenised as running text), same backbone weights:

* ``annotate`` with a trained spacy-bioner pipeline (``--model``; length
  buckets on), and again with ``--int8``;
* HF ``pipeline("token-classification", aggregation_strategy="simple")`` over
  the backbone with a token-classification head (``--backbone``), batch 64;
* a plain length-sorted batched ``AutoModelForTokenClassification`` forward
  (tokenise, sort by length, batch 64, pad, forward, argmax) — the floor of
  what any wrapper can reach without changing the arithmetic.

words/s divides spaCy tokens (the same count for every system) by the seconds
spent annotating (model loading excluded). Prints a Markdown table, writes JSON.

    python benchmarks/bench_annotate.py --model training/demo/model-best
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DEFAULT_CORPUS = PROJECT.parent / "shared" / "corpora" / "MTL-NCBI-disease-IOB"
DEFAULT_BACKBONE = PROJECT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
BATCH = 64


def test_texts(corpus: Path, limit: int) -> List[str]:
    """Running text of each test sentence (spaCy's own detokenisation of the gold tokens)."""
    from spacy.vocab import Vocab

    from spacy_bioner.corpus.conll import read_docs
    from spacy_bioner.corpus.sentences import sentences

    files = sorted(p for p in corpus.iterdir() if "test" in p.name)
    if not files:
        sys.exit(f"{corpus}: no test file")
    texts = []
    for doc in read_docs(files[0], vocab=Vocab()):
        for sent in sentences(doc):
            text = " ".join(t.text for t in sent).strip()
            if text:
                texts.append(text)
    return texts[:limit] if limit else texts


def count_words(texts: List[str]) -> int:
    import spacy

    nlp = spacy.blank("en")
    return sum(sum(1 for t in doc if not t.is_space) for doc in nlp.pipe(texts))


def hf_worker(args) -> None:
    """Run one HF system in this process; print its seconds as JSON."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    torch.manual_seed(0)
    texts = json.loads(Path(args.texts).read_text(encoding="utf8"))
    tokenizer = AutoTokenizer.from_pretrained(args.backbone)
    model = AutoModelForTokenClassification.from_pretrained(args.backbone, num_labels=3).eval()
    if args.hf_system == "pipeline":
        tagger = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple",
                          device=-1)
        list(tagger(texts[:BATCH], batch_size=BATCH))
        start = time.perf_counter()
        for _ in tagger(texts, batch_size=BATCH):
            pass
        seconds = time.perf_counter() - start
    else:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        start = time.perf_counter()
        for b in range(0, len(order), BATCH):
            batch = [texts[i] for i in order[b:b + BATCH]]
            enc = tokenizer(batch, truncation=True, max_length=512, padding=True, return_tensors="pt")
            with torch.inference_mode():
                model(**enc).logits.argmax(-1).numpy()
        seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds}))


def run_annotate(model: Path, texts: List[str], tmp: Path, extra: Dict[str, Any]) -> Dict[str, Any]:
    from spacy_bioner.annotate.job import annotate

    src = tmp / "texts.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)), encoding="utf8")
    out = tmp / f"out-{len(list(tmp.iterdir()))}.jsonl"
    stats = annotate(model, src, out, progress=False, **extra)
    return {"seconds": stats.seconds, "peak_rss_mib": stats.peak_rss_mib, "entities": stats.entities,
            "errors": stats.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="trained spacy-bioner pipeline (its backbone should be --backbone)")
    parser.add_argument("--backbone", default=str(DEFAULT_BACKBONE), help="HF backbone (name or folder)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--limit", type=int, default=0, help="first N test sentences (0: all)")
    parser.add_argument("--n-process", type=int, default=0, help="also annotate with this many processes")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--hf-system", choices=["pipeline", "forward"], help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_system:
        hf_worker(args)
        return
    if args.model is None or not args.model.exists():
        sys.exit("--model: give a trained spacy-bioner pipeline folder (e.g. training/demo/model-best)")
    texts = test_texts(args.corpus, args.limit)
    words = count_words(texts)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "texts.json").write_text(json.dumps(texts), encoding="utf8")
        for name, system in (("HF pipeline(\"token-classification\")", "pipeline"),
                             ("HF length-sorted batched forward", "forward")):
            proc = subprocess.run([sys.executable, __file__, "--hf-system", system, "--texts", str(tmp / "texts.json"),
                                   "--backbone", args.backbone], capture_output=True, text=True,
                                  env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"})
            if proc.returncode:
                sys.exit(proc.stderr[-3000:])
            rows.append({"system": name, **json.loads(proc.stdout.strip().splitlines()[-1])})
        variants = [("spacy-bioner annotate", {}), ("spacy-bioner annotate --int8", {"int8": True})]
        if args.n_process > 1:
            variants.append((f"spacy-bioner annotate --n-process {args.n_process}", {"n_process": args.n_process}))
        for name, extra in variants:
            rows.append({"system": name, **run_annotate(args.model, texts, tmp, extra)})
    hf_pipe = rows[0]["seconds"]
    hf_fwd = rows[1]["seconds"]
    print(f"\n{len(texts):,} texts, {words:,} words ({args.corpus.name} test), CPU, batch {BATCH}\n")
    print("| system | seconds | words/s | × HF pipeline | × sorted forward |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        r["words_per_s"] = words / r["seconds"]
        r["vs_pipeline"], r["vs_forward"] = hf_pipe / r["seconds"], hf_fwd / r["seconds"]
        print(f"| {r['system']} | {r['seconds']:.2f} | {r['words_per_s']:,.0f} | {r['vs_pipeline']:.2f} "
              f"| {r['vs_forward']:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"texts": len(texts), "words": words, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
