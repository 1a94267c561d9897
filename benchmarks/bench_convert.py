"""Time `spacy-bioner convert` against `spacy convert` on the same IOB file.

    python benchmarks/bench_convert.py [FILE] [--repeat N]

Default FILE: ../shared/corpora/MTL-BC2GM-IOB/train.tsv (355k tokens). Both are
run as command-line programs (process start-up included, as a user sees it),
each with one sentence per Doc (`-n 1`, our default for files without
-DOCSTART-) and with 10 sentences per Doc. Prints a Markdown table; best of N.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parent.parent / "shared" / "corpora" / "MTL-BC2GM-IOB" / "train.tsv"


def best_time(cmd, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.file.exists():
        sys.exit(f"{args.file}: not found (pass a token-per-line file)")
    tokens = sum(1 for line in args.file.open(encoding="utf8") if line.strip())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (1, 10):
            ours = best_time([sys.executable, "-m", "spacy_bioner", "convert", str(args.file),
                              f"{tmp}/ours.spacy", "--n-sents", str(n)], args.repeat)
            theirs = best_time([sys.executable, "-m", "spacy", "convert", str(args.file), tmp,
                                "--converter", "ner", "--n-sents", str(n)], args.repeat)
            rows.append((n, ours, theirs))
    print(f"\nConversion of {args.file} ({tokens:,} tokens), best of {args.repeat}\n")
    print("| sentences/Doc | spacy-bioner convert (s) | spacy convert (s) | speed-up |")
    print("|---:|---:|---:|---:|")
    for n, ours, theirs in rows:
        print(f"| {n} | {ours:.2f} | {theirs:.2f} | {theirs / ours:.1f}× |")


if __name__ == "__main__":
    main()
