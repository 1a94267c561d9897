"""``spacy-bioner package`` (the demo's ``package`` step): a pipeline wheel without training-only
components, spacy-bioner's own wheel beside it, installable with ``pip install --find-links DIST NAME``."""
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile

import pytest
import spacy
from spacy.training import Example
from spacy.util import load_model_from_config

from spacy_bioner.errors import ConfigValueError, ModelLoadError
from spacy_bioner.packaging.wheel import install_command, package_pipeline, stage_pipeline
from spacy_bioner.training.config import build_config

from .conftest import PROJECT

NAME = "bioner_adversarial"
TEXT = "BRCA1 mutations cause hereditary breast cancer ."
#: A pattern the tagger learns in a few dozen steps (as in test_sweep).
ROWS = "BRCA{i}\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n"


def old_adversarial_pipeline(backbone, path):
    """A pipeline saved with ``bioner_adversarial`` in it, as model-best was before the fix."""
    import spacy_bioner.pipeline.adversarial  # noqa: F401

    config = build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", adversarial="fgsm",
                          overrides={"paths.backbone": str(backbone)})
    config["training"]["before_to_disk"] = None  # as the adversarial configs had it
    nlp = load_model_from_config(config, auto_fill=True)
    doc = nlp.make_doc(TEXT)
    nlp.initialize(lambda: [Example.from_dict(doc, {"entities": [(0, 5, "Gene"), (33, 46, "Disease")]})])
    nlp.to_disk(path)
    assert NAME in (path / "config.cfg").read_text(encoding="utf8")
    return path


def test_staging_drops_training_only_components_of_an_old_pipeline(tiny, tmp_path):
    old = old_adversarial_pipeline(tiny["bert"], tmp_path / "old")
    assert stage_pipeline(old, tmp_path / "stage") == [NAME]
    assert NAME not in (tmp_path / "stage" / "config.cfg").read_text(encoding="utf8")
    meta = json.loads((tmp_path / "stage" / "meta.json").read_text(encoding="utf8"))
    assert meta["pipeline"] == ["transformer", "bioner_tagger", "doc_cleaner"]
    assert not (tmp_path / "stage" / NAME).exists()
    loaded, original = spacy.load(tmp_path / "stage"), spacy.load(old)
    assert loaded.pipe_names == ["transformer", "bioner_tagger", "doc_cleaner"]
    assert ([(e.start, e.end, e.label_) for e in loaded(TEXT).ents]
            == [(e.start, e.end, e.label_) for e in original(TEXT).ents])
    # a pipeline without them is copied as it is, but for the ONNX graphs --runtime onnx cached beside it
    (tmp_path / "stage" / "onnx").mkdir()
    (tmp_path / "stage" / "onnx" / "encoder-fp32.onnx").write_bytes(b"x" * 100)
    assert stage_pipeline(tmp_path / "stage", tmp_path / "again") == []
    assert not (tmp_path / "again" / "onnx").exists() and (tmp_path / "again" / "transformer").is_dir()
    assert ((tmp_path / "again" / "config.cfg").read_bytes() == (tmp_path / "stage" / "config.cfg").read_bytes())


def test_package_pipeline_checks_its_input(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.cfg"):
        package_pipeline(tmp_path, tmp_path / "packages", name="bioner_x")
    (tmp_path / "config.cfg").write_text("[nlp]\nlang = \"en\"\n", encoding="utf8")
    with pytest.raises(ConfigValueError, match="lower-case"):
        package_pipeline(tmp_path, tmp_path / "packages", name="Bad-Name")
    assert install_command(tmp_path / "dist", "en_x") == f"pip install --find-links {tmp_path / 'dist'} en_x"


def test_the_demo_packages_with_spacy_bioner_package():
    import srsly

    (step,) = [c for c in srsly.read_yaml(PROJECT / "project.yml")["commands"] if c["name"] == "package"]
    assert step["script"][0].startswith("python -m spacy_bioner package training/")


@pytest.mark.slow
def test_demo_wheel_installs_in_a_fresh_venv_from_its_dist_folder(tmp_path, tiny, fresh_venv):
    """Train a tiny tagger, add bioner_adversarial the old way, `spacy-bioner package` it as the demo does,
    then install into a fresh venv from the package index + that dist folder only, and tag a sentence."""
    from spacy_bioner.training.run import run_training

    began = time.perf_counter()
    backbone = shutil.copytree(tiny["bert"], tmp_path / "backbone")  # removed before loading: self-contained
    toy = tmp_path / "train.tsv"
    toy.write_text("\n".join(ROWS.format(i=i) for i in range(22)) + "\n", encoding="utf8")
    config = build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", overrides={
        "paths.backbone": str(backbone), "paths.train": str(toy), "paths.dev": str(toy),
        "training.max_steps": 30, "training.eval_frequency": 15, "training.logger.progress_bar": False,
        "training.optimizer.learn_rate.initial_rate": 0.001, "training.batcher.size": 8})
    record = run_training(config, tmp_path / "run")
    trained = time.perf_counter()
    model = tmp_path / "model-best"
    nlp = spacy.load(record.model_best)
    nlp.add_pipe(NAME, after="bioner_tagger")  # a pipeline trained before the component was left out
    nlp.to_disk(model)
    assert NAME in (model / "config.cfg").read_text(encoding="utf8")
    shutil.rmtree(backbone)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    packages = tmp_path / "packages"
    proc = subprocess.run([sys.executable, "-m", "spacy_bioner", "package", str(model), str(packages), "--name",
                           "bioner_ncbi_tiny", "--version", "0.1.0"], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    dist = packages / "en_bioner_ncbi_tiny-0.1.0" / "dist"
    wheels = sorted(p.name for p in dist.glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["en_bioner_ncbi_tiny", "spacy_bioner"]
    assert f"pip install --find-links {dist} en_bioner_ncbi_tiny" in proc.stdout
    (model_wheel,) = dist.glob("en_bioner_ncbi_tiny-*.whl")
    with zipfile.ZipFile(model_wheel) as zf:
        configs = [n for n in zf.namelist() if n.endswith("/config.cfg")]
        assert configs and all(NAME not in zf.read(n).decode("utf8") for n in configs)

    packaged = time.perf_counter()
    venv, pip, env = fresh_venv
    installed = subprocess.run(pip + ["--find-links", str(dist), "en_bioner_ncbi_tiny"], capture_output=True,
                               text=True, env=env, cwd=tmp_path)
    assert installed.returncode == 0, installed.stderr[-3000:]
    code = ("import spacy, spacy_bioner; nlp = spacy.load('en_bioner_ncbi_tiny'); "
            "doc = nlp('BRCA7 mutations cause breast cancer .'); "
            "print(spacy_bioner.__file__); print(','.join(nlp.pipe_names)); "
            "print([(e.text, e.label_) for e in doc.ents])")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    location, pipes, ents = result.stdout.strip().splitlines()[-3:]
    assert location.startswith(str(venv)) and str(PROJECT) not in location  # the installed copy, no checkout
    assert pipes == "transformer,bioner_tagger,doc_cleaner"
    assert "Gene" in ents or "Disease" in ents
    print(f"trained {trained - began:.0f} s, packaged {packaged - trained:.0f} s, "
          f"installed and tagged {time.perf_counter() - packaged:.0f} s")


def _fake_builds(monkeypatch, *, spacy_wheel=True, pip_rc=0, pip_wheel=False):
    """subprocess.run as `spacy package` and `pip wheel` would answer (check=True honoured, as the real one)."""
    real = subprocess.run

    def run(args, *a, check=False, **kw):
        if args[1:4] == ["-m", "spacy", "package"]:
            out, name, version = args[5], args[args.index("--name") + 1], args[args.index("--version") + 1]
            dist = os.path.join(out, f"en_{name}-{version}", "dist")
            os.makedirs(dist, exist_ok=True)
            if spacy_wheel:
                open(os.path.join(dist, f"en_{name}-{version}-py3-none-any.whl"), "wb").close()
            proc = subprocess.CompletedProcess(args, 0, "", "")
        elif args[1:4] == ["-m", "pip", "wheel"]:
            if pip_wheel:
                dest = args[args.index("-w") + 1]
                open(os.path.join(dest, "spacy_bioner-0.2.0-py3-none-any.whl"), "wb").close()
            err = "" if pip_rc == 0 else ("Processing /src\n  error: subprocess-exited-with-error\n"
                                          "ERROR: Failed to build installable wheels for some pyproject.toml "
                                          "based projects (spacy-bioner)\n")
            proc = subprocess.CompletedProcess(args, pip_rc, "", err)
        else:
            return real(args, *a, check=check, **kw)
        if check and proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, args, proc.stdout, proc.stderr)
        return proc

    monkeypatch.setattr(subprocess, "run", run)


@pytest.mark.parametrize("case,expected", [
    (dict(pip_rc=1), "Failed to build installable wheels"),
    (dict(pip_rc=0, pip_wheel=False), "pip wheel (spacy-bioner's own wheel) wrote no wheel spacy_bioner-*.whl"),
    (dict(spacy_wheel=False, pip_wheel=True), "spacy package wrote no wheel en_bioner_x-0.1.0-*.whl"),
])
def test_package_a_failing_build_is_one_line_and_exit_1(tmp_path, monkeypatch, case, expected):
    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    spacy.blank("en").to_disk(tmp_path / "model")
    _fake_builds(monkeypatch, **case)
    result = CliRunner().invoke(app, ["package", str(tmp_path / "model"), str(tmp_path / "packages"),
                                      "--name", "bioner_x"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    output = result.output.strip()
    assert expected in output and "Traceback" not in output and len(output.splitlines()) == 1, output


MIX_RECORD = {"backbone": "tiny-bert", "steps": 40, "epochs": 0.5, "best_step": 40, "wall_seconds": 12.0,
              "peak_rss_mib": 900.0, "dev_scores": {"ents_f": 0.5},
              "config": {"components": {"transformer": {"source": "training/earlier/model-best"},  # --init-from
                                        "bioner_tagger": {"source": "training/earlier/model-best"}}},
              "mix": {"mix": "toy", "types": ["Gene", "Disease"], "temperature": 0.5, "corpora": [
                  {"name": "GeneCorpus", "path": "../shared/corpora/MTL-BC2GM-IOB", "annotates": ["Gene"],
                   "label_map": {"GENE": "Gene"}, "sentences": {"train": 10, "dev": 2, "test": 3}, "probability": 0.4},
                  {"name": "JNLPBA", "path": "../shared/corpora/MTL-JNLPBA", "annotates": ["Gene"],
                   "label_map": {"protein": "Gene", "cell_type": None}, "sentences": {"train": 5}, "probability": 0.6}]}}


def mix_scores(f):
    type_scores = {"strict": {"f": f}, "lenient": {"f": f + 0.05}, "support": 7}
    corpus = {"types": ["Gene"], "strict": {"f": f}, "lenient": {"f": f + 0.05}, "n_gold": 7,
              "bootstrap": {"low": f - 0.1, "high": f + 0.1}, "per_type": {"Gene": type_scores}}
    return {"mix": "toy", "split": "test", "corpora": {"GeneCorpus": corpus}, "macro": {"strict": f, "lenient": f}}


def test_a_mix_trained_pipeline_gets_a_card_with_the_mix_label_maps_and_scores(tmp_path):
    from spacy_bioner.packaging.wheel import read_scores, write_mix_card

    run = tmp_path / "run"
    (run / "model-best").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps(MIX_RECORD), encoding="utf8")
    stage = tmp_path / "stage"
    stage.mkdir()
    (stage / "meta.json").write_text(json.dumps({"labels": {"bioner_tagger": ["Disease", "Gene"]}}), encoding="utf8")
    # how it was trained comes from the packaged pipeline's own config (an --init-from run records `source` blocks)
    (stage / "config.cfg").write_text('[paths]\nbackbone = "org/tiny-bert"\n\n[components]\n\n[components.transformer]\n\n'
                                      '[components.transformer.model]\n'
                                      '@architectures = "spacy_bioner.TransformerModel.v5"\n\n'
                                      '[components.transformer.model.task_prompt]\ntypes = ["Gene","Disease"]\n',
                                      encoding="utf8")
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({**mix_scores(0.8123), "corpora": {"GeneCorpus": {
        **mix_scores(0.8123)["corpora"]["GeneCorpus"], "path": "/home/me/corpora/BC2GM"}}}), encoding="utf8")
    card = write_mix_card(run / "model-best", stage, name="en_bioner_toy_tiny", version="0.1.0",
                          scores=read_scores([scores]))
    assert card["partial_labels"] == "prompt" and card["entity_types"] == ["Disease", "Gene"]
    assert card["backbone"] == "org/tiny-bert"
    readme = (stage / "README.md").read_text(encoding="utf8")
    assert "# en_bioner_toy_tiny 0.1.0" in readme and "corpus mix **toy**" in readme
    assert "protein → Gene, cell_type → dropped" in readme  # the label maps
    assert "| GeneCorpus | Gene | 81.23 | 86.23 | 7 |" in readme  # every score, per corpus and type
    assert "### toy (test splits)" in readme and "/home/me" not in json.dumps(card)  # no local paths shipped
    meta = json.loads((stage / "meta.json").read_text(encoding="utf8"))
    assert meta["bioner"]["mix"]["corpora"][1]["label_map"] == {"protein": "Gene", "cell_type": None}
    assert meta["bioner"]["scores"][0]["macro"]["strict"] == 0.8123
    assert meta["sources"][0]["url"].startswith("https://github.com/cambridgeltl")
    # bad --scores input, and --scores for a pipeline not trained on a mix, are one-line errors
    good = read_scores([scores])
    scores.write_text(json.dumps({"ents_f": 0.5}), encoding="utf8")
    with pytest.raises(ConfigValueError, match="evaluate MODEL MIX.yml"):
        read_scores([scores])
    with pytest.raises(ConfigValueError, match="--scores"):
        read_scores([tmp_path / "missing.json"])
    (run / "run.json").write_text(json.dumps({"steps": 3}), encoding="utf8")
    assert write_mix_card(run / "model-best", stage, name="en_x", version="0.1.0") is None
    with pytest.raises(ConfigValueError, match="not trained on a corpus mix"):
        write_mix_card(run / "model-best", stage, name="en_x", version="0.1.0", scores=good)
