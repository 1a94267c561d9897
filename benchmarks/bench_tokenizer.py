"""How often a tokenizer splits text exactly as a token-per-line corpus did.

    python benchmarks/bench_tokenizer.py [--corpora DIR] [--split all|train|dev|test] [--out FILE]

The corpora keep tokens, not the text they came from, so each sentence is first
turned back into text (detokenised), then tokenised by spacy_bioner.BioTokenizer.v1
and by spaCy's default English tokenizer; a sentence counts as reproduced when the
tokenizer's tokens equal the corpus tokens exactly. Token agreement is the share of
corpus tokens whose character span the tokenizer also produces.

Detokeniser (an assumption; the corpora do not record spacing). Tokens are joined
with one space, except:
  * no space before  . , ; : ) ] } % ? !
  * no space after   ( [ {
  * no space either side of  - /   (PubMed writes Selegiline-induced, TP53/BRCA1, IL-2)
  * no space before + (Ca2+, CD4+)
  * no space either side of ' between letters or digits (Crohn's, 5'-)
  * no space either side of . between digits (0.05)
Rows marked "GENIA spacing" use a better-known text: MTL-JNLPBA keeps the original
GENIA tokens (IL-2, 27.3, mmole/L, T- and B-cell whole), which are the same
sentences as BioBERT-JNLPBA's; joining the GENIA tokens (same rules between
tokens) gives text whose spacing inside those tokens is the original one, and
BioBERT-JNLPBA's tokens are the target.

Writes benchmarks/results/bench_tokenizer.json and prints a Markdown table.
"""
import argparse
import json
import re
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
CORPORA = HERE.parent.parent / "shared" / "corpora"
#: (row name, corpus folder whose tokens are the target, folder whose tokens give the text or None)
ROWS = [
    ("NCBI-disease", "MTL-NCBI-disease-IOB", None),
    ("BC5CDR", "MTL-BC5CDR-IOB", None),
    ("BC2GM", "MTL-BC2GM-IOB", None),
    ("JNLPBA (BioBERT)", "BioBERT-JNLPBA", None),
    ("JNLPBA (BioBERT), GENIA spacing", "BioBERT-JNLPBA", "MTL-JNLPBA"),
    ("JNLPBA (GENIA tokens)", "MTL-JNLPBA", None),
]
NO_SPACE_BEFORE = set(".,;:)]}%?!+")
NO_SPACE_AFTER = set("([{")
GLUE = set("-/")
WORD = re.compile(r"\w")


def read_sentences(path: Path) -> Iterator[List[str]]:
    """The token column of a token-per-line file, one list per sentence (``-DOCSTART-`` dropped)."""
    words: List[str] = []
    for line in path.open(encoding="utf8"):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                yield words
            words = []
            continue
        words.append(line.split("\t")[0])
    if words:
        yield words


def glued(prev: str, word: str, before: Optional[str]) -> bool:
    """Whether ``word`` follows ``prev`` without a space (``before``: the token before ``prev``)."""
    if word in NO_SPACE_BEFORE or prev in NO_SPACE_AFTER or word in GLUE or prev in GLUE:
        return True
    if prev == "'" and before is not None and WORD.match(before[-1]) and WORD.match(word[0]):
        return True
    if word == "'" and WORD.match(prev[-1]):
        return True  # the next word is glued by the rule above
    if prev == "." and before is not None and before[-1].isdigit() and word[0].isdigit():
        return True
    return False


def detokenize(words: Sequence[str]) -> Tuple[str, List[Tuple[int, int]]]:
    """Text and each word's character span."""
    text, spans = "", []
    for i, word in enumerate(words):
        if i and not glued(words[i - 1], word, words[i - 2] if i > 1 else None):
            text += " "
        spans.append((len(text), len(text) + len(word)))
        text += word
    return text, spans


def gold_spans(text: str, words: Sequence[str]) -> Optional[List[Tuple[int, int]]]:
    """The spans of ``words`` found in order in ``text`` (None when they are not its characters)."""
    spans, pos = [], 0
    for word in words:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if text[pos:pos + len(word)] != word:
            return None
        spans.append((pos, pos + len(word)))
        pos += len(word)
    return spans


def measure(tokenizer, pairs) -> dict:
    """Sentence and token agreement of ``tokenizer`` over (text, gold spans) pairs."""
    exact = tokens = matched = 0
    examples = []
    for text, gold in pairs:
        doc = tokenizer(text)
        pred = {(t.idx, t.idx + len(t.text)) for t in doc if not t.is_space}
        hit = sum(span in pred for span in gold)
        same = hit == len(gold) == len(pred)
        exact += same
        tokens += len(gold)
        matched += hit
        if not same and len(examples) < 5:
            examples.append({"text": text, "gold": [text[a:b] for a, b in gold],
                             "tokens": [t.text for t in doc if not t.is_space]})
    return {"sentences_exact": exact, "tokens": tokens, "tokens_matched": matched, "examples": examples}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpora", type=Path, default=CORPORA)
    parser.add_argument("--split", default="all", help="test, dev, train or all")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_tokenizer.json")
    args = parser.parse_args()
    import spacy

    from spacy_bioner.corpus.tokenizer import create_bio_tokenizer

    default = spacy.blank("en")
    bio = spacy.blank("en")
    bio.tokenizer = create_bio_tokenizer(bio)
    splits = ["train", "dev", "test"] if args.split == "all" else [args.split]
    results = []
    start = time.perf_counter()
    for name, target, source in ROWS:
        # a row with a text source reads the splits both folders have (MTL-JNLPBA has no train)
        splits_here = [s for s in splits if (args.corpora / target / f"{s}.tsv").exists()
                       and (source is None or (args.corpora / source / f"{s}.tsv").exists())]
        if not splits_here:
            print(f"{name}: no {args.split} file under {args.corpora / target}, skipped", file=sys.stderr)
            continue
        pairs, skipped = [], 0
        if source is None:
            for words in (w for s in splits_here for w in read_sentences(args.corpora / target / f"{s}.tsv")):
                text, spans = detokenize(words)
                pairs.append((text, spans))
        else:  # pair the splits whose sentences correspond (BioBERT's JNLPBA dev is not MTL's)
            paired = []
            for split in splits_here:
                gold_split = list(read_sentences(args.corpora / target / f"{split}.tsv"))
                src_split = list(read_sentences(args.corpora / source / f"{split}.tsv"))
                if len(gold_split) == len(src_split):
                    paired.append(split)
                    for words, src in zip(gold_split, src_split):
                        text, _ = detokenize(src)
                        spans = gold_spans(text, words)
                        if spans is None:  # not the same characters: not the same sentence
                            skipped += 1
                            continue
                        pairs.append((text, spans))
            splits_here = paired
        row = {"corpus": name, "target": target, "text_from": source or "detokenizer",
               "splits": splits_here, "sentences": len(pairs), "sentences_not_aligned": skipped}
        for key, nlp in (("bio", bio), ("default", default)):
            row[key] = measure(nlp.tokenizer, pairs)
        results.append(row)
    seconds = time.perf_counter() - start
    print("| corpus | sentences | BioTokenizer: sentences exact | tokens | spaCy English: sentences exact | tokens |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in results:
        cells = []
        for key in ("bio", "default"):
            m = row[key]
            cells += [f"{100 * m['sentences_exact'] / max(row['sentences'], 1):.1f}%",
                      f"{100 * m['tokens_matched'] / max(m['tokens'], 1):.2f}%"]
        print(f"| {row['corpus']} ({'+'.join(row['splits'])}) | {row['sentences']} | " + " | ".join(cells) + " |")
    print(f"\n{seconds:.0f} s", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"split": args.split, "seconds": round(seconds, 1),
                                    "spacy": spacy.__version__, "rows": results}, indent=1) + "\n",
                        encoding="utf8")


if __name__ == "__main__":
    main()
