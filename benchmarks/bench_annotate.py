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

``--scale N`` instead builds N PubMed-sized documents (title + ~10 sentences,
~250 words, sampled with a seed from the shared corpora's train/dev/test
sentences, plus one bad record per 1,000: invalid JSON, empty or non-string
text) as gzipped JSONL and runs the whole ``annotate`` job over it: docs/s,
words/s, peak RSS and the error-file count.

    python benchmarks/bench_annotate.py --model training/demo/model-best
    python benchmarks/bench_annotate.py --model training/t2v/model-best --scale 100000 --n-process 2
    python benchmarks/bench_annotate.py --model M --scale 100000 --chunks 4 --n-process 2 --runtime onnx --int8 \
        --json benchmarks/results/bench_annotate_scale_onnx_100k.json
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


def corpus_sentences(root: Path, limit_per_file: int = 60000) -> List[str]:
    """Running text of the sentences of every IOB corpus under ``root`` (word columns joined by spaces)."""
    out: List[str] = []
    for path in sorted(root.glob("*/*.tsv")):
        words: List[str] = []
        n = 0
        with open(path, encoding="utf8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("-DOCSTART-"):
                    if words:
                        out.append(" ".join(words))
                        words, n = [], n + 1
                        if n >= limit_per_file:
                            break
                    continue
                words.append(line.split()[0])
        if words:
            out.append(" ".join(words))
    return out


def build_scale_input(path: Path, n_docs: int, *, seed: int = 0, start: int = 0,
                      stop: int = 0) -> Dict[str, int]:
    """N PubMed-sized JSONL documents (gzipped) with one bad record per 1,000.

    start, stop (int): write only documents ``start <= i < stop`` (``stop`` 0: all) — the same
        documents a full build holds there, so chunks of one build add up to it.
    """
    import gzip
    import random

    rng = random.Random(seed)
    pool = [s for s in corpus_sentences(DEFAULT_CORPUS.parent) if 3 <= len(s.split()) <= 80]
    stop = stop or n_docs
    bad = written = 0
    with gzip.open(path, "wt", encoding="utf8") as f:
        for i in range(stop):
            if i % 1000 == 999:
                if i >= start:
                    f.write(["{broken json\n", json.dumps({"id": f"PM{i}", "text": ""}) + "\n",
                             json.dumps({"id": f"PM{i}", "text": None}) + "\n"][bad % 3])
                    written += 1
                bad += 1
                continue
            title = rng.choice(pool)
            body = " ".join(rng.choice(pool) for _ in range(rng.randint(7, 12)))
            if i >= start:
                f.write(json.dumps({"id": f"PM{i}", "text": f"{title}\n{body}"}) + "\n")
    return {"documents": stop - start, "bad_records": written, "sentence_pool": len(pool)}


def scale_settings(args) -> Dict[str, Any]:
    return {"model": str(args.model), "scale": args.scale, "chunks": args.chunks, "n_process": max(args.n_process, 1),
            "int8": args.int8, "runtime": args.runtime}


def run_chunk(args, start: int, stop: int) -> Dict[str, Any]:
    """Build documents ``start:stop`` of the scale input and run one ``annotate`` job over them."""
    from spacy_bioner.annotate.job import annotate

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "pubmed_like.jsonl.gz"
        began = time.perf_counter()
        built = build_scale_input(src, args.scale, start=start, stop=stop)
        print(f"built documents {start:,}–{stop:,} ({built['bad_records']} bad records) in "
              f"{time.perf_counter() - began:.0f}s, {src.stat().st_size / 2**20:.0f} MiB gzipped", flush=True)
        stats = annotate(args.model, src, tmp / "out.jsonl", n_process=max(args.n_process, 1),
                         int8=args.int8, runtime=args.runtime, batch_size=BATCH, progress=True)
        out_lines = sum(1 for _ in open(tmp / "out.jsonl", encoding="utf8"))
        err_lines = sum(1 for _ in open(tmp / "out.jsonl.errors.jsonl", encoding="utf8"))
    return {"start": start, "stop": stop, **built, **stats.to_dict(), "output_lines": out_lines,
            "error_lines": err_lines}


def combine(chunks: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One run's figures from its chunks: counts and seconds add up, peak RSS is the largest."""
    total: Dict[str, Any] = {k: sum(c[k] for c in chunks) for k in
                             ("bad_records", "passages", "words", "entities", "errors", "seconds", "output_lines",
                              "error_lines")}
    total["documents"] = sum(c["stop"] - c["start"] for c in chunks)
    total["annotated"] = sum(c["documents"] for c in chunks)  # annotate's count: records that succeeded
    total["peak_rss_mib"] = max(c["peak_rss_mib"] for c in chunks)
    total["peak_rss_of"] = chunks[0]["peak_rss_of"]
    labels: Dict[str, int] = {}
    for c in chunks:
        for k, v in c["labels"].items():
            labels[k] = labels.get(k, 0) + v
    total["labels"] = labels
    total["docs_per_second"] = total["annotated"] / total["seconds"]
    total["words_per_second"] = total["words"] / total["seconds"]
    return total


def run_scale(args) -> None:
    """The scale run, in ``--chunks`` jobs of equal size; with ``--json`` each chunk is written as it
    finishes, and a later run with the same settings goes on from the first missing chunk."""
    settings = scale_settings(args)
    done: List[Dict[str, Any]] = []
    if args.json and args.json.exists():
        old = json.loads(args.json.read_text(encoding="utf8"))
        if old.get("settings") == settings:
            done = old.get("chunks", [])
    bounds = [(args.scale * k // args.chunks, args.scale * (k + 1) // args.chunks) for k in range(args.chunks)]
    for start, stop in bounds[len(done):]:
        done.append(run_chunk(args, start, stop))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"settings": settings, "complete": len(done) == len(bounds),
                                             "chunks": done}, indent=2) + "\n")
        print(f"chunk {len(done)}/{len(bounds)}: {done[-1]['docs_per_second']:.1f} docs/s", flush=True)
    total = combine(done)
    result = {**settings, **total, **projection(total["words_per_second"])}
    print("\n| documents | annotated | words | entities | seconds | docs/s | words/s | peak RSS (MiB) | error file |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| {total['documents']:,} | {total['annotated']:,} | {total['words']:,} | {total['entities']:,} | "
          f"{total['seconds']:,.0f} | {total['docs_per_second']:,.1f} | {total['words_per_second']:,.0f} | "
          f"{total['peak_rss_mib']:,.0f} | {total['error_lines']} |")
    print(f"\nPubMed abstracts ({result['pubmed_assumption']}): {result['pubmed_days_2_cores']:.1f} days on "
          f"a 2-core node, {result['pubmed_days_64_cores']:.2f} days on a 64-core node")
    if args.json:
        args.json.write_text(json.dumps({"settings": settings, "complete": True, "chunks": done, "result": result},
                                        indent=2) + "\n")


#: PubMed: ~36 M abstracts of ~250 words (title + abstract), the corpus-scale job users run.
PUBMED_ABSTRACTS = 36_000_000
PUBMED_WORDS_PER_ABSTRACT = 250


def projection(words_per_second: float, *, node_cores: int = 2) -> Dict[str, Any]:
    """Days to annotate PubMed's abstracts at this speed, on this 2-core node and on a 64-core node
    (linear in cores: workers share nothing but the input)."""
    words = PUBMED_ABSTRACTS * PUBMED_WORDS_PER_ABSTRACT
    per_core = words_per_second / max(node_cores, 1)
    return {"pubmed_days_2_cores": words / (per_core * 2) / 86400 if per_core else float("inf"),
            "pubmed_days_64_cores": words / (per_core * 64) / 86400 if per_core else float("inf"),
            "pubmed_assumption": f"{PUBMED_ABSTRACTS:,} abstracts x {PUBMED_WORDS_PER_ABSTRACT} words, "
                                 "linear in cores"}


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
    parser.add_argument("--scale", type=int, default=0, help="annotate this many PubMed-sized documents instead")
    parser.add_argument("--int8", action="store_true", help="--scale: annotate with --int8")
    parser.add_argument("--runtime", default="torch", help="--scale: annotate with --runtime torch|onnx|auto")
    parser.add_argument("--chunks", type=int, default=1,
                        help="--scale: in this many annotate jobs, each saved to --json as it ends (resumable)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--hf-system", choices=["pipeline", "forward"], help=argparse.SUPPRESS)
    parser.add_argument("--texts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_system:
        hf_worker(args)
        return
    if args.model is None or not args.model.exists():
        sys.exit("--model: give a trained spacy-bioner pipeline folder (e.g. training/demo/model-best)")
    if args.scale:
        run_scale(args)
        return
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
