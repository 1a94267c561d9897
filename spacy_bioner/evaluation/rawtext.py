"""``spacy-bioner evaluate MODEL GOLD`` on standoff gold (PubTator, BioC, brat): a pipeline judged on raw text.

Two passes over the same documents, both scored at character offsets against the
same gold mentions (:mod:`.charlevel`):

* ``raw_text``: the pipeline runs on each document's text with its own tokenizer,
  passage by passage, as ``annotate`` does; ``doc.ents``' character offsets (plus
  the passage offset) are the predictions. This pass is timed per document.
* ``gold_tokens``: the documents are first tokenised as ``convert`` does
  (:func:`~spacy_bioner.corpus.align.standoff_to_doc`: the biomedical tokenizer,
  a token split at every mention boundary), and the pipeline predicts on those
  tokens (:func:`~.predict.predict`, as the IOB ``evaluate`` does).

The difference of the two (``tokenization_cost``) is what the pipeline's own
tokenisation costs on raw text.
"""
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import CorpusFormatError
from ..gpu import peak_gpu_memory_mib, require_gpu, reset_peak_gpu_memory
from ..models.inference import add_doc_cleaner, load_pipeline, speed_up
from .charlevel import CHAR_SCHEMES, CharSpan, MentionSet, collect_mentions, document_spans, markdown_char_report
from .charlevel import score_mentions
from .predict import entity_labels, predict, register_components

if TYPE_CHECKING:
    from spacy.language import Language

    from ..corpus.standoff import StandoffDocument

#: How the raw-text pass is timed (written to the metrics).
TIMING_METHOD = ("each document timed alone: its passages in one nlp.pipe call (no batching across documents), "
                 "wall clock, after one untimed warm-up document; docs_per_second = documents / summed times")


def read_gold_documents(path: Union[str, Path], fmt: Optional[str] = None) -> List["StandoffDocument"]:
    """The gold documents of a standoff file or folder; a CorpusFormatError for what cannot be scored.

    path (Union[str, Path]): PubTator, BioC or brat gold (a file or folder; ``.gz`` too).
    fmt (Optional[str]): pubtator, bioc or brat; None: from the suffixes.
    RETURNS (List[StandoffDocument]): the documents, each with its text.
    """
    from ..corpus.standoff import read_documents

    path = Path(path)
    try:
        documents = list(read_documents(path, fmt))
    except CorpusFormatError:
        raise
    except ValueError as err:  # unknown format, not readable as the format
        message = " ".join(str(err).split())
        if message.startswith(f"{path}:"):
            message = message[len(f"{path}:"):].strip()
        raise CorpusFormatError(message, path=path) from None
    if not documents:
        raise CorpusFormatError("no documents to evaluate on", path=path)
    no_text = [d.id for d in documents if d.text is None]
    if no_text:
        raise CorpusFormatError(f"document {no_text[0]} has no text (annotate's JSONL holds offsets only); "
                                "evaluate needs gold with text: PubTator, BioC or brat", path=path)
    return documents


def passages(document: "StandoffDocument") -> List[Tuple[int, str]]:
    """``(offset, text)`` of each non-blank passage (the whole text when the reader set none)."""
    found = [(p.offset, p.text) for p in document.passages if p.text.strip()]
    if not document.passages and (document.text or "").strip():
        found = [(0, document.text or "")]
    return found


def predict_raw(nlp: "Language", documents: Sequence["StandoffDocument"], *,
                batch_size: int = 64) -> Tuple[List[Tuple[str, List[CharSpan]]], List[float], int]:
    """Run ``nlp`` on each document's raw text (passage by passage, its own tokenizer), timing each document.

    nlp (Language): the pipeline (with a doc cleaner).
    documents (Sequence[StandoffDocument]): the documents.
    batch_size (int): passages per ``nlp.pipe`` batch within a document.
    RETURNS (Tuple[List, List[float], int]): per document ``(id, [(start, end, label), …])`` at document
        offsets, each document's seconds, and the number of words (non-space tokens) seen.
    """
    from tqdm import tqdm

    if documents and passages(documents[0]):  # warm-up: first-call allocations are not a document's latency
        list(nlp.pipe([text for _, text in passages(documents[0])], batch_size=batch_size))
    out: List[Tuple[str, List[CharSpan]]] = []
    seconds: List[float] = []
    words = 0
    for document in tqdm(documents, desc="predicting on raw text", unit="doc", disable=None):
        chunks = passages(document)
        start = time.perf_counter()
        docs = list(nlp.pipe([text for _, text in chunks], batch_size=batch_size))
        seconds.append(time.perf_counter() - start)
        spans = [(offset + e.start_char, offset + e.end_char, e.label_)
                 for (offset, _), doc in zip(chunks, docs) for e in doc.ents]
        words += sum(1 for doc in docs for t in doc if not t.is_space)
        out.append((document.id, spans))
    return out, seconds, words


def timing_summary(seconds: Sequence[float], *, words: int = 0) -> Dict[str, Any]:
    """Mean, p50 and p95 milliseconds per document and documents per second.

    seconds (Sequence[float]): each document's inference time.
    words (int): words (non-space tokens) processed, for ``words_per_second``.
    """
    import numpy as np

    total = float(sum(seconds))
    ms = [1000 * s for s in seconds]
    return {
        "unit": "document",
        "method": TIMING_METHOD,
        "n_documents": len(seconds),
        "mean_ms": statistics.fmean(ms) if ms else 0.0,
        "p50_ms": float(np.percentile(ms, 50)) if ms else 0.0,
        "p95_ms": float(np.percentile(ms, 95)) if ms else 0.0,
        "max_ms": max(ms) if ms else 0.0,
        "total_s": total,
        "docs_per_second": len(seconds) / total if total else 0.0,
        "words_per_second": words / total if total else 0.0,
    }


def predict_gold_tokens(nlp: "Language", documents: Sequence["StandoffDocument"], *,
                        tokenizer: Optional[Callable] = None, batch_size: int = 64,
                        label_map: Optional[Mapping[str, Optional[str]]] = None,
                        ) -> Tuple[List[Tuple[str, List[CharSpan]]], Dict[str, Any]]:
    """Predict on the gold tokenisation (``convert``'s): Docs from :func:`~spacy_bioner.corpus.align.standoff_to_doc`,
    then :func:`~.predict.predict`; entities back at document character offsets.

    nlp (Language): the pipeline.
    documents (Sequence[StandoffDocument]): the documents.
    tokenizer (Optional[Callable]): the gold tokenizer (None: ``convert``'s default, the biomedical tokenizer).
    batch_size (int): Docs per ``nlp.pipe`` batch.
    label_map (Optional[Mapping[str, Optional[str]]]): passed to the alignment (its counts only; scoring maps types).
    RETURNS (Tuple[List, Dict[str, Any]]): per document ``(id, spans)`` and the alignment summary's totals.
    """
    from ..corpus.align import AlignmentSummary, default_tokenizer, standoff_to_doc

    summary = AlignmentSummary(label_map=dict(label_map or {}))
    tokenizer = tokenizer or default_tokenizer()
    gold_docs = [standoff_to_doc(d, tokenizer, summary=summary) for d in documents]
    predicted = predict(nlp, gold_docs, batch_size=batch_size)
    spans = [(d.id, [(e.start_char, e.end_char, e.label_) for e in doc.ents]) for d, doc in zip(documents, predicted)]
    totals: Dict[str, int] = {}
    for by_type in summary.files.values():
        for counts in by_type.values():
            for key, value in counts.to_dict().items():
                if key != "max_change_chars":
                    totals[key] = totals.get(key, 0) + value
    return spans, {"n_tokens": sum(len(doc) for doc in gold_docs), "gold_mentions": totals}


def tokenization_cost(raw: Dict[str, Any], gold_tokens: Dict[str, Any]) -> Dict[str, Any]:
    """Raw-text minus gold-token scores: F1 per scheme, strict F1 per type (negative: raw text loses)."""
    out: Dict[str, Any] = {f"{name}_f": raw["overall"][name]["f"] - gold_tokens["overall"][name]["f"]
                           for name in CHAR_SCHEMES}
    types = sorted(set(raw["per_type"]) | set(gold_tokens["per_type"]))
    out["per_type_strict_f"] = {
        t: (raw["per_type"].get(t, {}).get("strict", {}).get("f", 0.0)
            - gold_tokens["per_type"].get(t, {}).get("strict", {}).get("f", 0.0)) for t in types}
    return out


def evaluate_standoff(model: Union[str, Path], gold_path: Path, *, gold_format: Optional[str] = None,
                      gpu_id: int = -1, batch_size: int = 64, n_bootstrap: int = 1000, seed: int = 0,
                      length_buckets: float = 0.8, int8: bool = False, runtime: str = "torch",
                      labels: Optional[Collection] = None,
                      label_map: Optional[Mapping[str, Optional[str]]] = None,
                      gold_tokenizer: Optional[Callable] = None, warn=None) -> Dict[str, Any]:
    """Load a pipeline and score it at character offsets on standoff gold, on raw text and on gold tokens.

    model (Union[str, Path]): pipeline folder or package name.
    gold_path (Path): PubTator, BioC or brat gold (file or folder).
    gold_format (Optional[str]): its format; None: from the suffixes.
    gpu_id (int): GPU index, -1 for CPU.
    batch_size (int): passages (raw text) / Docs (gold tokens) per ``nlp.pipe`` batch.
    n_bootstrap (int): bootstrap resamples of documents (0: none).
    seed (int): bootstrap seed.
    length_buckets (float): length-bucket ratio for every transformer (0: off).
    int8 (bool): int8 dynamic quantization (CPU).
    runtime (str): ``torch``, ``onnx`` or ``auto`` (see :mod:`spacy_bioner.models.onnx_runtime`).
    labels (Optional[Collection]): score only these types (after mapping), gold and predicted.
    label_map (Optional[Mapping[str, Optional[str]]]): type → type (None drops), gold and predicted.
    gold_tokenizer (Optional[Callable]): tokenizer of the gold-token pass (None: ``convert``'s default).
    warn (Callable[[str], None]): called with a warning about gold types the pipeline never predicts.
    RETURNS (Dict[str, Any]): the raw-text character-level metrics at the top level (as ``score`` writes
        them), ``raw_text`` and ``gold_tokens`` (each pass's full metrics), ``tokenization_cost``
        (raw − gold-token F1), ``timing`` (per-document ms, docs/s), ``words_per_second``, ``inference``,
        ``unknown_gold_labels`` and spaCy's flat ``ents_p``/``ents_r``/``ents_f``/``ents_per_type`` (raw, strict).
    """
    require_gpu(gpu_id)
    documents = read_gold_documents(gold_path, gold_format)
    nlp = load_pipeline(model, register=register_components)
    inference = speed_up(nlp, gpu_id=gpu_id, length_buckets=length_buckets, int8=int8, runtime=runtime)
    add_doc_cleaner(nlp)
    nlp.max_length = max(nlp.max_length, max(len(d.text or "") for d in documents) + 1)

    def mentions(docs: Any) -> MentionSet:
        return collect_mentions(docs, labels=labels, label_map=label_map)

    gold = mentions(document_spans(documents))
    known = entity_labels(nlp)
    unknown: Dict[str, int] = {}
    if known is not None:
        for spans in gold.docs.values():
            for _, _, label in spans:
                if label not in known:
                    unknown[label] = unknown.get(label, 0) + 1
        unknown = dict(sorted(unknown.items()))
    if unknown and warn is not None:
        listed = ", ".join(f"{label} ({n} in gold)" for label, n in unknown.items())
        warn(f"The gold data has types the pipeline never predicts: {listed}. They count as misses; the pipeline "
             f"predicts {', '.join(sorted(known or ())) or 'no labels'} (--label-map maps types).")

    reset_peak_gpu_memory(gpu_id)
    raw_spans, seconds, words = predict_raw(nlp, documents, batch_size=batch_size)
    raw = score_mentions(gold, mentions(raw_spans), n_bootstrap=n_bootstrap, seed=seed)
    timing = timing_summary(seconds, words=words)
    token_spans, token_info = predict_gold_tokens(nlp, documents, tokenizer=gold_tokenizer, batch_size=batch_size)
    on_tokens = score_mentions(gold, mentions(token_spans), n_bootstrap=n_bootstrap, seed=seed)
    on_tokens.update(token_info)

    metrics: Dict[str, Any] = dict(raw)
    strict = raw["overall"]["strict"]
    metrics.update({
        "gold": str(gold_path),
        "gold_format": gold_format or _detected(gold_path),
        "raw_text": raw,
        "gold_tokens": on_tokens,
        "tokenization_cost": tokenization_cost(raw, on_tokens),
        "timing": timing,
        "words_per_second": timing["words_per_second"],
        "unknown_gold_labels": unknown,
        "inference": inference,
        "ents_p": strict["p"], "ents_r": strict["r"], "ents_f": strict["f"],
        "ents_per_type": {t: {k: v["strict"][k] for k in "prf"} for t, v in raw["per_type"].items()},
    })
    if gpu_id >= 0:
        metrics["peak_gpu_mib"] = peak_gpu_memory_mib(gpu_id)
    return metrics


def _detected(path: Path) -> Optional[str]:
    from ..corpus.standoff import detect_format

    return detect_format(Path(path))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def markdown_standoff_report(metrics: Dict[str, Any], *, title: str) -> str:
    """The character-level report of the raw-text pass, then raw text vs gold tokens and inference time."""
    text = markdown_char_report(metrics, title=title)
    raw, tok, cost = metrics["raw_text"]["overall"], metrics["gold_tokens"]["overall"], metrics["tokenization_cost"]
    lines = ["", "## Raw text vs gold tokens", "",
             "The same documents and gold mentions, predicted on raw text with the pipeline's own tokenizer "
             "(as `annotate` runs) and on the gold tokenisation (`convert`'s, tokens split at every mention "
             "boundary). Δ = raw text − gold tokens: what tokenisation costs.", "",
             "| scheme | raw-text F1 | gold-token F1 | Δ F1 |", "|---|---:|---:|---:|"]
    for name in CHAR_SCHEMES:
        lines.append(f"| {name} | {_pct(raw[name]['f'])} | {_pct(tok[name]['f'])} | {100 * cost[name + '_f']:+.2f} |")
    if cost["per_type_strict_f"]:
        lines += ["", "| type | raw-text strict F1 | gold-token strict F1 | Δ F1 |", "|---|---:|---:|---:|"]
        for t, delta in cost["per_type_strict_f"].items():
            r = metrics["raw_text"]["per_type"].get(t, {}).get("strict", {}).get("f", 0.0)
            g = metrics["gold_tokens"]["per_type"].get(t, {}).get("strict", {}).get("f", 0.0)
            lines.append(f"| {t} | {_pct(r)} | {_pct(g)} | {100 * delta:+.2f} |")
    t = metrics["timing"]
    lines += ["", "## Inference time (raw text)", "",
              "| documents | mean ms/doc | p50 ms | p95 ms | docs/s | words/s |", "|---:|---:|---:|---:|---:|---:|",
              f"| {t['n_documents']} | {t['mean_ms']:.1f} | {t['p50_ms']:.1f} | {t['p95_ms']:.1f} | "
              f"{t['docs_per_second']:.1f} | {t['words_per_second']:.0f} |", "", f"Timing: {t['method']}."]
    return text + "\n".join(lines) + "\n"


def write_standoff_outputs(metrics: Dict[str, Any], *, output: Optional[Path] = None, report: Optional[Path] = None,
                           title: str = "NER evaluation on raw text") -> None:
    """Write whichever of the metrics JSON and the Markdown report were asked for (each once, overwritten)."""
    from .report import write_json

    if output is not None:
        write_json(metrics, output)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(markdown_standoff_report(metrics, title=title), encoding="utf8")
