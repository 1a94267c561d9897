"""One model from many corpora: naive vs partial labels vs task prompts, all-in-one vs single-corpus, in-corpus and cross-corpus.

    python benchmarks/bench_mixes.py --json benchmarks/results/bench_mixes.json    # ~16 min a row, 21 rows
    python benchmarks/bench_mixes.py --rows all type --json benchmarks/results/bench_mixes.json   # the first 8
    python benchmarks/bench_mixes.py --rows all --throughput-model training/huner_minilm/model-best \
        --json benchmarks/results/bench_mixes.json   # tables and throughput again, a stand-in for deleted models
    python benchmarks/bench_mixes.py --steps 4 --limit 20 --dev-limit 10 --test-limit 20 --rows all/naive \
        type/Disease single/NCBI-disease --bootstrap 10 --json /tmp/mixes_smoke.json   # a quick check

Every row is ``spacy-bioner train transformer --backbone minilm --head tagger`` for
the same number of steps (``--steps`` × ``--batch-size`` sentences), best dev
checkpoint, scored with ``spacy-bioner evaluate MODEL MIX.yml`` (each corpus's
test split on the types it annotates; strict F1 with its bootstrap interval and
lenient F1) and on ``huner-heldout`` (BioNLP13CG, CRAFT: corpora no row trained on):

* ``all/naive``, ``all/partial``, ``all/prompt``: the all-in-one tagger on the ``huner`` mix, each way
  of learning from partially annotated corpora (``--partial-labels``);
* ``all/corpus-prompt``: ``all/prompt`` whose prompt also names the corpus (``task_prompt.v3``), so the one
  model can learn each corpus's guideline; scored in-corpus with its corpus named, held-out without;
* ``type/<Type>``: one tagger per type on ``huner-<type>`` (``partial``);
* ``single/<corpus>``: one tagger per corpus of ``huner``, on that corpus alone;
* ``exposure/<corpus>``: the same, for only as many steps as the all-in-one tagger spends on that corpus
  (``--steps`` × its sampling probability in ``huner``), which separates what sharing costs from what
  the smaller per-corpus budget costs. Not in the default plan: ``--rows exposure``;
* ``budget/partial``, ``budget/corpus-prompt``: ``all/partial`` and ``all/corpus-prompt`` for ``--budget-factor`` ×
  ``--steps`` steps, which shows whether what the all-in-one tagger loses at the shared budget closes with more
  steps. Not in the default plan: ``--rows budget`` (or one of them by id).

Tables: per type, naive vs partial (macro F1 over the corpora annotating it);
each corpus's own test split, single-corpus vs all-in-one; cross-corpus on the
held-out corpora, strict and lenient, beside HunFlair's, HUNER's and scispaCy's
published numbers (different backbones, budgets and corpus versions: context, not
a like-for-like comparison); and throughput, one all-in-one pass against the five
per-type pipelines over the same documents. Each row is written to ``--json`` as it
finishes, and rows already there with the same settings (step count included) are not run again.
"""
import argparse
import json
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from _run import run  # benchmarks/_run.py, beside this script

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
CORPORA = PROJECT.parent / "shared" / "corpora"
WORK = PROJECT / "training" / "bench_mixes"
TYPES = ["Gene", "Chemical", "Disease", "Species", "CellLine"]
#: Cross-corpus F1 (partial match) published for HunFlair / HUNER / scispaCy (../shared/references.md).
PUBLISHED = {("CRAFT", "Chemical"): (59.83, 42.99, 35.73), ("CRAFT", "Gene"): (73.51, 50.77, 47.76),
             ("CRAFT", "Species"): (85.04, 84.45, 54.21), ("BioNLP13CG", "Chemical"): (81.82, 67.37, 58.43),
             ("BioNLP13CG", "Disease"): (65.07, 55.32, 56.48), ("BioNLP13CG", "Gene"): (87.71, 71.22, 66.18),
             ("BioNLP13CG", "Species"): (76.41, 67.84, 57.11)}
#: What ``--partial-labels prompt`` / ``corpus-prompt`` configure now: a row measured with another is run again.
PROMPTS = {"prompt": "spacy_bioner.task_prompt.v2", "corpus-prompt": "spacy_bioner.task_prompt.v3"}
#: The poster's per-type F1 (BioBERT-base on the combined HUNER corpora) and HunFlair's average (references.md §1).
POSTER = {"CellLine": (69.7, 80.6), "Disease": (82.8, 86.5), "Species": (79.9, 87.0)}


def settings(args) -> Dict[str, Any]:
    return {"backbone": args.backbone, "steps": args.steps, "batch_size": args.batch_size, "limit": args.limit,
            "test_limit": args.test_limit, "seed": args.seed}


def plan(args) -> List[Dict[str, Any]]:
    sys.path.insert(0, str(PROJECT))
    from spacy_bioner.corpus.mixes import load_mix

    rows = [{"id": f"all/{mode}", "mix": "huner", "partial": mode} for mode in ("naive", "partial", "prompt",
                                                                                    "corpus-prompt")]
    rows += [{"id": f"type/{t}", "mix": f"huner-{t.lower()}", "partial": "partial"} for t in TYPES]
    mix = load_mix("huner", corpora_dir=args.corpora_dir)
    rows += [{"id": f"single/{c.name}", "mix": "huner", "partial": "naive", "corpora": [c.name]} for c in mix.corpora]
    wanted = set(args.rows or [])
    if any(w == "exposure" or w.startswith("exposure/") for w in wanted):
        import spacy

        from spacy_bioner.corpus.mixes import mix_summary

        summary = mix_summary(mix, vocab=spacy.blank("en").vocab, limit=args.limit)
        rows += [{"id": f"exposure/{c['name']}", "mix": "huner", "partial": "naive", "corpora": [c["name"]],
                  "max_steps": max(1, round(args.steps * c["probability"]))} for c in summary["corpora"]]
    rows += [{"id": f"budget/{mode}", "mix": "huner", "partial": mode, "max_steps": args.steps * args.budget_factor}
             for mode in ("partial", "corpus-prompt")]
    if not wanted:  # the default plan: all but the exposure and budget rows
        return [r for r in rows if not r["id"].startswith(("exposure/", "budget/"))]
    return [r for r in rows if r["id"] in wanted or r["id"].split("/")[0] in wanted]


def train_and_score(row: Dict[str, Any], args) -> Dict[str, Any]:
    out = WORK / row["id"].replace("/", "_")
    shutil.rmtree(out, ignore_errors=True)
    steps = row.get("max_steps", args.steps)
    cmd = [sys.executable, "-m", "spacy_bioner", "train", "transformer", "--backbone", args.backbone,
           "--head", "tagger", "--mix", row["mix"], "--partial-labels", row["partial"], "-o", str(out / "run"),
           "--training.max_steps", str(steps), "--training.eval_frequency", str(max(1, steps // 4)),
           "--training.patience", "0", "--training.batcher.size", str(args.batch_size),
           "--system.seed", str(args.seed), "--training.logger.progress_bar", "false",
           "--corpora.train.corpora_dir", str(args.corpora_dir), "--corpora.dev.corpora_dir", str(args.corpora_dir),
           "--corpora.train.limit", str(args.limit), "--corpora.dev.limit", str(args.dev_limit)]
    if row.get("corpora"):
        names = json.dumps(row["corpora"])
        cmd += ["--corpora.train.corpora", names, "--corpora.dev.corpora", names]
    began = time.perf_counter()
    run(cmd, out / "train.log")
    record = json.loads((out / "run" / "run.json").read_text(encoding="utf8"))
    model = out / "run" / "model-best"
    scores = {}
    for mix, corpora in ((row["mix"], row.get("corpora")),
                         ("huner-heldout", None)):
        path = out / f"{mix}.json"
        cmd = [sys.executable, "-m", "spacy_bioner", "evaluate", str(model), str(mix_file(mix)), "-o", str(path),
               "--bootstrap", str(args.bootstrap), "--corpora-dir", str(args.corpora_dir)]
        if corpora:
            cmd += ["--corpora", ",".join(corpora)]
        if args.test_limit:
            cmd += ["--limit", str(args.test_limit)]
        run(cmd, out / f"evaluate-{mix}.log")
        scores["heldout" if mix == "huner-heldout" else "in_corpus"] = json.loads(path.read_text(encoding="utf8"))
    prompt = re.search(r'@misc = "(spacy_bioner\.task_prompt\.v\d+)"', (model / "config.cfg").read_text(encoding="utf8"))
    result = {**row, "task_prompt": prompt.group(1) if prompt else None,
              "steps": record["steps"], "epochs": record["epochs"], "dev_f": record["dev_scores"].get("ents_f"),
              "train_seconds": record["train_seconds"], "peak_rss_mib": record["peak_rss_mib"],
              "macro_strict": scores["in_corpus"]["macro"]["strict"],
              "in_corpus": {name: slim(c) for name, c in scores["in_corpus"]["corpora"].items()},
              "heldout": {name: slim(c) for name, c in scores["heldout"]["corpora"].items()},
              "model": str(model), "wall_seconds": time.perf_counter() - began, "settings": settings(args)}
    print(f"{row['id']}: in-corpus macro {100 * scores['in_corpus']['macro']['strict']:.2f}, held-out lenient "
          f"{100 * scores['heldout']['macro']['lenient']:.2f}, {result['wall_seconds'] / 60:.1f} min",
          file=sys.stderr, flush=True)
    return result


def mix_file(name: str) -> Path:
    return PROJECT / "spacy_bioner" / "configs" / "mixes" / f"{name}.yml"


def slim(c: Dict[str, Any]) -> Dict[str, Any]:
    return {"types": c["types"], "strict": c["strict"]["f"], "lenient": c["lenient"]["f"],
            "low": c["bootstrap"]["low"], "high": c["bootstrap"]["high"],
            "per_type": {t: {"strict": v["strict"]["f"], "lenient": v["lenient"]["f"], "support": v["support"]}
                         for t, v in c["per_type"].items()}}


def type_macro(row: Dict[str, Any], label: str, *, kind: str = "strict") -> Optional[float]:
    values = [c["per_type"][label][kind] for c in row["in_corpus"].values() if label in c["per_type"]]
    return statistics.fmean(values) if values else None


def pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def of_kind(rows: Dict[str, Dict[str, Any]], kind: str) -> Dict[str, Dict[str, Any]]:
    """The rows ``<kind>/<name>`` (e.g. ``single``), by name."""
    return {k.split("/", 1)[1]: v for k, v in rows.items() if k.startswith(f"{kind}/")}


def singles_on(singles: Dict[str, Dict[str, Any]], corpus: str, label: str) -> List[tuple]:
    """(lenient F1, corpus name) of each single-corpus model on held-out ``corpus`` for ``label``, among the
    models whose corpus annotates ``label``; their ``max`` is the best single-corpus model, picked on the
    held-out corpus itself (an oracle)."""
    found = [(s["heldout"].get(corpus, {}).get("per_type", {}).get(label, {}).get("lenient"), name)
             for name, s in singles.items() if any(label in c["types"] for c in s["in_corpus"].values())]
    return [(v, n) for v, n in found if v is not None]


def lost_on(model: Dict[str, Any], singles: Dict[str, Dict[str, Any]]) -> List[str]:
    """The corpora whose single-corpus model ``model`` trails by more than 1 F1 with the intervals apart."""
    lost = []
    for name, s in singles.items():
        mine, shared = s["in_corpus"].get(name), model["in_corpus"].get(name)
        if mine and shared and shared["strict"] < mine["strict"] - 0.01 and shared["high"] < mine["low"]:
            lost.append(name)
    return lost


def cross_gains(models: Dict[str, Optional[Dict[str, Any]]], singles: Dict[str, Dict[str, Any]]) -> tuple:
    """Lenient F1 of ``models`` (type → row) on each held-out corpus × type cell minus the best single-corpus
    model of that type (oracle), and minus the mean over them: two lists over the same cells."""
    gains, typical = [], []
    for corpus in ("BioNLP13CG", "CRAFT"):
        for t in TYPES:
            mine = models[t]["heldout"].get(corpus, {}).get("per_type", {}).get(t) if models.get(t) else None
            each = singles_on(singles, corpus, t)
            if mine and each:
                gains.append(mine["lenient"] - max(each)[0])
                typical.append(mine["lenient"] - statistics.fmean(v for v, _ in each))
    return gains, typical


def ci(c: Dict[str, Any]) -> str:
    """Strict F1 and its bootstrap interval, in %."""
    return f"{pct(c['strict'])} ({pct(c['low'])}–{pct(c['high'])})"


def tables(rows: Dict[str, Dict[str, Any]], args) -> str:
    own = " (exposure and budget rows: their own step counts)" if any(
        r.startswith(("exposure/", "budget/")) for r in rows) else ""
    out = [f"MiniLM ({args.backbone}), bioner_tagger, {args.steps} steps × {args.batch_size} sentences per row{own}, "
           f"seed {args.seed}; F1 in %.", ""]
    naive, partial, prompt = rows.get("all/naive"), rows.get("all/partial"), rows.get("all/prompt")
    if naive or partial or prompt:
        out += ["### Partial annotation: all-in-one tagger, per type (macro strict F1 over the corpora annotating it)",
                "", "| type | naive | partial | Δ | prompt | Δ |", "|---|---:|---:|---:|---:|---:|"]

        def delta(a: Optional[float], b: Optional[float]) -> str:
            return "" if a is None or b is None else f"{100 * (b - a):+.2f}"

        for t in [*TYPES, None]:  # None: the macro over all corpora
            a, b, c = (None if r is None else (type_macro(r, t) if t else r.get("macro_strict"))
                       for r in (naive, partial, prompt))
            out.append(f"| {t or 'all corpora (macro)'} | {pct(a)} | {pct(b)} | {delta(a, b)} | {pct(c)} | "
                       f"{delta(a, c)} |")
        out.append("")
    singles, exposed = of_kind(rows, "single"), of_kind(rows, "exposure")
    if singles and partial:
        out += ["### Each corpus's own test split: single-corpus model vs all-in-one (partial), strict F1 (95 % CI)", "",
                "| corpus | types | single-corpus | all-in-one | Δ | single-corpus at the all-in-one's exposure "
                "(steps) | Δ |", "|---|---|---|---|---:|---|---:|"]
        for name, s in singles.items():
            mine, shared = s["in_corpus"].get(name), partial["in_corpus"].get(name)
            if not mine or not shared:
                continue
            few = exposed.get(name, {}).get("in_corpus", {}).get(name)
            out.append(f"| {name} | {', '.join(mine['types'])} | {ci(mine)} | {ci(shared)} | "
                       f"{100 * (shared['strict'] - mine['strict']):+.2f} | "
                       + (f"{ci(few)} ({exposed[name].get('max_steps')}) | "
                          f"{100 * (shared['strict'] - few['strict']):+.2f} |" if few else "– | |"))
        out += ["", "(Δ: all-in-one minus single-corpus. The exposure column trains the single-corpus model on "
                "only as many sentences of its corpus as the all-in-one model drew from it; its learning-rate "
                "schedule is compressed into those steps.)", ""]
    budget = rows.get("budget/partial")
    if singles and partial and budget:
        steps = budget["max_steps"]
        out += [f"### Budget: the all-in-one tagger (partial) at {args.steps} and {steps} steps, "
                "strict F1 (95 % CI)", "",
                f"| corpus | single-corpus | all-in-one ({args.steps}) | all-in-one ({steps}) | Δ |",
                "|---|---|---|---|---:|"]
        for name, s in singles.items():
            mine, shared, more = (r["in_corpus"].get(name) for r in (s, partial, budget))
            if mine and shared and more:
                out.append(f"| {name} | {ci(mine)} | {ci(shared)} | {ci(more)} | "
                           f"{100 * (more['strict'] - mine['strict']):+.2f} |")
        few, many = (cross_gains({t: r for t in TYPES}, singles)[0] for r in (partial, budget))
        out += ["", f"(Δ: all-in-one at {steps} steps minus the single-corpus model at {args.steps}; the {steps}-step "
                "run is a fresh run whose learning-rate schedule is stretched over its steps. Cross-corpus, "
                "the all-in-one minus the best single-corpus model of each type, mean lenient F1 over the held-out "
                f"cells ({len(few)}): {100 * statistics.fmean(few):+.2f} at {args.steps} steps, "
                f"{100 * statistics.fmean(many):+.2f} at {steps}.)" if few and many else
                f"(Δ: all-in-one at {steps} steps minus the single-corpus model at {args.steps}; the {steps}-step "
                "run is a fresh run whose learning-rate schedule is stretched over its steps.)", ""]
    named = rows.get("all/corpus-prompt")
    longer = rows.get("budget/corpus-prompt")
    if singles and prompt and named:
        more = f"corpus-named prompt ({longer['max_steps']}) | Δ vs single ({longer['max_steps']}) |" if longer else ""
        out += ["### Guidelines: the all-in-one tagger told the corpus (task prompt naming it) vs not, "
                f"{args.steps} steps" + (f" (and {longer['max_steps']})" if longer else "")
                + ", strict F1 (95 % CI)", "",
                "| corpus | single-corpus | prompt | corpus-named prompt | Δ vs prompt | Δ vs single |" + (f" {more}" if more else ""),
                "|---|---|---|---|---:|---:|" + ("---|---:|" if longer else "")]
        for name, s in singles.items():
            mine, plain, told = (r["in_corpus"].get(name) for r in (s, prompt, named))
            if mine and plain and told:
                line = (f"| {name} | {ci(mine)} | {ci(plain)} | {ci(told)} | "
                        f"{100 * (told['strict'] - plain['strict']):+.2f} | "
                        f"{100 * (told['strict'] - mine['strict']):+.2f} |")
                most = longer["in_corpus"].get(name) if longer else None
                if longer:
                    line += (f" {ci(most)} | {100 * (most['strict'] - mine['strict']):+.2f} |" if most else " – | |")
                out.append(line)
        models = [("prompt", prompt), ("corpus-named prompt", named)]
        if longer:
            models.append((f"corpus-named prompt at {longer['max_steps']} steps", longer))
        gains = [(label, cross_gains({t: r for t in TYPES}, singles)[0]) for label, r in models]
        out += ["", "(In-corpus, the corpus-named model is prompted with each test corpus's name; held-out corpora "
                "get the prompt without a corpus. Single-corpus models: " + f"{args.steps} steps. "
                "Cross-corpus, minus the best single-corpus model of each type, mean lenient F1: "
                + ", ".join(f"{label} {100 * statistics.fmean(g):+.2f}" for label, g in gains if g) + ".)", ""]
    per_type_rows = {t: rows.get(f"type/{t}") for t in TYPES}
    if any(per_type_rows.values()):
        out += ["### The poster's table: per-type models, macro strict F1 over the corpora of each type", "",
                "| type | per-type model (ours) | all-in-one (partial) | poster (BioBERT-base) | HunFlair average |",
                "|---|---:|---:|---:|---:|"]
        for t in TYPES:
            row = per_type_rows[t]
            ours = type_macro(row, t) if row else None
            shared = type_macro(partial, t) if partial else None
            poster, hunflair = POSTER.get(t, (None, None))
            out.append(f"| {t} | {pct(ours)} | {pct(shared)} | {'–' if poster is None else f'{poster:.1f}'} | "
                       f"{'–' if hunflair is None else f'{hunflair:.1f}'} |")
        out += ["", "(The poster and HunFlair used other backbones, budgets and corpus versions: context, "
                "not a like-for-like comparison.)", ""]
    out += ["### Cross-corpus: held-out BioNLP13CG and CRAFT, lenient (strict) F1", "",
            "| corpus | type | all-in-one | per-type | best single-corpus | mean single-corpus (n) | HunFlair | HUNER "
            "| scispaCy |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for corpus in ("BioNLP13CG", "CRAFT"):
        for t in TYPES:
            def cell(row):
                c = row["heldout"].get(corpus, {}).get("per_type", {}).get(t) if row else None
                return f"{pct(c['lenient'])} ({pct(c['strict'])})" if c else "–"
            each = singles_on(singles, corpus, t)
            best = max(each, default=None)
            published = PUBLISHED.get((corpus, t))
            if not any(r and r["heldout"].get(corpus, {}).get("per_type", {}).get(t) for r in rows.values()):
                continue
            out.append(f"| {corpus} | {t} | {cell(partial)} | {cell(rows.get(f'type/{t}'))} | "
                       f"{'–' if best is None else f'{pct(best[0])} ({best[1]})'} | "
                       f"{'–' if not each else f'{pct(statistics.fmean(v for v, _ in each))} ({len(each)})'} | "
                       + " | ".join(f"{v:.2f}" if published else "–" for v in (published or (None,) * 3)) + " |")
    out.append("")
    if singles:
        out += ["(Best single-corpus: the single-corpus model of that type scoring highest on the held-out corpus "
                "itself, an oracle choice; mean: over the n single-corpus models whose corpus annotates the type.)", ""]
    return "\n".join(out)


def goals(rows: Dict[str, Dict[str, Any]], speed: Optional[Dict[str, Any]]) -> List[str]:
    """The issue's goals, each as a line saying whether this run met it (``–`` where a row is missing)."""
    out = []
    naive = rows.get("all/naive")
    for mode in ("partial", "prompt"):
        row = rows.get(f"all/{mode}")
        if not naive or not row:
            out.append(f"{mode} ≥ naive + 10 F1 where naive collapses, and ≥ naive overall: –")
            continue
        per = {t: (type_macro(naive, t), type_macro(row, t)) for t in TYPES}
        per = {t: (a, b) for t, (a, b) in per.items() if a is not None and b is not None}
        worst = min(per, key=lambda t: per[t][0]) if per else None  # the type naive merging hurts most
        gain = per[worst][1] - per[worst][0] if worst else None
        a, b = naive.get("macro_strict"), row.get("macro_strict")
        overall = None if a is None or b is None else b - a
        met = gain is not None and gain >= 0.10 and overall is not None and overall >= 0
        out.append(f"{mode} vs naive: {worst} (naive's weakest type) {100 * (gain or 0):+.2f} F1, overall "
                   f"{'–' if overall is None else f'{100 * overall:+.2f}'}: {'met' if met else 'not met'}")
    partial = rows.get("all/partial")
    singles = of_kind(rows, "single")
    if partial and singles:
        lost = lost_on(partial, singles)
        out.append(f"all-in-one within 1 F1 (or overlapping CIs) of each single-corpus model: "
                   f"{'met' if not lost else 'not met (' + ', '.join(lost) + ')'}")
        budget = rows.get("budget/partial")
        if budget:
            lost = lost_on(budget, singles)
            out.append(f"(diagnostic) all-in-one at {budget['max_steps']} steps within 1 F1 (or overlapping CIs) of "
                       f"each single-corpus model: "
                       + ("yes" if not lost else f"behind on {len(lost)} ({', '.join(lost)})"))
        deltas = [partial["in_corpus"][n]["strict"] - e["in_corpus"][n]["strict"]
                  for n, e in of_kind(rows, "exposure").items() if n in partial["in_corpus"] and n in e["in_corpus"]]
        if deltas:
            out.append(f"(diagnostic) all-in-one vs single-corpus at the all-in-one's exposure to that corpus: mean "
                       f"{100 * statistics.fmean(deltas):+.2f} F1 over {len(deltas)} corpus(es)")
        for label, models in (("all-in-one", {t: partial for t in TYPES}),
                              ("per-type", {t: rows.get(f"type/{t}") for t in TYPES})):
            gains, typical = cross_gains(models, singles)
            if gains:
                mean = statistics.fmean(gains)
                out.append(f"cross-corpus: {label} vs the best single-corpus model of each type, mean lenient "
                           f"{100 * mean:+.2f} F1 over {len(gains)} corpus × type cell(s): "
                           f"{'met' if mean >= 0.05 else 'not met'} (goal +5)")
                out.append(f"(diagnostic) cross-corpus: {label} vs the mean over the single-corpus models of each type, "
                           f"lenient {100 * statistics.fmean(typical):+.2f} F1 over the same cells")
        if budget:
            gains, _ = cross_gains({t: budget for t in TYPES}, singles)
            if gains:
                out.append(f"(diagnostic) cross-corpus: all-in-one at {budget['max_steps']} steps vs the best single-corpus "
                           f"model of each type, mean lenient {100 * statistics.fmean(gains):+.2f} F1 over "
                           f"{len(gains)} corpus × type cell(s)")
    for named in (rows.get("all/corpus-prompt"), rows.get("budget/corpus-prompt")):
        if not named or not singles:
            continue
        at = f" at {named['max_steps']} steps" if named.get("max_steps") else ""
        lost = lost_on(named, singles)
        out.append(f"(diagnostic) all-in-one with corpus-named prompts{at} within 1 F1 (or overlapping CIs) of each "
                   "single-corpus model: " + ("yes" if not lost else f"behind on {len(lost)} ({', '.join(lost)})"))
        gains, _ = cross_gains({t: named for t in TYPES}, singles)
        if gains:
            out.append(f"(diagnostic) cross-corpus: all-in-one with corpus-named prompts{at} vs the best single-corpus "
                       f"model of each type, mean lenient {100 * statistics.fmean(gains):+.2f} F1 over "
                       f"{len(gains)} corpus × type cell(s)")
    if speed:
        stood = f" (stand-ins timed for {', '.join(speed['stand_ins'])})" if speed.get("stand_ins") else ""
        out.append(f"throughput: all-in-one {speed['speed_up']:.2f}× five per-type pipelines{stood}: "
                   f"{'met' if speed['speed_up'] >= 4 else 'not met'} (goal 4×)")
    return out


def throughput(rows: Dict[str, Dict[str, Any]], args) -> Optional[Dict[str, Any]]:
    """Docs/s of one all-in-one pass vs the five per-type pipelines, interleaved rounds, median.

    Speed depends on the architecture, not the weights: where a row has no model (not run yet, or
    its benchmark tree removed), ``--throughput-model`` (a pipeline of the same backbone and head, e.g.
    the release model) stands in for it, and the result names the stand-ins.
    """
    stand_in = args.throughput_model
    paths, stand_ins = {}, []
    for key in ["all/partial"] + [f"type/{t}" for t in TYPES]:
        model = rows.get(key, {}).get("model")
        path = Path(model) if model else None
        if path is None or not path.exists():
            if stand_in is None or not Path(stand_in).exists():
                print(f"throughput: no model for {key}; give --throughput-model", file=sys.stderr)
                return None
            path = Path(stand_in)
            stand_ins.append(key)
        paths[key] = path
    import spacy

    from spacy_bioner.corpus.mixes import corpus_docs, load_mix

    mix = load_mix("huner", corpora_dir=args.corpora_dir)
    nlp_all = spacy.load(paths["all/partial"])
    texts = [doc.text for c in mix.corpora for doc in corpus_docs(c, "test", vocab=nlp_all.vocab)[:40]]
    pipes = [spacy.load(paths[f"type/{t}"]) for t in TYPES]
    times: Dict[str, List[float]] = {"all-in-one": [], "five per-type": []}
    for _ in range(3):
        began = time.perf_counter()
        list(nlp_all.pipe(texts, batch_size=64))
        times["all-in-one"].append(time.perf_counter() - began)
        began = time.perf_counter()
        for nlp in pipes:
            list(nlp.pipe(texts, batch_size=64))
        times["five per-type"].append(time.perf_counter() - began)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"docs": len(texts), "docs_per_second": {k: len(texts) / v for k, v in med.items()},
            "speed_up": med["five per-type"] / med["all-in-one"], "stand_ins": stand_ins,
            "stand_in_model": str(stand_in) if stand_ins else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="minilm")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=0, help="at most this many training documents per corpus")
    parser.add_argument("--dev-limit", type=int, default=200, help="dev documents per corpus (dev scoring cost)")
    parser.add_argument("--test-limit", type=int, default=500, help="test documents per corpus (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-factor", type=int, default=4, help="budget rows: this many times --steps")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--rows", nargs="*", help="only these rows (ids, or all / type / single / exposure / budget)")
    parser.add_argument("--corpora-dir", type=Path, default=CORPORA)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--throughput-model", type=Path,
                        help="throughput: a pipeline of the rows' backbone and head to time where a row's model is gone")
    args = parser.parse_args()
    done: Dict[str, Dict[str, Any]] = {}
    kept: Dict[str, Any] = {}  # markdown, throughput, goals of the last complete run: kept until replaced
    if args.json and args.json.exists():
        previous = json.loads(args.json.read_text(encoding="utf8"))
        done = {r["id"]: r for r in previous.get("rows", [])}
        kept = {k: previous[k] for k in ("markdown", "throughput", "goals") if k in previous}

    def save() -> None:
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                             "rows": list(done.values()), **kept}, indent=2) + "\n")

    for row in plan(args):
        if row["id"] in done and done[row["id"]].get("settings") == settings(args) and \
                done[row["id"]].get("max_steps") == row.get("max_steps") and \
                done[row["id"]].get("task_prompt") == PROMPTS.get(row["partial"]):
            continue
        done[row["id"]] = train_and_score(row, args)
        save()
    text = tables(done, args)
    speed = throughput(done, args) or kept.get("throughput")  # none timed this run: the last one stands
    if speed:
        text += (f"\nThroughput over {speed['docs']} test documents: all-in-one "
                 f"{speed['docs_per_second']['all-in-one']:.1f} docs/s, five per-type pipelines "
                 f"{speed['docs_per_second']['five per-type']:.1f} docs/s ({speed['speed_up']:.2f}×)"
                 + (f"; timed with {speed['stand_in_model']} (same backbone and head) in place of the missing "
                    f"models of {', '.join(speed['stand_ins'])}" if speed["stand_ins"] else "") + ".\n")
    verdict = goals(done, speed)
    text += "\n### Goals\n\n" + "\n".join(f"- {line}" for line in verdict) + "\n"
    print(text)
    kept.update(markdown=text, throughput=speed, goals=verdict)
    save()


if __name__ == "__main__":
    main()
