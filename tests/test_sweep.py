"""Sweeps: grid expansion, a 2 × 2 grid end to end, failed and diverged runs, resume
after a kill, the Ray backend, the report, and the best run as a wheel that
installs into a fresh venv."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import srsly

from spacy_bioner.errors import ConfigValueError
from spacy_bioner.experiments.runs import classify
from spacy_bioner.experiments.sweep import SweepResults, load_grid, run_sweep
from spacy_bioner.experiments.sweep_report import best_run, markdown, summarise_cells, write_report

from .conftest import PROJECT

ROWS = "BRCA{i}\tB-Gene\nmutations\tO\ncause\tO\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO\n"
#: A small, fast tok2vec pipeline: learns the toy corpus in 30 steps at lr 0.005, nothing at lr 0.
FIXED = {
    "training.max_steps": 30, "training.eval_frequency": 10, "training.logger.progress_bar": False,
    "components.tok2vec.model.encode.width": 32, "components.tok2vec.model.encode.depth": 1,
    "training.batcher": {"@batchers": "spacy_bioner.batch_by_sentences.v1", "size": 8},
}


@pytest.fixture
def toy(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("\n".join(ROWS.format(i=i) for i in range(22)) + "\n", encoding="utf8")
    return path


def write_grid(tmp_path, toy, **extra):
    grid = {"corpus": {"train": str(toy), "dev": str(toy), "test": str(toy), "name": "toy"}, "base": "tok2vec",
            "overrides": dict(FIXED), "seeds": [0], **extra}
    path = tmp_path / "grid.yml"
    srsly.write_yaml(path, grid)
    return path


def lines(output_dir):
    return [json.loads(line) for line in (output_dir / "sweep.jsonl").read_text(encoding="utf8").splitlines()]


def test_grid_expands_per_model_and_seed_with_stable_ids(tmp_path, toy):
    path = write_grid(tmp_path, toy, seeds=[0, 1], grid={"training.batcher.size": [4, 8]},
                      models={"a": {"grid": {"training.optimizer.learn_rate": [0.001, 0.01, 0.1]}},
                              "b": {"overrides": {"training.dropout": 0.2}}})
    grid = load_grid(path)
    assert [len([r for r in grid.runs if r.model == m]) for m in ("a", "b")] == [3 * 2 * 2, 2 * 2]
    assert [r.run_id for r in grid.runs] == [r.run_id for r in load_grid(path).runs]  # the same on every start
    assert len({r.run_id for r in grid.runs}) == len(grid.runs)
    b = next(r for r in grid.runs if r.model == "b")
    assert b.settings()["overrides"]["training.dropout"] == 0.2 and b.params["system.seed"] in (0, 1)
    # changing a fixed setting gives new ids: a finished run is never reused for other settings
    srsly.write_yaml(path, {**srsly.read_yaml(path), "overrides": {**FIXED, "training.max_steps": 31}})
    assert not {r.run_id for r in grid.runs} & {r.run_id for r in load_grid(path).runs}


@pytest.mark.parametrize("change,match", [
    ({"grdi": {}}, "unknown key"),
    ({"grid": {"training.dropout": []}}, "empty list"),
    ({"grid": {"system.seed": [1, 2]}}, "seeds"),
    ({"grid": {"training.dropout": [0.1, 0.1]}}, "same run twice"),
    ({"models": {"x": {"backbon": "minilm"}}}, "unknown key"),
])
def test_bad_grid_files_are_one_line_errors(tmp_path, toy, change, match):
    with pytest.raises(ConfigValueError, match=match):
        load_grid(write_grid(tmp_path, toy, **change))


def test_missing_corpus_is_named(tmp_path, toy):
    path = write_grid(tmp_path, toy)
    srsly.write_yaml(path, {**srsly.read_yaml(path), "corpus": {"train": str(tmp_path / "nope.tsv"), "dev": str(toy)}})
    with pytest.raises(FileNotFoundError, match="corpus.train"):
        load_grid(path)


def test_classify_diverged():
    assert classify({"dev_f": 0.8}, diverged_f1=0.0) == "ok"
    assert classify({"dev_f": 0.0}, diverged_f1=0.0) == "diverged"
    assert classify({"dev_f": float("nan")}, diverged_f1=0.0) == "diverged"
    assert classify({"dev_f": 0.8, "nonfinite_loss_step": 3}, diverged_f1=0.0) == "diverged"
    assert classify({"dev_f": 0.05}, diverged_f1=0.1) == "diverged"


def test_two_by_two_grid_with_a_failed_and_a_diverged_run(tmp_path, toy):
    """lr {0, 0.005} × batch {4, 8}: lr 0 learns nothing (diverged), plus a model whose config is broken."""
    path = write_grid(tmp_path, toy, grid={"training.optimizer.learn_rate": [0.0, 0.005],
                                           "training.batcher.size": [4, 8]},
                      models={"toy": {}, "broken": {"grid": {"training.optimizer.learn_rate": [0.005],
                                                             "training.batcher.size": [4],
                                                             "training.dropout": ["lots"]}}})
    out = tmp_path / "sweep"
    records = run_sweep(path, out, progress=False)
    by_status = {s: [r for r in records if r["status"] == s] for s in ("ok", "failed", "diverged")}
    assert len(records) == 5 and len(lines(out)) == 5
    assert {r["learn_rate"] for r in by_status["ok"]} == {0.005} and len(by_status["ok"]) == 2
    assert all(r["dev_f"] > 0.5 and r["test_f"] is not None and r["steps"] == 31 for r in by_status["ok"])
    assert all(r["peak_rss_mib"] > 50 and r["wall_seconds"] > 0 and r["train_words_per_second"] > 0
               for r in by_status["ok"])
    assert len(by_status["diverged"]) == 2 and all(r["learn_rate"] == 0.0 for r in by_status["diverged"])
    (failed,) = by_status["failed"]
    assert failed["model"] == "broken" and "dropout" in failed["error"] and "\n" not in failed["error"]
    csv_rows = (out / "sweep.csv").read_text(encoding="utf8").splitlines()
    assert len(csv_rows) == 6 and csv_rows[0].startswith("run_id,status")
    # a second start has nothing left to do and changes nothing
    again = run_sweep(path, out, progress=False)
    assert [r["run_id"] for r in again] == [r["run_id"] for r in records] and len(lines(out)) == 5
    written = write_report(out)
    report = written["report"].read_text(encoding="utf8")
    assert best_run(records)["run_id"] in report and "Failed runs" in report and "Diverged runs" in report
    assert (out / "plots" / "prf_vs_lr_toy.png").stat().st_size > 1000
    assert (out / "plots" / "memory_vs_time.png").exists()


def test_killed_sweep_resumes_without_redoing_a_finished_run(tmp_path, toy):
    path = write_grid(tmp_path, toy, grid={"training.optimizer.learn_rate": [0.005], "training.batcher.size": [4, 8]},
                      seeds=[0, 1])
    out = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "spacy_bioner", "sweep", str(path), str(out)]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "sweep.jsonl").exists() and lines(out)):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)  # no clean-up at all: the second run is in the middle of training
    proc.wait()
    first = lines(out)
    assert len(first) == 1, "the sweep finished before it could be killed"
    deadline = time.time() + 15  # the orphaned run ends with its sweep
    while _running(str(out / "runs")) and time.time() < deadline:
        time.sleep(0.2)
    assert not _running(str(out / "runs")), "a killed sweep left its run training"
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    final = lines(out)
    ids = [r["run_id"] for r in final]
    assert len(final) == 4 and len(set(ids)) == 4
    assert final[0] == first[0]  # the finished run was kept as it was, not run again
    assert all(r["status"] == "ok" for r in final)


def _running(fragment: str) -> bool:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if fragment in (proc / "cmdline").read_bytes().decode("utf8", "replace"):
                    return True
            except OSError:
                continue
    return False


def test_ray_backend_runs_the_same_grid(tmp_path, toy):
    pytest.importorskip("ray.tune", reason="Ray is an optional extra: pip install 'spacy-bioner[ray]'")
    path = write_grid(tmp_path, toy, grid={"training.optimizer.learn_rate": [0.0, 0.005]})
    out = tmp_path / "sweep"
    records = run_sweep(path, out, backend="ray", cpus_per_trial=1, progress=False)
    assert sorted(r["status"] for r in records) == ["diverged", "ok"] and len(lines(out)) == 2
    assert run_sweep(path, out, backend="local", progress=False) == records  # resumes through the same file


def test_ray_backend_without_ray_says_how_to_install(tmp_path, toy, monkeypatch):
    from spacy_bioner.experiments import ray_sweep

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ModuleNotFoundError, match=r"spacy-bioner\[ray\]"):
        ray_sweep.require_ray()


def test_results_file_drops_a_line_cut_by_a_kill(tmp_path):
    results = SweepResults(tmp_path)
    results.append({"run_id": "a", "status": "ok", "dev_f": 0.5})
    with results.path.open("a", encoding="utf8") as f:
        f.write('{"run_id": "b", "stat')
    assert list(results.load()) == ["a"]
    results.append({"run_id": "c", "status": "failed", "error": "x"})
    assert list(results.load()) == ["a", "c"]


def test_report_uses_dev_for_selection_and_seeds_for_spread():
    def rec(run_id, seed, lr, dev_f, test_f, status="ok"):
        return {"run_id": run_id, "status": status, "model": "m", "seed": seed, "learn_rate": lr, "batch_size": 8,
                "params": {"training.optimizer.learn_rate": lr, "system.seed": seed}, "dev_p": dev_f, "dev_r": dev_f,
                "dev_f": dev_f, "test_f": test_f, "wall_seconds": 10.0, "peak_rss_mib": 100.0}

    records = [rec("a0", 0, 1e-4, 0.80, 0.50), rec("a1", 1, 1e-4, 0.70, 0.50),
               rec("b0", 0, 1e-3, 0.75, 0.99), rec("b1", 1, 1e-3, 0.0, 0.0, "diverged")]
    assert best_run(records)["run_id"] == "a0"  # b0 has the best test F1, but test never selects
    cells = {c["learn_rate"]: c for c in summarise_cells(records)}
    assert cells[1e-4]["dev_f"] == pytest.approx(0.75) and cells[1e-4]["dev_f_std"] == pytest.approx(0.0707, abs=1e-3)
    assert cells[1e-3]["statuses"] == {"ok": 1, "diverged": 1, "failed": 0}
    text = markdown(records)
    assert "**a0**" in text and "75.00 ± 7.07" in text


@pytest.mark.slow
def test_best_run_wheel_installs_in_a_fresh_venv_and_tags(tmp_path, tiny, fresh_venv):
    """A tiny transformer + bioner_tagger (needs spacy-bioner's code) → wheel → fresh venv → spacy.load."""
    from spacy_bioner.experiments.package_best import package_best

    toy = tmp_path / "train.tsv"
    toy.write_text("\n".join(ROWS.format(i=i) for i in range(22)) + "\n", encoding="utf8")
    grid = {"corpus": {"train": str(toy), "dev": str(toy), "test": str(toy), "name": "MTL-NCBI-disease-IOB"},
            "base": "transformer", "head": "tagger", "seeds": [0],
            "overrides": {"paths.backbone": str(tiny["bert"]), "training.max_steps": 30,
                          "training.eval_frequency": 15, "training.logger.progress_bar": False,
                          "training.optimizer.learn_rate.initial_rate": 0.001, "training.batcher.size": 8},
            "models": {"tinybert": {}}}
    srsly.write_yaml(tmp_path / "grid.yml", grid)
    records = run_sweep(tmp_path / "grid.yml", tmp_path / "sweep", progress=False)
    assert records[0]["status"] == "ok", records[0].get("error") or records[0]
    packages = tmp_path / "packages"
    out = package_best(tmp_path / "sweep", packages, n_bootstrap=100)
    assert out["package"] == "en_bioner_ncbi_disease_tinybert" and out["spacy_bioner_wheel"] is not None
    meta = json.loads((packages / "en_bioner_ncbi_disease_tinybert-0.1.0" / "meta.json").read_text())
    card = meta["bioner"]
    assert any(r.startswith("spacy-bioner") for r in meta["requirements"])
    assert card["corpus_license"].startswith("CC BY 4.0") and set(card["entity_types"]) == {"Disease", "Gene"}
    assert set(card["test"]["per_type"]) == {"Disease", "Gene"} and card["test"]["per_type"]["Gene"]["f_low"] is not None
    assert card["training"]["hardware"]["cpus"] and card["hyperparameters"]["learn_rate"] == 0.001
    venv, pip, env = fresh_venv
    subprocess.run(pip + ["--find-links", str(packages), str(out["wheel"])], check=True, env=env, cwd=tmp_path)
    code = ("import spacy, spacy_bioner; nlp = spacy.load('en_bioner_ncbi_disease_tinybert'); "
            "doc = nlp('BRCA7 mutations cause breast cancer .'); "
            "print(spacy_bioner.__file__); print([(e.text, e.label_) for e in doc.ents])")
    result = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, env=env,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    location, ents = result.stdout.strip().splitlines()[-2:]
    assert location.startswith(str(venv)) and str(PROJECT) not in location  # the installed copy, no checkout
    assert "Gene" in ents or "Disease" in ents


def test_a_worker_whose_sweep_died_before_it_started_ends_at_once():
    """The sweep can be killed between forking a run and the run setting up its watch: the worker is
    then already an orphan, and must compare with the sweep's pid from its spec, not its parent now."""
    code = ("import time; from spacy_bioner.experiments.runs import _watch_parent; "
            "_watch_parent(1); time.sleep(10); print('alive')")  # pid 1 is not this worker's parent
    began = time.time()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 137 and "alive" not in proc.stdout and time.time() - began < 10
