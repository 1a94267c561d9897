"""``score`` (gold vs predictions, no model), ``evaluate`` (run a pipeline, then
score) and ``cross-validate`` (k-fold training and scoring)."""
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer
from wasabi import msg

from ._util import EXTRA_ARGS, app, config_overrides, fail, friendly_errors

# Options shared by `score` and `evaluate`.
OUTPUT = typer.Option(None, "--output", "-o", help="Write metrics as JSON")
REPORT = typer.Option(None, "--report", "-r", help="Write a Markdown report")
PLOTS = typer.Option(None, "--plots", "-p", help="Write PNG plots to this folder")
BOOTSTRAP = typer.Option(1000, "--bootstrap", help="Bootstrap resamples for the F1 interval")
SEED = typer.Option(0, "--seed", help="Bootstrap seed")


def print_headline(metrics: Dict[str, Any]) -> None:
    sp, sq = metrics["spacy"], metrics["seqeval"]
    msg.table(
        [
            ("spaCy strict", f"{100 * sp['ents_p']:.2f}", f"{100 * sp['ents_r']:.2f}", f"{100 * sp['ents_f']:.2f}"),
            ("seqeval strict", f"{100 * sq['precision']:.2f}", f"{100 * sq['recall']:.2f}", f"{100 * sq['f1']:.2f}"),
            ("relaxed partial", *(f"{100 * metrics['relaxed']['partial'][k]:.2f}" for k in "prf")),
            ("untyped", *(f"{100 * metrics['untyped'][k]:.2f}" for k in "prf")),
        ],
        header=("", "P", "R", "F"),
        aligns=("l", "r", "r", "r"),
    )
    b = metrics["bootstrap"]
    if b.get("n_samples"):
        msg.info(f"strict F1 95% CI: {100 * b['low']:.2f}–{100 * b['high']:.2f} ({b['n_samples']} resamples)")


@app.command("score")
def score_cli(
    gold_path: Path = typer.Argument(..., help="Gold: IOB/CoNLL file, folder or .spacy; or standoff "
                                     "(PubTator, BioC, brat, annotate's JSONL)"),
    pred_path: Path = typer.Argument(..., help="Predictions: over the same tokens (IOB/CoNLL, .spacy), or "
                                     "standoff over the same texts"),
    output: Optional[Path] = OUTPUT,
    report: Optional[Path] = REPORT,
    plots: Optional[Path] = PLOTS,
    n_bootstrap: int = BOOTSTRAP,
    seed: int = SEED,
    gold_format: Optional[str] = typer.Option(None, "--gold-format", help="Standoff format of GOLD: "
                                              "pubtator, bioc, brat or jsonl (default: from the suffix)"),
    pred_format: Optional[str] = typer.Option(None, "--pred-format", help="Standoff format of PRED (as --gold-format)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="Standoff: score only these types, e.g. Disease,Chemical"),
    label_map: Optional[Path] = typer.Option(None, "--label-map", help="Standoff: JSON/YAML file mapping gold and "
                                             "predicted types (type → type, or null to drop)"),
) -> None:
    """Score predictions against gold without a model (any system's output).

    Standoff input (either side PubTator, BioC, brat or annotate's JSONL; the formats may
    differ, a .spacy side is read as its Docs' text and entities) is scored at character
    offsets: strict, exact/partial/type, HunFlair2's lenient (±1 character) and the official
    BioCreative V CDR mention counts, per type, with bootstrap intervals over documents.
    """
    if any(x is not None for x in (gold_format, pred_format, labels, label_map)) or _standoff_input(gold_path, pred_path):
        return _score_standoff(gold_path, pred_path, output=output, report=report, plots=plots,
                               n_bootstrap=n_bootstrap, seed=seed, gold_format=gold_format,
                               pred_format=pred_format, labels=labels, label_map=label_map)
    from spacy.vocab import Vocab

    from ..corpus.readers import load_corpus_docs
    from ..evaluation.predict import require_tokens, score_docs
    from ..evaluation.report import write_outputs
    from ..evaluation.scoring import TokenMismatchError

    with friendly_errors():
        vocab = Vocab()
        start = time.perf_counter()
        try:
            pairs, metrics = score_docs(require_tokens(load_corpus_docs(gold_path, vocab=vocab), gold_path),
                                        load_corpus_docs(pred_path, vocab=vocab),
                                        n_bootstrap=n_bootstrap, seed=seed)
        except TokenMismatchError as err:
            fail(f"{gold_path} vs {pred_path}: {err}")
        write_outputs(metrics, pairs, output=output, report=report, plots=plots, title=f"{pred_path} vs {gold_path}")
        print_headline(metrics)
        msg.good(f"Scored {metrics['n_tokens']} tokens in {time.perf_counter() - start:.1f}s")


def _standoff_input(*paths: Path) -> bool:
    from ..evaluation.charlevel import is_standoff

    return any(is_standoff(p) for p in paths)


def _score_standoff(gold_path: Path, pred_path: Path, *, output: Optional[Path], report: Optional[Path],
                    plots: Optional[Path], n_bootstrap: int, seed: int, gold_format: Optional[str],
                    pred_format: Optional[str], labels: Optional[str], label_map: Optional[Path]) -> None:
    """``score`` at character level (standoff gold and/or predictions)."""
    from ..evaluation.charlevel import CHAR_SCHEMES, is_standoff, load_label_map, read_mentions, score_mentions
    from ..evaluation.charlevel import write_char_outputs

    with friendly_errors():
        for path, fmt in ((gold_path, gold_format), (pred_path, pred_format)):
            if not path.exists():
                fail(f"{path}: no such file or folder")
            if path.suffix != ".spacy" and not is_standoff(path, fmt):
                fail(f"{path}: not a standoff file (PubTator, BioC, brat, JSONL) or .spacy DocBin; character-level "
                     "scoring needs both sides at document offsets (--gold-format/--pred-format name the format)")
        start = time.perf_counter()
        keep = {t.strip() for t in labels.split(",") if t.strip()} if labels else None
        try:
            mapping = load_label_map(label_map) if label_map is not None else None
            gold = read_mentions(gold_path, fmt=gold_format, labels=keep, label_map=mapping)
            pred = read_mentions(pred_path, fmt=pred_format, labels=keep, label_map=mapping)
        except ValueError as err:
            fail(" ".join(str(err).split()))
        if not gold.docs:
            fail(f"{gold_path}: no documents to score")
        metrics = score_mentions(gold, pred, n_bootstrap=n_bootstrap, seed=seed)
        if plots is not None:
            msg.warn("--plots: not drawn for character-level scores (see the report)")
        write_char_outputs(metrics, output=output, report=report, title=f"{pred_path} vs {gold_path}")
        o = metrics["overall"]
        msg.table([(name, *(f"{100 * o[name][k]:.2f}" for k in "prf")) for name in CHAR_SCHEMES],
                  header=("character level", "P", "R", "F"), aligns=("l", "r", "r", "r"))
        b = metrics["bootstrap"]
        if b.get("n_samples"):
            msg.info(f"strict F1 95% CI: {100 * b['low']:.2f}–{100 * b['high']:.2f} ({b['n_samples']} resamples of documents)")
        unknown = metrics["pred_documents_not_in_gold"]
        if unknown["count"]:
            msg.warn(f"{unknown['count']} predicted documents are not in gold and were not scored")
        msg.good(f"Scored {metrics['n_documents']} documents at character offsets in {time.perf_counter() - start:.1f}s")


@app.command("evaluate")
def evaluate_cli(
    model: Path = typer.Argument(..., help="A trained pipeline (folder or installed package name)"),
    data: Path = typer.Argument(..., help="Gold data: IOB/CoNLL file, folder or .spacy; or standoff "
                                "(PubTator, BioC, brat: scored at character offsets on raw text)"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    batch_size: int = typer.Option(64, "--batch-size", "-b", help="Docs per nlp.pipe batch"),
    output: Optional[Path] = OUTPUT,
    report: Optional[Path] = REPORT,
    plots: Optional[Path] = PLOTS,
    n_bootstrap: int = BOOTSTRAP,
    seed: int = SEED,
    length_buckets: float = typer.Option(0.8, "--length-buckets",
                                         help="Sub-batch padded batches by length (ratio in (0, 1], 0 = off)"),
    int8: bool = typer.Option(False, "--int8", help="int8 dynamic quantization (CPU; faster, F1 may move a little)"),
    runtime: str = typer.Option("torch", "--runtime", help="Inference runtime: torch, onnx (ONNX Runtime, the spacy-bioner[onnx] extra) or auto (onnx where it can run)"),
    noise: Optional[str] = typer.Option(None, "--noise", help="Also score seeded noisy copies: "
                                        "typo,typo_mention,typo_context,case,hyphen,spelling,swap or all"),
    noise_train: Optional[Path] = typer.Option(None, "--noise-train",
                                               help="Corpus whose mentions `swap` draws (default: the test set's)"),
    noise_rate: float = typer.Option(0.2, "--noise-rate", help="Share of words/mentions changed per noise kind"),
    attack: Optional[float] = typer.Option(None, "--attack", help="Also score under a test-time FGSM attack on the "
                                           "embeddings: each token moved by EPS x the mean token norm (e.g. 0.03)"),
    gold_format: Optional[str] = typer.Option(None, "--gold-format", help="Standoff format of DATA: pubtator, "
                                              "bioc or brat (default: from the suffix)"),
    labels: Optional[str] = typer.Option(None, "--labels", help="Standoff: score only these types, e.g. Disease,Chemical"),
    label_map: Optional[Path] = typer.Option(None, "--label-map", help="Standoff: JSON/YAML file mapping gold and "
                                             "predicted types (type → type, or null to drop)"),
    gold_tokenizer: Optional[str] = typer.Option(None, "--gold-tokenizer", help="Standoff: tokenizer of the "
                                                 "gold-token pass, as convert's --tokenizer (default: the "
                                                 "biomedical tokenizer)"),
    split: str = typer.Option("test", "--split", help="Corpus mix (DATA a .yml mix file): the split to score"),
    corpora_dir: Optional[Path] = typer.Option(None, "--corpora-dir", help="Corpus mix: where its relative "
                                               "corpus paths start (default: the mix's corpora_dir)"),
    corpora: Optional[str] = typer.Option(None, "--corpora", help="Corpus mix: score only these corpora (A,B)"),
    limit: int = typer.Option(0, "--limit", help="Corpus mix: at most this many documents per corpus (0: all)"),
) -> None:
    """Run a pipeline over gold data (its tokens) and score it; reports words/s.

    With --noise KIND[,KIND] it also scores seeded noisy copies of the data (clean vs
    noisy P/R/F1 per kind, in the metrics JSON under "robustness" and in the report);
    with --attack EPS, under a test-time FGSM attack on the embeddings ("robustness.attack").

    Standoff gold (PubTator, BioC, brat) is scored at character offsets: the pipeline runs on
    each document's raw text with its own tokenizer (as `annotate` does), timed per document,
    and again on the gold tokenisation (convert's), so the JSON holds "raw_text" and
    "gold_tokens" side by side, their difference and the inference time per document.
    """
    from ..evaluation.charlevel import is_standoff

    if data.suffix in (".yml", ".yaml") or (not data.exists() and is_shipped_mix(str(data))):
        if noise is not None or attack is not None:
            fail("--noise, --attack: for one IOB/.spacy gold file, not a corpus mix")
        return _evaluate_mix(model, data, split=split, corpora=corpora.split(",") if corpora else None,
                             corpora_dir=corpora_dir, limit=limit, gpu_id=gpu_id,
                             batch_size=batch_size, output=output, report=report, n_bootstrap=n_bootstrap, seed=seed,
                             length_buckets=length_buckets, int8=int8, runtime=runtime)
    standoff_only = {"--labels": labels, "--label-map": label_map, "--gold-tokenizer": gold_tokenizer}
    if gold_format is not None or (data.suffix != ".spacy" and data.exists() and is_standoff(data)):
        if noise is not None:
            fail("--noise: for IOB/.spacy gold only (noisy copies are made of gold tokens)")
        if attack is not None:
            fail("--attack: for IOB/.spacy gold only (the attack uses the gold tokens' annotation)")
        return _evaluate_standoff(model, data, gpu_id=gpu_id, batch_size=batch_size, output=output, report=report,
                                  plots=plots, n_bootstrap=n_bootstrap, seed=seed, length_buckets=length_buckets,
                                  int8=int8, runtime=runtime, gold_format=gold_format, labels=labels,
                                  label_map=label_map, gold_tokenizer=gold_tokenizer)
    given = [name for name, value in standoff_only.items() if value is not None]
    if given:
        fail(f"{', '.join(given)}: for standoff gold only (PubTator, BioC, brat); {data} is read as IOB/.spacy "
             "(--gold-format names a standoff format)")
    from ..corpus.noise import parse_kinds
    from ..evaluation.predict import evaluate_model
    from ..evaluation.report import write_outputs

    try:
        kinds = parse_kinds(noise)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--noise")
    with friendly_errors():
        pairs, metrics = evaluate_model(model, data, gpu_id=gpu_id, batch_size=batch_size,
                                        n_bootstrap=n_bootstrap, seed=seed, length_buckets=length_buckets,
                                        int8=int8, runtime=runtime, noise=kinds, noise_train=noise_train,
                                        noise_rate=noise_rate, attack=attack, warn=msg.warn)
        write_outputs(metrics, pairs, output=output, report=report, plots=plots, title=f"{model} on {data}")
        print_headline(metrics)
        if "robustness" in metrics:
            rob = metrics["robustness"]
            msg.table([("clean", *(f"{100 * rob['clean'][k]:.2f}" for k in "prf"), "")]
                      + [(kind, *(f"{100 * v[k]:.2f}" for k in "prf"), f"{100 * v['delta_f']:+.2f}")
                         for kind, v in rob["kinds"].items()]
                      + ([(f"attack ε {attack}", *(f"{100 * rob['attack'][k]:.2f}" for k in "prf"),
                           f"{100 * rob['attack']['delta_f']:+.2f}")] if "attack" in rob else []),
                      header=("noise", "P", "R", "F", "ΔF"), aligns=("l", "r", "r", "r", "r"))
        msg.info(f"{metrics['words_per_second']:.0f} words/s"
                 + (f", peak GPU {metrics['peak_gpu_mib']:.0f} MiB" if metrics.get("peak_gpu_mib") else ""))


def is_shipped_mix(name: str) -> bool:
    """Whether ``name`` is a mix shipped in ``configs/mixes/`` (``huner-heldout``)."""
    from ..corpus.mixes import resolve_mix_path
    from ..errors import CorpusConfigError

    try:
        resolve_mix_path(name)
    except CorpusConfigError:
        return False
    return True


def _evaluate_mix(model: Path, mix: Path, *, split: str, corpora: Optional[List[str]], corpora_dir: Optional[Path],
                  limit: int, gpu_id: int, batch_size: int,
                  output: Optional[Path], report: Optional[Path], n_bootstrap: int, seed: int, length_buckets: float,
                  int8: bool, runtime: str) -> None:
    """Every corpus of a mix, each scored on the types it annotates (JSON, Markdown table)."""
    from ..evaluation.crosscorpus import evaluate_mix, mix_table
    from ..evaluation.report import write_json

    with friendly_errors():
        result = evaluate_mix(model, mix, split=split, corpora=corpora, corpora_dir=corpora_dir, limit=limit,
                              gpu_id=gpu_id,
                              batch_size=batch_size, n_bootstrap=n_bootstrap, seed=seed,
                              length_buckets=length_buckets, int8=int8, runtime=runtime, warn=msg.warn)
    if output is not None:
        write_json(result, output)
    table = mix_table(result)
    if report is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(table, encoding="utf8")
    msg.table([(name, ", ".join(r["types"]), f"{100 * r['strict']['f']:.2f}", f"{100 * r['lenient']['f']:.2f}")
               for name, r in result["corpora"].items()], header=("corpus", "types", "strict F1", "lenient F1"),
              aligns=("l", "l", "r", "r"))
    msg.info(f"Macro average: strict {100 * result['macro']['strict']:.2f}, "
             f"lenient {100 * result['macro']['lenient']:.2f}")


def _evaluate_standoff(model: Path, data: Path, *, gpu_id: int, batch_size: int, output: Optional[Path],
                       report: Optional[Path], plots: Optional[Path], n_bootstrap: int, seed: int,
                       length_buckets: float, int8: bool, runtime: str, gold_format: Optional[str],
                       labels: Optional[str], label_map: Optional[Path], gold_tokenizer: Optional[str]) -> None:
    """``evaluate`` on standoff gold: raw text and gold tokens, at character level, timed per document."""
    from ..corpus.align import load_tokenizer
    from ..evaluation.charlevel import CHAR_SCHEMES, load_label_map
    from ..evaluation.rawtext import evaluate_standoff, write_standoff_outputs

    with friendly_errors():
        if not data.exists():
            fail(f"{data}: no such file or folder")
        keep = {t.strip() for t in labels.split(",") if t.strip()} if labels else None
        try:
            mapping = load_label_map(label_map) if label_map is not None else None
            tokenizer = load_tokenizer(gold_tokenizer) if gold_tokenizer else None
        except ValueError as err:
            fail(" ".join(str(err).split()))
        metrics = evaluate_standoff(model, data, gold_format=gold_format, gpu_id=gpu_id, batch_size=batch_size,
                                    n_bootstrap=n_bootstrap, seed=seed, length_buckets=length_buckets, int8=int8,
                                    runtime=runtime,
                                    labels=keep, label_map=mapping, gold_tokenizer=tokenizer, warn=msg.warn)
        if plots is not None:
            msg.warn("--plots: not drawn for character-level scores (see the report)")
        write_standoff_outputs(metrics, output=output, report=report, title=f"{model} on {data}")
        raw, tok = metrics["raw_text"]["overall"], metrics["gold_tokens"]["overall"]
        msg.table([(name, *(f"{100 * raw[name][k]:.2f}" for k in "prf"), f"{100 * tok[name]['f']:.2f}",
                    f"{100 * metrics['tokenization_cost'][name + '_f']:+.2f}") for name in CHAR_SCHEMES],
                  header=("character level", "P", "R", "F raw text", "F gold tokens", "ΔF"),
                  aligns=("l", "r", "r", "r", "r", "r"))
        b = metrics["bootstrap"]
        if b.get("n_samples"):
            msg.info(f"raw-text strict F1 95% CI: {100 * b['low']:.2f}–{100 * b['high']:.2f} "
                     f"({b['n_samples']} resamples of documents)")
        t = metrics["timing"]
        msg.info(f"{t['n_documents']} documents: {t['mean_ms']:.1f} ms/doc mean, p50 {t['p50_ms']:.1f}, "
                 f"p95 {t['p95_ms']:.1f}; {t['docs_per_second']:.1f} docs/s, {t['words_per_second']:.0f} words/s"
                 + (f", peak GPU {metrics['peak_gpu_mib']:.0f} MiB" if metrics.get("peak_gpu_mib") else ""))


@app.command("cross-validate", context_settings=EXTRA_ARGS)
def cross_validate_cli(
    ctx: typer.Context,
    config: str = typer.Argument(..., help="Base config: a path, or a shipped name (transformer, tok2vec)"),
    data: List[Path] = typer.Argument(..., help="Train (+dev) data: IOB/CoNLL files, folders or .spacy"),
    backbone: Optional[str] = typer.Option(None, "--backbone", "-b", help="Backbone overrides: path or shipped name"),
    head: Optional[str] = typer.Option(None, "--head", help="Entity head: ner or tagger"),
    adversarial: Optional[str] = typer.Option(None, "--adversarial", help="Adversarial training: fgsm, pgd or none"),
    folds: int = typer.Option(5, "--folds", "-k", help="Number of folds"),
    output_dir: Path = typer.Option(Path("training/cv"), "--output-dir", "-o", help="Where folds and models go"),
    gpu_id: int = typer.Option(-1, "--gpu-id", "-g", help="GPU id, -1 for CPU"),
    seed: int = typer.Option(0, "--seed", help="Seed for the fold split"),
    n_bootstrap: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples per fold"),
) -> None:
    """k-fold cross-validation: fold k is the test set, fold k+1 the dev set, the rest trains.

    Folds are drawn over documents, seeded: all the Docs of one document (known
    from -DOCSTART- lines or document ids) land in the same fold. Without them
    each Doc (a sentence, in most IOB files) is its own group: a warning says so,
    and cv.json's "grouping" too. Each fold trains like `train` (same backbone
    check, schedule fitted to the fold). Extra --section.key value options
    override the config.
    """
    from ..experiments.crossval import cross_validate

    # DATA is variadic, so click hands it the override options as well: split them off.
    args = [str(d) for d in data] + list(ctx.args)
    first_option = next((i for i, a in enumerate(args) if a.startswith("--")), len(args))
    data = [Path(a) for a in args[:first_option]]
    if folds < 2:
        raise typer.BadParameter("must be at least 2", param_hint="--folds")

    def on_start(k: int, sizes: Dict[str, int]) -> None:
        msg.divider(f"Fold {k + 1}/{folds}: {sizes['train']} train, {sizes['dev']} dev, {sizes['test']} test Docs")

    def on_grouping(grouping: Any) -> None:
        if grouping.documents_known:
            msg.info(f"Folds by document: {grouping.n_groups} documents in {len(grouping.groups)} Docs")
        else:
            msg.warn(f"Folds grouped by {grouping.describe()}")

    with friendly_errors():
        overrides = config_overrides(args[first_option:])
        try:
            summary = cross_validate(config, data, output_dir, backbone=backbone, head=head, adversarial=adversarial,
                                     overrides=overrides, folds=folds,
                                     seed=seed, gpu_id=gpu_id, n_bootstrap=n_bootstrap,
                                     on_start=on_start, on_grouping=on_grouping,
                                     on_fold=lambda k, m: print_headline(m))
        except ValueError as err:
            if "folds" in str(err):
                raise typer.BadParameter(str(err), param_hint="--folds")
            raise
    msg.table([(name, f"{100 * v['mean']:.2f} ± {100 * v['std']:.2f}") for name, v in summary["summary"].items()],
              header=("metric", f"mean ± std over {folds} folds"))
    msg.good(f"Wrote {output_dir / 'cv.json'}")
