"""Largest subword window per tokenizer family on raw text, as spacy-transformers
will tokenize each window (``span.text``, special tokens, no truncation).

Tokenizers: the four families of the test suite's tiny backbones (WordPiece
BERT, byte-level BPE RoBERTa and GPT-2, Unigram DeBERTa; trained offline) and
the real all-MiniLM-L6-v2 WordPiece tokenizer when it is installed. Text:
NCBI-disease test sentences detokenised the way PubMed writes them (no space
before punctuation, none around hyphens and slashes), plus a stress text of
words glued to punctuation. ``--compare FILE.py`` also runs another
implementation of ``SubwordWindows`` (e.g. an older ``spans.py``) on the same docs.

    python benchmarks/bench_windows.py --compare /tmp/old/spacy_bioner/spans.py --json windows.json
"""
import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
NCBI_TEST = PROJECT.parent / "shared" / "corpora" / "MTL-NCBI-disease-IOB" / "test.tsv"
GLUED = "mutations,mutations/mutations-cancer,carcinoma(tumours)patients-received-therapy;regulates-proliferation."
PREFIX_SPACE = {"roberta", "gpt2"}


def raw_text(path: Path, limit_chars: int = 200_000) -> str:
    """Sentences of a token-per-line file, detokenised like PubMed abstracts."""
    words, sentences = [], []
    for line in path.read_text(encoding="utf8").splitlines():
        if not line.strip():
            if words:
                sentences.append(" ".join(words))
                words = []
            continue
        words.append(line.split("\t")[0])
    text = " ".join(sentences)
    text = re.sub(r" ([,.;:)\]%])", r"\1", text)
    text = re.sub(r"([(\[]) ", r"\1", text)
    text = re.sub(r" ?([-/]) ?", r"\1", text)
    return text[:limit_chars]


def load_impl(path: Path):
    spec = importlib.util.spec_from_file_location(f"spans_{abs(hash(str(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SubwordWindows


def measure(impl, tokenizer, docs, *, window: int, stride: int):
    getter = impl(window=window, stride=stride)
    getter.bind(SimpleNamespace(tokenizer=tokenizer))
    start = time.perf_counter()
    spans = getter(docs)
    seconds = time.perf_counter() - start
    sizes = [len(x) for x in tokenizer([s.text for doc in spans for s in doc], verbose=False)["input_ids"]]
    return {"largest": max(sizes), "windows": len(sizes), "over_limit": sum(n > window for n in sizes),
            "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=Path, help="another spans.py to run on the same docs")
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--stride", type=int, default=384)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import spacy
    from transformers import AutoTokenizer

    sys.path.insert(0, str(PROJECT))
    from spacy_bioner.models.backbones import packaged_copy
    from spacy_bioner.models.spans import SubwordWindows
    from tests.tiny_models import FAMILIES, build_tiny_backbone

    impls = {"this": SubwordWindows}
    if args.compare:
        impls["compare"] = load_impl(args.compare)
    nlp = spacy.blank("en")
    texts = {"glued": GLUED * 80}
    if NCBI_TEST.exists():
        texts["ncbi-raw"] = raw_text(NCBI_TEST)
    docs = [nlp(t) for t in texts.values()]
    tokenizers = {}
    with tempfile.TemporaryDirectory() as tmp:
        for family in FAMILIES:
            path = build_tiny_backbone(family, Path(tmp) / family, max_length=args.window)
            extra = {"add_prefix_space": True} if family in PREFIX_SPACE else {}
            tokenizers[f"tiny {family}"] = AutoTokenizer.from_pretrained(str(path), use_fast=True, **extra)
        minilm = packaged_copy("sentence-transformers/all-MiniLM-L6-v2")
        if minilm is not None:
            tokenizers["MiniLM (real)"] = AutoTokenizer.from_pretrained(str(minilm), use_fast=True)
        rows = []
        for name, tok in tokenizers.items():
            tok.model_max_length = args.window
            row = {"tokenizer": name, "limit": args.window}
            for label, impl in impls.items():
                row[label] = measure(impl, tok, docs, window=args.window, stride=args.stride)
            rows.append(row)
    print(f"\nRaw text: {', '.join(f'{k} ({len(d):,} tokens)' for k, d in zip(texts, docs))}; "
          f"window {args.window}, stride {args.stride}\n")
    header = "| tokenizer | " + " | ".join(f"{k}: largest | {k}: windows over limit | {k}: s" for k in impls) + " |"
    print(header)
    print("|---|" + "---:|---:|---:|" * len(impls))
    for row in rows:
        cells = " | ".join(f"{row[k]['largest']} | {row[k]['over_limit']} / {row[k]['windows']} | "
                           f"{row[k]['seconds']:.2f}" for k in impls)
        print(f"| {row['tokenizer']} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
