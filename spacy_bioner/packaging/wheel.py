"""A trained run as a pip-installable wheel with a model card.

:func:`package_run` takes a run's record (``spacy-bioner package-best`` picks the
``ok`` run of a sweep with the best dev F1: :mod:`spacy_bioner.experiments.package_best`),
scores it on dev and test (strict P/R/F1 overall and per type, each with a
95 % bootstrap interval), writes the model card into ``meta.json`` and
``README.md`` and runs ``spacy package --build wheel``. spaCy adds the packages
whose registered code the pipeline uses (spacy-bioner, spacy-transformers) to
the wheel's requirements; spacy-bioner is not on PyPI, so its own wheel is built
into the same folder, and ``pip install --find-links packages/ packages/en_….whl``
works on a machine that has only the package registry and that folder.

:func:`package_pipeline` (``spacy-bioner package``, the demo's ``package`` step)
does the same for any trained pipeline: both wheels land in
``packages/<lang>_<name>-<version>/dist/``. A pipeline trained on a corpus mix
(its ``run.json``, beside ``model-best``, records the mix) gets a card too
(:func:`mix_card`): the mix, each corpus's label map, annotated types and sizes,
and every score of the ``evaluate MODEL MIX.yml`` results given with ``--scores``.
Both leave training-only components (``bioner_adversarial``) out of the wheel.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from .. import __version__
from ..errors import ConfigValueError, ModelLoadError, PackagingError

#: Licences of the shipped corpora, as stated by their sources (../shared/corpora/SOURCES.md).
CORPUS_LICENCES = {
    "MTL-": "CC BY 4.0 (MTL-Bioinformatics-2016 materials; see the original corpus' terms)",
    "MTL-BioNLP11ID-IOB": "GENIA Project licence (annotations CC BY 3.0)",
    "MTL-JNLPBA": "GENIA Project licence (annotations CC BY 3.0)",
    "BioBERT-": "no licence stated for the data (see the original corpus' terms)",
    "PharmaCoNER-": "no data licence stated (see the original corpus' terms)",
}
#: Where each shipped corpus comes from.
CORPUS_URLS = {
    "MTL-": "https://github.com/cambridgeltl/MTL-Bioinformatics-2016",
    "BioBERT-": "https://github.com/BioMedBERT/biomedbert",
    "PharmaCoNER-": "https://github.com/CongSun-dlut/PharmaCoNER",
}


def _lookup(table: Dict[str, str], corpus: str) -> Optional[str]:
    if corpus in table:
        return table[corpus]
    prefixes = [p for p in table if p.endswith("-") and corpus.startswith(p)]
    return table[max(prefixes, key=len)] if prefixes else None


def corpus_licence(corpus: str, *, given: Optional[str] = None) -> str:
    """The corpus' licence: the grid's ``corpus.license``, else the known one, else a pointer."""
    return given or _lookup(CORPUS_LICENCES, corpus) or "unknown: check the corpus' own licence before use"


def package_name(record: Dict[str, Any]) -> str:
    """``bioner_<corpus>_<model>``, lower case, as spaCy wants package names."""
    corpus = re.sub(r"^(mtl|biobert)[-_]", "", str(record.get("corpus", "corpus")).lower())
    corpus = re.sub(r"[-_]iob(es)?$", "", corpus)
    name = f"bioner_{corpus}_{record.get('model', 'model')}".lower()
    return re.sub(r"[^a-z0-9_]+", "_", name).strip("_")


def score_split(model: Path, data: Path, *, n_bootstrap: int, seed: int = 0) -> Dict[str, Any]:
    """Strict P/R/F1 of ``model`` on ``data``, overall and per type, with 95 % bootstrap intervals."""
    from ..evaluation.predict import evaluate_model
    from ..evaluation.scoring import bootstrap_by_type

    pairs, metrics = evaluate_model(model, data, n_bootstrap=n_bootstrap, seed=seed)
    by_type = bootstrap_by_type(pairs, n_samples=n_bootstrap, seed=seed)
    per_type = {}
    for label, scores in sorted((metrics.get("ents_per_type") or {}).items()):
        ci = by_type.get(label, {})
        per_type[label] = {"p": scores["p"], "r": scores["r"], "f": scores["f"],
                           "f_low": ci.get("low"), "f_high": ci.get("high")}
    return {"p": metrics["ents_p"], "r": metrics["ents_r"], "f": metrics["ents_f"],
            "f_low": metrics["bootstrap"]["low"], "f_high": metrics["bootstrap"]["high"],
            "n_bootstrap": n_bootstrap, "per_type": per_type, "n_sentences": metrics["n_sentences"],
            "n_gold": metrics["n_gold"], "words_per_second": metrics["words_per_second"]}


def model_card(record: Dict[str, Any], *, dev: Dict[str, Any], test: Optional[Dict[str, Any]], labels: List[str],
               licence: str, hardware: Dict[str, Any], config: Dict[str, Any]) -> Dict[str, Any]:
    """What the card says, as the ``bioner`` block of meta.json."""
    training = config.get("training", {})
    rate = training.get("optimizer", {}).get("learn_rate")
    return {
        "backbone": record.get("backbone_resolved") or record.get("backbone") or record.get("base"),
        "backbone_config": record.get("backbone"), "base_config": record.get("base"), "head": record.get("head"),
        "corpus": record.get("corpus"), "corpus_license": licence,
        "corpus_url": _lookup(CORPUS_URLS, str(record.get("corpus"))),
        "entity_types": labels, "dev": dev, "test": test,
        "hyperparameters": {
            **record.get("fixed", {}), **record.get("params", {}),
            "learn_rate": record.get("learn_rate"), "batch_size_sentences": record.get("batch_size"),
            "schedule": rate if isinstance(rate, dict) else None, "dropout": training.get("dropout"),
            "max_steps": training.get("max_steps"), "seed": record.get("seed"),
        },
        "training": {"steps": record.get("steps"), "epochs": record.get("epochs"),
                     "best_step": record.get("best_step"), "wall_seconds": record.get("wall_seconds"),
                     "train_words_per_second": record.get("train_words_per_second"),
                     "peak_rss_mib": record.get("peak_rss_mib"), "peak_gpu_mib": record.get("peak_gpu_mib"),
                     "hardware": hardware},
        "sweep_run_id": record.get("run_id"), "spacy_bioner_version": __version__,
    }


def _pct(x: Optional[float]) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def card_markdown(name: str, version: str, card: Dict[str, Any]) -> str:
    """README.md of the wheel: what it is, how to install and use it, its scores and how it was trained."""
    lines = [f"# {name} {version}", "",
             f"Biomedical named-entity recognizer for **{', '.join(card['entity_types']) or 'entities'}**, "
             f"trained with spacy-bioner on **{card['corpus']}** "
             f"(licence: {card['corpus_license']}) with the backbone **{card['backbone']}** and the "
             f"`{card.get('head') or 'ner'}` head.", "",
             "## Install and use", "", "```bash",
             "pip install torch   # first: the CPU or CUDA build you want (a bare `torch` may pull CUDA wheels)",
             f"pip install --find-links . {name}-{version}-py3-none-any.whl   # from the folder with both wheels",
             "```", "", "```python", "import spacy", f'nlp = spacy.load("{name}")',
             'doc = nlp("BRCA1 mutations cause hereditary breast cancer.")',
             "print([(e.text, e.label_) for e in doc.ents])", "```", "",
             "## Scores", "",
             "spaCy's strict entity scores (%), 95 % bootstrap intervals over sentences "
             f"({card['dev']['n_bootstrap']} resamples).", "",
             "| split | type | P | R | F1 (95 % CI) |", "|---|---|---:|---:|---|"]
    for split in ("dev", "test"):
        scores = card.get(split)
        if not scores:
            continue
        rows = [("all", scores)] + list(scores["per_type"].items())
        for label, s in rows:
            lines.append(f"| {split} | {label} | {_pct(s['p'])} | {_pct(s['r'])} | {_pct(s['f'])} "
                         f"({_pct(s.get('f_low'))}–{_pct(s.get('f_high'))}) |")
    hp = card["hyperparameters"]
    tr = card["training"]
    hw = tr.get("hardware") or {}
    lines += ["", "The model was selected by dev F1 among the runs of a sweep; test scores were never used to "
              "choose it.", "", "## Training", "",
              "| setting | value |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in hp.items() if v is not None and not isinstance(v, dict)]
    lines += [f"| steps (epochs) | {tr.get('steps')} ({tr.get('epochs')}) |",
              f"| wall time | {tr.get('wall_seconds') or 0:.0f} s |",
              f"| train words/s | {tr.get('train_words_per_second') or 0:.0f} |",
              f"| peak RSS | {tr.get('peak_rss_mib') or 0:.0f} MiB |"]
    if tr.get("peak_gpu_mib"):
        lines.append(f"| peak GPU memory | {tr['peak_gpu_mib']:.0f} MiB |")
    lines += [f"| hardware | {hw.get('gpu') or 'CPU'}; {hw.get('cpus')} CPUs ({hw.get('cpu')}), {hw.get('platform')} |",
              f"| sweep run | `{card.get('sweep_run_id')}` |", f"| spacy-bioner | {card['spacy_bioner_version']} |",
              "", "## Data and licence", "",
              f"Corpus: {card['corpus']}" + (f" ({card['corpus_url']})" if card.get("corpus_url") else "")
              + f". Licence: {card['corpus_license']}. The model inherits the terms of its training data and "
              "of its backbone's weights.", ""]
    return "\n".join(lines)


def project_root() -> Optional[Path]:
    """The source tree spacy-bioner was installed from (a clone), or None for an installed wheel."""
    root = Path(__file__).resolve().parent.parent.parent
    return root if (root / "setup.cfg").is_file() and (root / "spacy_bioner").is_dir() else None


def run_build(args: List[str], *, what: str, **kwargs: Any) -> None:
    """Run a wheel build; its failure is a :class:`PackagingError` ending with the last lines it printed.

    args (List[str]): the command.
    what (str): what it is, for the message (e.g. ``spacy package``).
    """
    proc = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = [line.strip() for line in ((proc.stdout or "") + "\n" + (proc.stderr or "")).splitlines()
                if line.strip()][-3:]
        raise PackagingError(f"{what} failed (exit code {proc.returncode}): {' | '.join(tail) or 'no output'}")


def built_wheel(folder: Path, pattern: str, *, what: str) -> Path:
    """The wheel a build wrote into ``folder``; a :class:`PackagingError` when it wrote none."""
    wheel = next(iter(sorted(folder.glob(pattern))), None) if folder.is_dir() else None
    if wheel is None:
        raise PackagingError(f"{what} wrote no wheel {pattern} into {folder}")
    return wheel


def build_own_wheel(dest: Path) -> Optional[Path]:
    """spacy-bioner's own wheel in ``dest`` (spacy-bioner is not on PyPI); None when not in a clone.

    A failing ``pip wheel`` (or one that writes no wheel) is a :class:`PackagingError`.
    """
    root = project_root()
    if root is None:
        return None
    for old in dest.glob("spacy_bioner-*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        # setuptools ships whatever its build folder holds, stale files included: build in a fresh one,
        # never in the clone's build/ (a module moved or deleted since would come back in the wheel)
        extra = Path(tmp) / "build.cfg"
        extra.write_text(f"[build]\nbuild_base = {Path(tmp) / 'build'}\n", encoding="utf8")
        run_build([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                   str(dest), str(root)], what=f"pip wheel {root} (spacy-bioner's own wheel)",
                  env={**os.environ, "DIST_EXTRA_CONFIG": str(extra)})
    return built_wheel(dest, "spacy_bioner-*.whl", what="pip wheel (spacy-bioner's own wheel)")


def stage_pipeline(model: Path, stage: Path) -> List[str]:
    """Copy the pipeline ``model`` to ``stage`` without its training-only components.

    A pipeline trained before they were dropped at save time (its config lists
    ``bioner_adversarial``, which would make loading the wheel need that factory)
    is loaded without them and written again; any other is copied as is, but for its cache of ONNX
    graphs (``onnx/``).

    model (Path): a pipeline folder.
    stage (Path): the folder to write (must not exist).
    RETURNS (List[str]): the components left out.
    """
    from spacy.util import load_config

    from ..training.callbacks import CALLBACK, drop_training_only, training_only_components

    config = load_config(model / "config.cfg", interpolate=False)
    names = training_only_components(config)
    if not names and CALLBACK not in config.to_str():
        from ..models.onnx_runtime import CACHE_FOLDER

        # the ONNX graphs evaluate/annotate --runtime onnx cached beside it are rebuilt where the wheel runs
        shutil.copytree(model, stage, ignore=lambda folder, names: [CACHE_FOLDER] if Path(folder) == model and
                        CACHE_FOLDER in names else [])
        return []
    import spacy

    nlp = spacy.load(model, exclude=names)
    drop_training_only(nlp).to_disk(stage)
    return names


def installed_torch_pin() -> str:
    """``torch==X.Y.Z`` of the torch this pipeline was packaged with (``torch`` if none is installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"torch=={version('torch').split('+')[0]}"
    except PackageNotFoundError:
        return "torch"


def install_command(dist: Path, package: str) -> str:
    """The pip command that installs ``package`` from the package index plus the wheels in ``dist``."""
    return f"pip install --find-links {dist} {package}"


def run_record_of(model: Path) -> Optional[Dict[str, Any]]:
    """The ``run.json`` of the training run that wrote ``model`` (``model-best``/``model-last`` sit beside it).

    model (Path): a pipeline folder.
    RETURNS (Optional[Dict[str, Any]]): the record, or None when there is none (or it cannot be read).
    """
    path = model.parent / "run.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf8"))
    except ValueError:
        return None


def read_scores(scores: Optional[List[Path]]) -> List[Dict[str, Any]]:
    """``evaluate MODEL MIX.yml -o FILE`` results, checked.

    scores (Optional[List[Path]]): the JSON files.
    RETURNS (List[Dict[str, Any]]): their contents; a ConfigValueError names a bad one.
    """
    results = []
    for path in scores or []:
        try:
            result = json.loads(Path(path).read_text(encoding="utf8"))
        except (OSError, ValueError) as err:
            raise ConfigValueError(f"--scores {path}: {err}") from None
        if not isinstance(result, dict) or "corpora" not in result or "macro" not in result:
            raise ConfigValueError(f"--scores {path}: give the JSON that `spacy-bioner evaluate MODEL MIX.yml -o "
                                   "FILE` writes (with `corpora` and `macro`)")
        results.append(result)
    return results


def _public(value: Any) -> Any:
    """A path on this machine is no use in a distributed card: keep its last part (a hub name stays whole)."""
    text = str(value or "")
    return Path(text).name if Path(text).is_absolute() else value


def mix_card(record: Dict[str, Any], *, config: Dict[str, Any], scores: List[Dict[str, Any]],
             labels: List[str]) -> Dict[str, Any]:
    """The card of a pipeline trained on a corpus mix, as the ``bioner`` block of meta.json.

    record (Dict[str, Any]): the training run's ``run.json`` (with its ``mix`` record).
    config (Dict[str, Any]): the packaged pipeline's own ``config.cfg`` (how it was trained).
    scores (List[Dict[str, Any]]): results of ``spacy-bioner evaluate MODEL MIX.yml`` (in-corpus, held-out…).
    labels (List[str]): the entity types the pipeline predicts.
    RETURNS (Dict[str, Any]): ``mix`` (name, types, temperature, corpora with label maps, annotated types,
        sentences per split, training probability), ``scores``, ``training`` and ``backbone``.
    """
    mix = record["mix"]
    components = config.get("components", {})
    model = (components.get("transformer") or {}).get("model") or {}
    tagger = components.get("bioner_tagger") or {}
    corpora = [{**c, "path": _public(c.get("path"))} for c in mix.get("corpora") or []]
    return {
        "entity_types": labels,
        "backbone": (config.get("paths") or {}).get("backbone") or _public(record.get("backbone")),
        "partial_labels": _prompt_mode(model.get("task_prompt")) or tagger.get("partial_labels", "naive"),
        "mix": {"mix": mix.get("mix"), "types": mix.get("types"), "temperature": mix.get("temperature"),
                "corpora": corpora},
        "scores": [{"mix": r.get("mix"), "split": r.get("split"), "macro": r["macro"],
                    "corpora": {name: {k: v for k, v in c.items() if k != "path"} for name, c in r["corpora"].items()}}
                   for r in scores],
        "training": {k: record.get(k) for k in ("steps", "epochs", "wall_seconds", "train_words_per_second",
                                                "peak_rss_mib")},
        "spacy_bioner_version": __version__,
    }


def mix_card_markdown(name: str, *, version: str, card: Dict[str, Any]) -> str:
    """README.md of a mix-trained wheel: use, the mix and its label maps, every score.

    name (str): the package's full name (``en_…``).
    version (str): the package version.
    card (Dict[str, Any]): :func:`mix_card`'s block.
    RETURNS (str): Markdown.
    """
    from ..evaluation.crosscorpus import mix_table

    mix = card["mix"]
    lines = [f"# {name} {version}", "",
             f"One biomedical named-entity recognizer for **{', '.join(card['entity_types'])}**, trained with "
             f"spacy-bioner on the corpus mix **{mix['mix']}** ({len(mix['corpora'])} corpora) with the backbone "
             f"**{card['backbone']}** (partially annotated corpora: `{card.get('partial_labels') or 'naive'}`). "
             "One pass tags every type.", "",
             "## Install and use", "", "```bash",
             "pip install torch   # first: the CPU or CUDA build you want (a bare `torch` may pull CUDA wheels)",
             f"pip install --find-links . {name}   # from the folder with both wheels",
             "```", "", "```python", "import spacy", f'nlp = spacy.load("{name}")',
             'doc = nlp("BRCA1 mutations cause breast cancer in mice treated with tamoxifen.")',
             "print([(e.text, e.label_) for e in doc.ents])", "```", "",
             "## The mix", "",
             f"Types: {', '.join(mix['types'])}; training draws corpus i with probability ∝ weight × size ** "
             f"{mix.get('temperature')}. Each corpus's label map (source type → mix type; unlisted types are "
             "dropped) and the types it annotates:", "",
             "| corpus | label map | annotates | train / dev / test sentences | training probability |",
             "|---|---|---|---|---:|"]
    for c in mix["corpora"]:
        mapping = ", ".join(f"{k} → {v or 'dropped'}" for k, v in (c.get("label_map") or {}).items())
        sizes = c.get("sentences") or {}
        lines.append(f"| {c['name']} | {mapping} | {', '.join(c.get('annotates') or [])} | "
                     f"{' / '.join(str(sizes.get(s, '–')) for s in ('train', 'dev', 'test'))} | "
                     f"{c.get('probability') or 0:.3f} |")
    lines += ["", "## Scores", ""]
    if not card["scores"]:
        lines += ["No scores were given when this wheel was built (`spacy-bioner package --scores`).", ""]
    for result in card["scores"]:
        lines += ["##" + mix_table(result), ""]  # its "# title" becomes a "### " under "## Scores"
    tr = card["training"]
    lines += ["## Training", "", f"{tr.get('steps')} steps ({tr.get('epochs')} epochs), "
              f"{tr.get('wall_seconds') or 0:.0f} s, peak RSS {tr.get('peak_rss_mib') or 0:.0f} MiB; spacy-bioner "
              f"{card['spacy_bioner_version']}.", "", "## Data and licence", "",
              "The model inherits the terms of every corpus in the mix (see each corpus's source) and of its "
              "backbone's weights.", ""]
    return "\n".join(lines)


def write_mix_card(model: Path, stage: Path, *, name: str, version: str,
                   scores: Optional[List[Dict[str, Any]]] = None) -> Optional[Dict[str, Any]]:
    """Write the mix card into a staged pipeline (``meta.json`` ``bioner`` block and ``README.md``).

    model (Path): the trained pipeline (its run's ``run.json`` is beside it).
    stage (Path): the staged copy ``spacy package`` will build.
    name (str): the package's full name (``en_…``).
    version (str): the package version.
    scores (Optional[List[Dict[str, Any]]]): :func:`read_scores` results.
    RETURNS (Optional[Dict[str, Any]]): the card; None when the run did not train on a mix.
    """
    from spacy.util import load_config

    record = run_record_of(model)
    if not record or not record.get("mix"):
        if scores:
            raise ConfigValueError(f"--scores: {model} was not trained on a corpus mix (no `mix` in "
                                   f"{model.parent / 'run.json'}); the card's scores are a mix's")
        return None
    meta = json.loads((stage / "meta.json").read_text(encoding="utf8"))
    types = list(record["mix"].get("types") or [])
    labels = sorted({label for comp in (meta.get("labels") or {}).values() for label in comp if label in types}) \
        or types
    config = load_config(stage / "config.cfg", interpolate=False)
    card = mix_card(record, config=config, scores=list(scores or []), labels=labels)
    meta["bioner"] = card
    meta["description"] = (f"Biomedical NER ({', '.join(labels)}) from the corpus mix {record['mix'].get('mix')}, "
                           f"backbone {card['backbone']}")
    meta["sources"] = [{"name": c["name"], "url": corpus_url_of(str(c.get("path")))} for c in record["mix"]["corpora"]]
    (stage / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf8")
    (stage / "README.md").write_text(mix_card_markdown(name, version=version, card=card), encoding="utf8")
    return card


def corpus_url_of(path: str) -> str:
    """The source of a corpus folder, when known (by its folder name).

    path (str): the corpus folder.
    RETURNS (str): its URL, or "".
    """
    return _lookup(CORPUS_URLS, Path(path).name) or ""


def package_pipeline(model: Path, packages_dir: Path, *, name: str, version: str = "0.1.0",
                     own_wheel: bool = True, scores: Optional[List[Path]] = None) -> Dict[str, Any]:
    """A trained pipeline as a wheel, with spacy-bioner's own wheel beside it (``spacy-bioner package``).

    Runs ``spacy package --build wheel`` on a copy without training-only
    components; spaCy writes ``packages_dir/<lang>_<name>-<version>/dist/``. The
    model wheel requires spacy-bioner, which is not on the package index, so its
    wheel is built into the same ``dist`` folder:
    ``pip install --find-links DIST <lang>_<name>`` then installs both.

    model (Path): a pipeline folder (e.g. ``training/demo/model-best``).
    packages_dir (Path): where ``spacy package`` writes its folder.
    name (str): package name without the language prefix (lower case, digits, underscores).
    version (str): package version.
    own_wheel (bool): also build spacy-bioner's wheel into ``dist`` (only from a clone).
    scores (Optional[List[Path]]): ``evaluate MODEL MIX.yml`` results for the card of a mix-trained pipeline.
    RETURNS (Dict[str, Any]): ``wheel``, ``spacy_bioner_wheel`` (None outside a clone),
        ``package`` (the name to load), ``dist``, ``dropped`` (components left out), ``install`` (the command)
        and ``card`` (the mix card, or None).
    """
    if not (model / "config.cfg").is_file():
        raise ModelLoadError(f"{model}: not a trained pipeline folder (no config.cfg); give e.g. "
                             "training/demo/model-best")
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ConfigValueError(f"--name {name}: use lower-case letters, digits and underscores")
    from spacy.util import load_config

    full = f"{load_config(model / 'config.cfg', interpolate=False)['nlp']['lang']}_{name}"
    results = read_scores(scores)  # a bad file fails before anything is built
    packages_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / full
        dropped = stage_pipeline(model, stage)
        card = write_mix_card(model, stage, name=full, version=version, scores=results)
        run_build([sys.executable, "-m", "spacy", "package", str(stage), str(packages_dir), "--name", name,
                   "--version", version, "--build", "wheel", "--force"], what="spacy package")
    dist = packages_dir / f"{full}-{version}" / "dist"
    wheel = built_wheel(dist, f"{full}-{version}-*.whl", what="spacy package")
    spacy_bioner_wheel = build_own_wheel(dist) if own_wheel else None
    return {"wheel": wheel, "spacy_bioner_wheel": spacy_bioner_wheel, "package": full, "dist": dist,
            "dropped": dropped, "install": install_command(dist, full), "card": card}


def package_run(record: Dict[str, Any], packages_dir: Path, *, name: Optional[str] = None, version: str = "0.1.0",
                dev: Optional[Path] = None, test: Optional[Path] = None, n_bootstrap: int = 1000,
                licence: Optional[str] = None, own_wheel: bool = True) -> Dict[str, Any]:
    """Package one sweep run's ``model-best`` as a wheel with its model card.

    record (Dict[str, Any]): the run's record from ``sweep.jsonl``.
    packages_dir (Path): where the wheels go (``spacy package`` folders too).
    name (Optional[str]): package name without ``en_`` (default: ``bioner_<corpus>_<model>``).
    version (str): package version.
    dev (Optional[Path]) / test (Optional[Path]): splits to score (default: the run's own).
    n_bootstrap (int): bootstrap resamples of the intervals.
    licence (Optional[str]): the corpus' licence, when the known table does not have it.
    own_wheel (bool): also build spacy-bioner's wheel into ``packages_dir``.
    RETURNS (Dict[str, Any]): ``wheel``, ``spacy_bioner_wheel``, ``package`` (spacy's name) and ``card``.
    """
    spec = json.loads((Path(record["run_dir"]) / "spec.json").read_text(encoding="utf8"))
    model = Path(record.get("model_best") or Path(record["run_dir"]) / "model" / "model-best")
    if not (model / "config.cfg").is_file():
        raise ModelLoadError(f"{model}: the best run's model-best is missing (was the run folder moved or deleted?)")
    dev = dev or Path(spec["dev"])
    test = test or (Path(spec["test"]) if spec.get("test") else None)
    name = name or package_name(record)
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ConfigValueError(f"--name {name}: use lower-case letters, digits and underscores")
    from spacy.util import load_config

    config = load_config(model / "config.cfg", interpolate=False)
    meta = json.loads((model / "meta.json").read_text(encoding="utf8"))
    labels = sorted((meta.get("labels") or {}).get(next((c for c in ("ner", "bioner_tagger")
                                                         if c in (meta.get("labels") or {})), ""), []))
    dev_scores = score_split(model, dev, n_bootstrap=n_bootstrap)
    test_scores = score_split(model, test, n_bootstrap=n_bootstrap) if test and test.exists() else None
    labels = labels or sorted(dev_scores["per_type"])
    card = model_card(record, dev=dev_scores, test=test_scores, labels=labels,
                      licence=corpus_licence(str(record.get("corpus")), given=licence),
                      hardware=record.get("hardware") or {}, config=config)
    packages_dir.mkdir(parents=True, exist_ok=True)
    spacy_bioner_wheel = build_own_wheel(packages_dir) if own_wheel else None
    full = f"{config['nlp']['lang']}_{name}"
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp) / full
        if stage_pipeline(model, stage):  # its meta.json now lists the components left
            staged = json.loads((stage / "meta.json").read_text(encoding="utf8"))
            meta.update({k: staged[k] for k in ("pipeline", "components", "disabled") if k in staged})
        requirement = f"spacy-bioner>={__version__}"
        meta.update({
            "name": name, "version": version,
            "description": f"Biomedical NER ({', '.join(labels)}) on {record.get('corpus')}, backbone "
                           f"{card['backbone']}, selected by dev F1 from a spacy-bioner sweep",
            "license": f"corpus: {card['corpus_license']}",
            "sources": [s for s in ({"name": str(record.get("corpus")), "url": card.get("corpus_url") or "",
                                     "license": card["corpus_license"]},
                                    {"name": str(card["backbone"]), "url": _backbone_url(card["backbone"])}) if s],
            "performance": {**meta.get("performance", {}),
                            **({"ents_p": test_scores["p"], "ents_r": test_scores["r"], "ents_f": test_scores["f"],
                                "ents_per_type": {k: {"p": v["p"], "r": v["r"], "f": v["f"]}
                                                  for k, v in test_scores["per_type"].items()}}
                               if test_scores else {})},
            "requirements": sorted(set(meta.get("requirements") or []) | {requirement}),
            "bioner": card,
        })
        (stage / "meta.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf8")
        (stage / "README.md").write_text(card_markdown(full, version, card), encoding="utf8")
        run_build([sys.executable, "-m", "spacy", "package", str(stage), str(packages_dir), "--name", name,
                   "--version", version, "--build", "wheel", "--force"], what="spacy package")
    wheel = built_wheel(packages_dir / f"{full}-{version}" / "dist", "*.whl", what="spacy package")
    shutil.copy2(wheel, packages_dir / wheel.name)
    (packages_dir / f"{full}-{version}.card.json").write_text(json.dumps(card, indent=2, default=str) + "\n",
                                                               encoding="utf8")
    return {"wheel": packages_dir / wheel.name, "spacy_bioner_wheel": spacy_bioner_wheel, "package": full,
            "card": card, "record": record}


def _backbone_url(backbone: Any) -> str:
    text = str(backbone or "")
    if re.fullmatch(r"[\w.-]+/[\w.-]+", text):
        return f"https://huggingface.co/{text}"
    return ""


def _prompt_mode(prompt: Any) -> Optional[str]:
    """The ``--partial-labels`` mode a pipeline's task prompt block stands for (None: no prompt)."""
    if not prompt:
        return None
    named = isinstance(prompt, dict) and str(prompt.get("@misc", "")).endswith(".v3") and prompt.get("corpora")
    return "corpus-prompt" if named else "prompt"
