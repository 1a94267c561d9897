"""Hugging Face both ways, measured: ``import-hf`` and ``export-hf`` on a real corpus.

1. A MiniLM token classifier is fine-tuned with HF's ``Trainer`` on the corpus's train split
   (``--steps`` steps); a spacy-bioner ``bioner_tagger`` pipeline is trained with
   ``spacy-bioner train`` for the same number of steps.
2. **HF → spaCy**: the checkpoint is imported (``import-hf``, unconstrained and constrained);
   **spaCy → HF**: the trained pipeline is exported (``export-hf``).
3. Agreement on the test split, both directions:
   * word tags on the corpus's tokens: HF's argmax over each word's first subword (``is_split_into_words``)
     vs the spaCy pipeline with ``constrained = false``, per word and per sentence;
   * entities on text (the sentence's tokens joined by spaces, tokenized by each side):
     ``pipeline("token-classification", aggregation_strategy="first")`` vs ``nlp(text).ents``, per
     sentence, apart for sentences where the two tokenizations agree and where they do not;
   * entity-level P/R/F1 of each side against the gold tags (seqeval, strict IOB2).
4. Throughput of the imported pipeline (fp32, CPU) against HF on the same sentences, in interleaved
   rounds (median words/s): spaCy on the corpus's tokens (``evaluate``'s path), spaCy on text
   (``annotate``'s path, tokenizer included), HF's length-sorted batched forward (64 sentences per
   batch, as ``bench_train.py``) and HF's ``pipeline`` (batch size 64).

Each phase's result is written to the JSON as soon as it is done; a rerun reuses the trained
checkpoint and pipeline in ``--workdir`` and redoes only the phases missing from the JSON.

    python benchmarks/bench_hf.py --steps 300
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
sys.path.insert(0, str(HERE))
from bench_train import DEFAULT_CORPUS, HF_PREDICT_BATCH, split_files  # noqa: E402


def read_sentences(path: Path) -> List[Tuple[List[str], List[str]]]:
    from spacy_bioner.corpus.conll import doc_tags, read_docs
    from spacy_bioner.corpus.sentences import sentences

    out = []
    for doc in read_docs(path):
        for sent, tags in zip(sentences(doc), doc_tags(doc, scheme="iob2")):
            if len(sent):
                out.append(([t.text for t in sent], list(tags)))
    return out


def hf_finetune(backbone: str, train: List[Tuple[List[str], List[str]]], out: Path, *, steps: int, batch: int,
                lr: float, seed: int) -> Dict[str, Any]:
    import torch
    from transformers import (AutoModelForTokenClassification, AutoTokenizer, DataCollatorForTokenClassification,
                              Trainer, TrainingArguments)

    from spacy_bioner.models.backbones import resolve_backbone

    torch.manual_seed(seed)
    path = resolve_backbone(backbone)
    tokenizer = AutoTokenizer.from_pretrained(path)
    labels = ["O"] + sorted({f"{p}-{t[2:]}" for _, tags in train for t in tags if t != "O" for p in "BI"})
    label_id = {label: i for i, label in enumerate(labels)}

    def encode(words, tags):
        enc = tokenizer(words, is_split_into_words=True, truncation=True, max_length=512)
        previous, ids = None, []
        for w in enc.word_ids():
            ids.append(-100 if w is None or w == previous else label_id.get(tags[w], 0))
            previous = w
        enc["labels"] = ids
        return enc

    data = [encode(w, t) for w, t in train]
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=len(labels),
                                                            id2label=dict(enumerate(labels)), label2id=label_id)
    targs = TrainingArguments(output_dir=str(out / "_trainer"), per_device_train_batch_size=batch, learning_rate=lr,
                              max_steps=steps, warmup_steps=int(0.1 * steps), lr_scheduler_type="linear",
                              weight_decay=0.01, max_grad_norm=1.0, save_strategy="no", eval_strategy="no",
                              logging_steps=50, report_to=[], seed=seed, use_cpu=True, dataloader_num_workers=0)
    start = time.perf_counter()
    Trainer(model=model, args=targs, train_dataset=data,
            data_collator=DataCollatorForTokenClassification(tokenizer)).train()
    seconds = time.perf_counter() - start
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return {"train_s": seconds, "steps": steps, "batch": batch, "lr": lr, "labels": labels}


def hf_word_tags(model, tokenizer, sents: List[List[str]]) -> List[List[str]]:
    """HF's argmax over each word's first subword, sentences sorted by length in batches of 64."""
    import torch

    order = sorted(range(len(sents)), key=lambda i: len(sents[i]))
    out: List[List[str]] = [["O"] * len(s) for s in sents]
    for b in range(0, len(order), HF_PREDICT_BATCH):
        batch = order[b:b + HF_PREDICT_BATCH]
        enc = tokenizer([sents[i] for i in batch], is_split_into_words=True, truncation=True, max_length=512,
                        padding=True, return_tensors="pt")
        with torch.no_grad():
            best = model(**enc).logits.argmax(-1).numpy()
        for row, i in enumerate(batch):
            seen = set()
            for pos, w in enumerate(enc.word_ids(batch_index=row)):
                if w is not None and w not in seen:
                    seen.add(w)
                    out[i][w] = model.config.id2label[int(best[row, pos])]
    return out


def spacy_word_tags(nlp, sents: List[List[str]]) -> List[List[str]]:
    from spacy.tokens import Doc

    docs = nlp.pipe([Doc(nlp.vocab, words=w) for w in sents], batch_size=64)
    return [[f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ != "O" else "O" for t in doc] for doc in docs]


def hf_text_entities(model, tokenizer, texts: List[str]) -> List[List[Tuple[int, int, str]]]:
    from transformers import pipeline

    ner = pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="first",
                   device=-1)
    return [[(e["start"], e["end"], e["entity_group"]) for e in ents] for ents in ner(texts, batch_size=64)]


def spacy_text_entities(nlp, texts: List[str]) -> List[List[Tuple[int, int, str]]]:
    return [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in nlp.pipe(texts, batch_size=64)]


def same_words(nlp, tokenizer, texts: List[str]) -> List[bool]:
    """Whether spaCy's tokens are the HF tokenizer's words (its pre-tokenizer's pieces), per text."""
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    normalizer = tokenizer.backend_tokenizer.normalizer
    out = []
    for text, doc in zip(texts, nlp.tokenizer.pipe(texts)):
        normalized = normalizer.normalize_str(text) if normalizer is not None else text
        words = [w for w, _ in pre.pre_tokenize_str(normalized)] if pre is not None else normalized.split()
        out.append([t.text for t in doc] == words)
    return out


def agreement(ours: List[List[Any]], theirs: List[List[Any]]) -> Dict[str, Any]:
    same = sum(a == b for a, b in zip(ours, theirs))
    return {"sentences": len(ours), "identical": same, "identical_pct": 100.0 * same / max(len(ours), 1)}


def as_iob2(tags: List[str]) -> List[str]:
    """A tag sequence read as entities and written back as IOB2 (``O I-X`` opens ``X``, as HF's aggregation does)."""
    from spacy_bioner.pipeline.decoding import tags_to_spans

    names = sorted(set(tags))
    out = ["O"] * len(tags)
    for start, end, label in tags_to_spans([names.index(t) for t in tags], names):
        out[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
    return out


def word_agreement(ours: List[List[str]], theirs: List[List[str]]) -> Dict[str, Any]:
    """Per-word agreement of spaCy's entity tags with HF's argmax read as entities (IOB2); the raw rate too.

    The raw rate differs only where HF's argmax opens an entity with ``I-X`` (after ``O`` or another type):
    spaCy's ``doc.ents`` write that word as ``B-X``, HF's tag stays ``I-X``; both read it as the same entity.
    """
    words = sum(len(a) for a in ours)
    read = [as_iob2(t) for t in theirs]
    same = sum(x == y for a, b in zip(ours, read) for x, y in zip(a, b))
    raw = sum(x == y for a, b in zip(ours, theirs) for x, y in zip(a, b))
    return {**agreement(ours, read), "words": words, "words_identical_pct": 100.0 * same / max(words, 1),
            "raw_tags_identical_pct": 100.0 * raw / max(words, 1),
            "differing_sentences": [i for i, (a, b) in enumerate(zip(ours, read)) if a != b][:50]}


def entity_agreement(ours, theirs, agree: List[bool]) -> Dict[str, Any]:
    both = agreement(ours, theirs)
    where = {"same_tokenization": agreement([o for o, a in zip(ours, agree) if a], [t for t, a in zip(theirs, agree) if a]),
             "different_tokenization": agreement([o for o, a in zip(ours, agree) if not a],
                                                 [t for t, a in zip(theirs, agree) if not a])}
    n_ours, n_theirs = sum(map(len, ours)), sum(map(len, theirs))
    common = sum(len(set(o) & set(t)) for o, t in zip(ours, theirs))
    return {**both, **where, "entities_spacy": n_ours, "entities_hf": n_theirs, "entities_common": common}


def prf(gold: List[List[str]], pred: List[List[str]]) -> Dict[str, float]:
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {"p": 100 * precision_score(gold, pred), "r": 100 * recall_score(gold, pred),
            "f": 100 * f1_score(gold, pred)}


def save(results: Dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=PROJECT / "training" / "bench_hf")
    parser.add_argument("--output", type=Path, default=HERE / "results" / "bench_hf.json")
    args = parser.parse_args()

    import spacy
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from spacy_bioner.packaging.huggingface import export_hf, import_hf

    torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    files = split_files(args.corpus)
    results: Dict[str, Any] = json.loads(args.output.read_text()) if args.output.exists() else {}
    results.update({"corpus": str(args.corpus.name), "backbone": args.backbone, "steps": args.steps,
                    "batch": args.batch, "threads": args.threads})
    test = read_sentences(files["test"])
    sents = [w for w, _ in test]
    gold = [t for _, t in test]
    texts = [" ".join(w) for w in sents]
    n_words = sum(map(len, sents))
    results["test"] = {"sentences": len(sents), "words": n_words}
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)

    # 1. the two trained models
    checkpoint = work / "hf_checkpoint"
    if not (checkpoint / "config.json").exists():
        print(f"HF Trainer: {args.steps} steps …", flush=True)
        results["hf_train"] = hf_finetune(args.backbone, read_sentences(files["train"]), checkpoint,
                                          steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
        save(results, args.output)
    trained = work / "spacy_run"
    if not (trained / "model-last" / "config.cfg").exists():
        print(f"spacy-bioner train: {args.steps} steps …", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "spacy_bioner", "train", "transformer", "--backbone", args.backbone,
                        "--head", "tagger", "-o", str(trained), "--paths.train", str(files["train"]),
                        "--paths.dev", str(files["dev"]), "--training.max_steps", str(args.steps),
                        "--training.eval_frequency", str(args.steps), "--training.batcher.size", str(args.batch),
                        "--training.optimizer.learn_rate.initial_rate", str(args.lr)], check=True)
        results["spacy_train"] = {"wall_s": time.perf_counter() - start}
        save(results, args.output)

    # 2. both directions
    imported, imported_c, exported = work / "imported", work / "imported_constrained", work / "exported"
    if "import_s" not in results:
        start = time.perf_counter()
        import_hf(str(checkpoint), imported, constrained=False)
        results["import_s"] = time.perf_counter() - start
        import_hf(str(checkpoint), imported_c, constrained=True)
        start = time.perf_counter()
        export_hf(trained / "model-last", exported)
        results["export_s"] = time.perf_counter() - start
        save(results, args.output)

    hf = AutoModelForTokenClassification.from_pretrained(checkpoint).eval()
    hf_tok = AutoTokenizer.from_pretrained(checkpoint)
    nlp = spacy.load(imported)
    if "hf_to_spacy" not in results:
        print("Agreement HF → spaCy …", flush=True)
        hf_tags, our_tags = hf_word_tags(hf, hf_tok, sents), spacy_word_tags(nlp, sents)
        constrained_tags = spacy_word_tags(spacy.load(imported_c), sents)
        agree = same_words(nlp, hf_tok, texts)
        results["hf_to_spacy"] = {
            "word_tags": word_agreement(our_tags, hf_tags),
            "entities_on_text": entity_agreement(spacy_text_entities(nlp, texts),
                                                 hf_text_entities(hf, hf_tok, texts), agree),
            "scores": {"hf_argmax": prf(gold, hf_tags), "imported_unconstrained": prf(gold, our_tags),
                       "imported_constrained": prf(gold, constrained_tags)},
        }
        save(results, args.output)
    if "spacy_to_hf" not in results:
        print("Agreement spaCy → HF …", flush=True)
        ours = spacy.load(trained / "model-last")
        ours.get_pipe("bioner_tagger").constrained = False
        ex = AutoModelForTokenClassification.from_pretrained(exported).eval()
        ex_tok = AutoTokenizer.from_pretrained(exported)
        ex_tags, our_tags = hf_word_tags(ex, ex_tok, sents), spacy_word_tags(ours, sents)
        agree = same_words(ours, ex_tok, texts)
        results["spacy_to_hf"] = {
            "word_tags": word_agreement(our_tags, ex_tags),
            "entities_on_text": entity_agreement(spacy_text_entities(ours, texts),
                                                 hf_text_entities(ex, ex_tok, texts), agree),
            "scores": {"pipeline_unconstrained": prf(gold, our_tags), "exported_hf_argmax": prf(gold, ex_tags)},
        }
        save(results, args.output)

    # 4. throughput, interleaved rounds
    if "throughput" not in results:
        print("Throughput …", flush=True)
        from transformers import pipeline

        ner = pipeline("token-classification", model=hf, tokenizer=hf_tok, aggregation_strategy="first", device=-1)
        systems = {
            "spacy_bioner_tokens": lambda: spacy_word_tags(nlp, sents),
            "spacy_bioner_text": lambda: spacy_text_entities(nlp, texts),
            "hf_sorted_forward": lambda: hf_word_tags(hf, hf_tok, sents),
            "hf_pipeline": lambda: list(ner(texts, batch_size=64)),
        }
        for run in systems.values():  # warm-up
            run()
        times: Dict[str, List[float]] = {name: [] for name in systems}
        for _ in range(args.rounds):
            for name, run in systems.items():
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
        results["throughput"] = {name: {"words_per_s": n_words / statistics.median(t),
                                        "runs_words_per_s": [n_words / x for x in t]} for name, t in times.items()}
        save(results, args.output)
    print_tables(results)


def print_tables(r: Dict[str, Any]) -> None:
    print(f"\n{r['corpus']} test: {r['test']['sentences']} sentences, {r['test']['words']} words; "
          f"{r['backbone']}, {r['steps']} steps each side\n")
    print("| direction | word tags identical (read as entities) | raw tags identical | sentences identical "
          "| entities identical (same tokenization) | entities identical (different tokenization) |")
    print("|---|---:|---:|---:|---:|---:|")
    for key, name in (("hf_to_spacy", "HF → spaCy (import-hf)"), ("spacy_to_hf", "spaCy → HF (export-hf)")):
        if key in r:
            w, e = r[key]["word_tags"], r[key]["entities_on_text"]
            s, d = e["same_tokenization"], e["different_tokenization"]
            print(f"| {name} | {w['words_identical_pct']:.2f} % | {w.get('raw_tags_identical_pct', 0):.2f} % "
                  f"| {w['identical_pct']:.2f} % "
                  f"| {s['identical_pct']:.2f} % of {s['sentences']} | {d['identical_pct']:.2f} % of {d['sentences']} |")
    print("\n| model | P | R | F1 |\n|---|---:|---:|---:|")
    for key in ("hf_to_spacy", "spacy_to_hf"):
        for name, s in r.get(key, {}).get("scores", {}).items():
            print(f"| {name} | {s['p']:.2f} | {s['r']:.2f} | {s['f']:.2f} |")
    if "throughput" in r:
        print("\n| system (imported pipeline vs HF, fp32 CPU) | words/s |\n|---|---:|")
        for name, t in r["throughput"].items():
            print(f"| {name} | {t['words_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
