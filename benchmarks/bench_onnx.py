"""ONNX Runtime vs torch for prediction: same weights, same sentences, one process, interleaved rounds.

A Hugging Face token-classification checkpoint (default: the MiniLM one ``bench_hf.py``
fine-tunes on NCBI-disease) is imported with ``import-hf``, so every system runs the same
weights on the same 940 NCBI-disease test sentences:

* ``hf_sorted_forward``: HF's ``AutoModelForTokenClassification``, sentences sorted by length,
  batches of 64, argmax at each word's first subword (torch fp32);
* ``torch_fp32`` / ``torch_int8``: the imported pipeline, ``nlp.pipe`` on the sentences' words
  (as ``evaluate`` runs), torch, int8 = ``--int8`` (PyTorch dynamic quantization);
* ``onnx_fp32`` / ``onnx_int8``: the same with ``--runtime onnx`` (``--int8``: ONNX Runtime's
  dynamic quantization of the graph).

Prints and writes (``--output``) words/s (median of ``--rounds`` interleaved rounds after a
warm-up), × HF sorted forward, × torch fp32, strict F1 (seqeval), and the sentences whose
entities differ between ONNX fp32 and torch fp32.

    python benchmarks/bench_hf.py --steps 300      # the checkpoint, once
    python benchmarks/bench_onnx.py
"""
import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_hf import DEFAULT_CORPUS, hf_word_tags, prf, read_sentences, save, spacy_word_tags, split_files  # noqa: E402

SYSTEMS = ("hf_sorted_forward", "torch_fp32", "onnx_fp32", "torch_int8", "onnx_int8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=PROJECT / "training" / "bench_hf" / "hf_checkpoint")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=PROJECT / "training" / "bench_onnx")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bench_onnx.json")
    args = parser.parse_args()

    import spacy
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    import onnxruntime

    from spacy_bioner.models.inference import speed_up
    from spacy_bioner.packaging.huggingface import import_hf

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    if not (args.checkpoint / "config.json").exists():
        sys.exit(f"{args.checkpoint}: no checkpoint; run benchmarks/bench_hf.py first (or give --checkpoint)")
    test = read_sentences(split_files(args.corpus)["test"])
    sents, gold = [w for w, _ in test], [t for _, t in test]
    n_words = sum(map(len, sents))
    pipeline_dir = args.workdir / "imported"
    if not (pipeline_dir / "config.cfg").exists():
        import_hf(str(args.checkpoint), pipeline_dir)
    results: Dict[str, Any] = {
        "checkpoint": str(args.checkpoint), "corpus": args.corpus.name, "threads": args.threads,
        "rounds": args.rounds, "test": {"sentences": len(sents), "words": n_words},
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "cpu": platform.processor() or "",
    }

    hf = AutoModelForTokenClassification.from_pretrained(args.checkpoint).eval()
    hf_tok = AutoTokenizer.from_pretrained(args.checkpoint)
    nlps: Dict[str, Any] = {}
    setup: Dict[str, Any] = {}
    for name in SYSTEMS[1:]:
        runtime, precision = name.split("_")
        start = time.perf_counter()
        nlp = spacy.load(pipeline_dir)
        setup[name] = speed_up(nlp, runtime=runtime, int8=precision == "int8")
        setup[name]["setup_s"] = time.perf_counter() - start
        nlps[name] = nlp
    results["setup"] = setup
    runs: Dict[str, Callable[[], List[List[str]]]] = {"hf_sorted_forward": lambda: hf_word_tags(hf, hf_tok, sents)}
    runs.update({name: (lambda nlp=nlp: spacy_word_tags(nlp, sents)) for name, nlp in nlps.items()})

    tags = {name: run() for name, run in runs.items()}  # warm-up, and the predictions scored
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
        print(f"round {r + 1}: " + ", ".join(f"{n} {n_words / t[-1]:,.0f}" for n, t in times.items()), flush=True)
    speed = {name: n_words / statistics.median(t) for name, t in times.items()}
    results["systems"] = {
        name: {"words_per_s": speed[name], "runs_words_per_s": [n_words / x for x in times[name]],
               "x_hf_sorted_forward": speed[name] / speed["hf_sorted_forward"],
               "x_torch_fp32": speed[name] / speed["torch_fp32"], **prf(gold, tags[name])}
        for name in runs}
    differ = [i for i, (a, b) in enumerate(zip(tags["onnx_fp32"], tags["torch_fp32"])) if a != b]
    results["onnx_fp32_vs_torch_fp32"] = {"sentences_differing": len(differ), "indices": differ,
                                          "differing": [" ".join(sents[i]) for i in differ[:20]]}
    differ8 = [i for i, (a, b) in enumerate(zip(tags["onnx_int8"], tags["onnx_fp32"])) if a != b]
    results["onnx_int8_vs_onnx_fp32"] = {"sentences_differing": len(differ8)}
    save(results, args.output)
    print_table(results)


def print_table(r: Dict[str, Any]) -> None:
    print(f"\n{r['corpus']} test: {r['test']['sentences']} sentences, {r['test']['words']:,} words; "
          f"{r['threads']} threads, median of {r['rounds']} interleaved rounds\n")
    print("| system | words/s | × HF sorted forward | × torch fp32 | P | R | F1 |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, s in r["systems"].items():
        print(f"| {name} | {s['words_per_s']:,.0f} | {s['x_hf_sorted_forward']:.2f} | {s['x_torch_fp32']:.2f} "
              f"| {s['p']:.2f} | {s['r']:.2f} | {s['f']:.2f} |")
    d = r["onnx_fp32_vs_torch_fp32"]
    print(f"\nONNX fp32 vs torch fp32: {d['sentences_differing']} of {r['test']['sentences']} sentences differ; "
          f"ONNX int8 vs fp32: {r['onnx_int8_vs_onnx_fp32']['sentences_differing']}")


if __name__ == "__main__":
    main()
