"""``--runtime onnx``: a pipeline's encoders on ONNX Runtime (tiny BERT, RoBERTa and DeBERTa pipelines built here).

Skips without the ``onnx`` extra, except the tests of what happens when it is missing."""
import json
import os
import subprocess
import sys

import numpy
import pytest

from .test_cli_errors import assert_one_line_error, run_cli
from .test_huggingface import TEXTS, make_checkpoint

HAVE_ONNX = all(__import__("importlib").util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAVE_ONNX, reason="needs the onnx extra: pip install 'spacy-bioner[onnx]'")
FAMILIES = ("bert", "roberta", "deberta", "deberta_v3")
#: DeBERTa-v3's disentangled relative attention (the tiny DeBERTa backbone uses absolute positions only).
DEBERTA_V3 = {"relative_attention": True, "pos_att_type": ["p2c", "c2p"], "position_buckets": 8,
              "max_relative_positions": -1, "position_biased_input": False, "share_att_key": True,
              "norm_rel_ebd": "layer_norm", "type_vocab_size": 0}


def deberta_v3_like(base, out):
    """The tiny DeBERTa backbone with DeBERTa-v3's relative attention switched on (new weights random)."""
    import shutil

    shutil.copytree(base, out)
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, **DEBERTA_V3}))
    return out


@pytest.fixture(scope="module")
def pipelines(tiny, tmp_path_factory):
    """Each tiny checkpoint imported as a constrained (Viterbi) pipeline."""
    from spacy_bioner.packaging.huggingface import import_hf

    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for family in FAMILIES:
        base = deberta_v3_like(tiny["deberta"], root / "deberta_v3") if family == "deberta_v3" else tiny[family]
        checkpoint = make_checkpoint(base, root / f"tc_{family}")
        import_hf(str(checkpoint), root / family)
        out[family] = root / family
    return out


def hidden_states(nlp, texts):
    """The transformer's last hidden state at every real (unmasked) subword, for a batch of texts."""
    docs = [nlp.make_doc(t) for t in texts]
    batch = nlp.get_pipe("transformer").predict(docs)
    hidden = batch.model_output.last_hidden_state
    hidden = hidden.detach().numpy() if hasattr(hidden, "detach") else numpy.asarray(hidden)
    mask = numpy.asarray(batch.wordpieces.attention_mask).astype(bool)
    return hidden[mask]


def tag_logits(nlp, texts):
    """The tagger's scores (logits) for every token of a batch of texts, concatenated."""
    docs = list(nlp.get_pipe("transformer").pipe(nlp.make_doc(t) for t in texts))
    return numpy.concatenate([numpy.asarray(s) for s in nlp.get_pipe("bioner_tagger").model.predict(docs)])


@needs_onnx
@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_hidden_states_logits_and_entities_equal_torch(family, pipelines, tmp_path):
    import spacy

    from spacy_bioner.models.inference import speed_up

    torch_nlp, onnx_nlp = spacy.load(pipelines[family]), spacy.load(pipelines[family])
    info = speed_up(onnx_nlp, runtime="onnx")
    assert info["runtime"] == "onnx" and info["length_buckets_set"] == 1, info
    record = info["onnx"]["transformer"]
    assert os.path.exists(record["graph"]) and record["opset"] >= 13
    assert type(onnx_nlp.get_pipe("transformer").model.layers[0].shims[0]._model).__name__ == "OnnxTransformer"
    texts = TEXTS + ["short", "A much longer sentence , " * 6 + "with many words to pad the others ."]
    if family == "deberta_v3":
        config = torch_nlp.get_pipe("transformer").model.layers[0].shims[0]._model.config
        assert config.relative_attention and config.position_buckets < 20  # relative positions are bucketed
    ours, theirs = hidden_states(onnx_nlp, texts), hidden_states(torch_nlp, texts)
    assert ours.shape == theirs.shape and numpy.abs(ours - theirs).max() < 1e-4
    ours, theirs = tag_logits(onnx_nlp, texts), tag_logits(torch_nlp, texts)
    assert ours.shape == theirs.shape and numpy.abs(ours - theirs).max() < 1e-4  # the head's logits too
    for a, b in zip(torch_nlp.pipe(texts), onnx_nlp.pipe(texts)):
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]


@needs_onnx
def test_graph_is_cached_by_weights_checksum(pipelines):
    import spacy
    import torch

    from spacy_bioner.models.onnx_runtime import use_onnx

    path = pipelines["bert"]
    first = use_onnx(spacy.load(path))["onnx"]["transformer"]
    again = use_onnx(spacy.load(path))["onnx"]["transformer"]
    assert again["cached"] and again["graph"] == first["graph"]
    changed = spacy.load(path)  # as if retrained: one weight moves
    module = changed.get_pipe("transformer").model.layers[0].shims[0]._model
    with torch.no_grad():
        next(module.parameters())[0, 0] += 1.0
    fresh = use_onnx(changed)["onnx"]["transformer"]
    assert not fresh["cached"] and fresh["graph"] != first["graph"]
    assert fresh["weights_sha256"] != first["weights_sha256"]


@needs_onnx
def test_int8_quantizes_the_graph_not_the_torch_module(pipelines):
    import spacy

    from spacy_bioner.models.inference import speed_up

    nlp = spacy.load(pipelines["roberta"])
    info = speed_up(nlp, runtime="onnx", int8=True)
    graph = info["onnx"]["transformer"]["graph"]
    assert graph.endswith("-int8.onnx") and info["int8_modules"] == 0
    fp32 = graph.replace("-int8.onnx", "-fp32.onnx")
    assert os.path.getsize(graph) < os.path.getsize(fp32)
    ours, theirs = hidden_states(nlp, TEXTS), hidden_states(spacy.load(pipelines["roberta"]), TEXTS)
    # int8 is not exact, but close: garbage output would be off by the states' own size
    assert numpy.abs(ours - theirs).mean() < 0.1 * numpy.abs(theirs).mean()


@needs_onnx
def test_export_after_torch_length_buckets_is_the_plain_forward(pipelines, tmp_path):
    """A pipeline whose torch module already runs length buckets (an instance forward) exports its plain
    forward: tracing the buckets would bake the example's rows into the graph."""
    import spacy

    from spacy_bioner.models.inference import speed_up
    from spacy_bioner.models.onnx_runtime import use_onnx

    nlp = spacy.load(pipelines["bert"])
    speed_up(nlp, runtime="torch", length_buckets=0.8)
    list(nlp.pipe(TEXTS))
    record = use_onnx(nlp, cache_dir=tmp_path / "cache")["onnx"]["transformer"]
    assert not record["cached"] and record["max_abs_deviation"] < 1e-4
    theirs = hidden_states(spacy.load(pipelines["bert"]), TEXTS)
    assert numpy.abs(hidden_states(nlp, TEXTS) - theirs).max() < 1e-4


@needs_onnx
def test_gpu_without_onnxruntime_gpu_and_no_transformer_are_one_line(pipelines):
    import spacy

    from spacy_bioner.models.onnx_runtime import OnnxUnavailableError, use_onnx

    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(OnnxUnavailableError, match="onnxruntime-gpu"):
            use_onnx(spacy.load(pipelines["bert"]), gpu_id=0)
        assert use_onnx(spacy.load(pipelines["bert"]), runtime="auto", gpu_id=0)["runtime"] == "torch"
    blank = spacy.blank("en")
    blank.add_pipe("sentencizer")
    with pytest.raises(OnnxUnavailableError, match="has none"):
        use_onnx(blank)
    assert use_onnx(blank, runtime="auto")["runtime"] == "torch"


@needs_onnx
def test_a_switched_pipeline_cannot_be_saved(pipelines, tmp_path):
    import spacy

    from spacy_bioner.models.onnx_runtime import use_onnx

    nlp = spacy.load(pipelines["bert"])
    use_onnx(nlp)
    with pytest.raises(RuntimeError, match="inference only"):
        nlp.to_disk(tmp_path / "saved")


@needs_onnx
def test_decoder_tagger_is_one_line_and_auto_leaves_it_on_torch(tiny, tmp_path):
    import spacy

    from spacy_bioner.models.onnx_runtime import use_onnx
    from spacy_bioner.packaging.huggingface import import_hf

    import_hf(str(make_checkpoint(tiny["gpt2"], tmp_path / "tc_gpt2")), tmp_path / "p")
    (tmp_path / "gold.tsv").write_text("BRCA1\tB-Gene\ncauses\tO\ncancer\tB-Disease\n", encoding="utf8")
    proc = run_cli(["evaluate", tmp_path / "p", tmp_path / "gold.tsv", "--runtime", "onnx"], tmp_path)
    assert_one_line_error(proc, "bioner_tagger", "decoder tagger", "--runtime auto")
    nlp = spacy.load(tmp_path / "p")
    info = use_onnx(nlp, runtime="auto")
    assert info["runtime"] == "torch" and info["torch_components"] == ["bioner_tagger"]
    assert [len(doc) for doc in nlp.pipe(TEXTS)]  # still tags, on torch


def test_missing_onnxruntime_is_one_line_naming_the_extra(pipelines, tmp_path):
    """Also where ONNX Runtime is installed: a stub that fails to import stands in for it."""
    stub = tmp_path / "stub"
    (stub / "onnxruntime").mkdir(parents=True)
    (stub / "onnxruntime" / "__init__.py").write_text("raise ImportError('no onnxruntime here')\n")
    (tmp_path / "gold.tsv").write_text("BRCA1\tB-Gene\ncauses\tO\ncancer\tB-Disease\n", encoding="utf8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(stub), os.environ.get("PYTHONPATH", "")]),
           "HF_HUB_OFFLINE": "1", "PYTHONIOENCODING": "utf-8"}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "spacy_bioner", *map(str, args)], capture_output=True,
                              text=True, cwd=tmp_path, env=env, timeout=300)

    proc = cli("evaluate", pipelines["bert"], tmp_path / "gold.tsv", "--runtime", "onnx")
    assert_one_line_error(proc, "spacy-bioner[onnx]")
    proc = cli("evaluate", pipelines["bert"], tmp_path / "gold.tsv", "--runtime", "auto",
               "--output", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "m.json").read_text())["inference"]["runtime"] == "torch"


def test_unknown_runtime_is_one_line(pipelines, tmp_path):
    (tmp_path / "in.jsonl").write_text('{"id": "1", "text": "BRCA1 causes cancer."}\n', encoding="utf8")
    proc = run_cli(["annotate", pipelines["bert"], tmp_path / "in.jsonl", tmp_path / "out.jsonl",
                    "--runtime", "tensorrt"], tmp_path)
    assert_one_line_error(proc, "--runtime tensorrt", "torch, onnx, auto")


@needs_onnx
def test_annotate_on_onnx_resumes_as_on_torch(pipelines, tmp_path):
    """A killed ONNX job resumed with --resume ends with the records, ids and entities of one torch run."""
    records = [{"id": f"d{i}", "text": TEXTS[i % len(TEXTS)] + f" Case {i} ."} for i in range(12)]
    whole = tmp_path / "in.jsonl"
    whole.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    part = tmp_path / "part.jsonl"
    part.write_text("".join(json.dumps(r) + "\n" for r in records[:5]), encoding="utf8")
    import shutil

    model = shutil.copytree(pipelines["deberta"], tmp_path / "model", ignore=shutil.ignore_patterns("onnx"))
    assert run_cli(["annotate", model, whole, tmp_path / "torch.jsonl"], tmp_path).returncode == 0
    assert not (model / "onnx").exists()
    onnx_out = tmp_path / "onnx.jsonl"
    # the "killed" job: only the first records reached OUTPUT
    proc = run_cli(["annotate", model, part, onnx_out, "--runtime", "onnx", "--batch-size", "2"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    graphs = sorted((model / "onnx").glob("*-fp32.onnx"))
    assert graphs  # the ONNX runtime ran (its graph is cached beside the pipeline)
    proc = run_cli(["annotate", model, whole, onnx_out, "--runtime", "onnx", "--resume", "--n-process", "2"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted((model / "onnx").glob("*-fp32.onnx")) == graphs  # the workers reused it

    def read(path):
        rows = [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]
        return [(r["id"], [(e["start"], e["end"], e["label"]) for e in r["entities"]]) for r in rows]

    assert read(onnx_out) == read(tmp_path / "torch.jsonl")
    assert len(read(onnx_out)) == 12


@needs_onnx
def test_ray_actors_run_the_onnx_runtime(pipelines, tmp_path):
    """``annotate --backend ray --runtime onnx``: the actors annotate on ONNX Runtime, as one torch process does."""
    ray = pytest.importorskip("ray", reason="the ray backend is an optional extra: pip install 'spacy-bioner[ray]'")
    pytest.importorskip("ray.data")
    import shutil

    from spacy_bioner.annotate.job import annotate

    records = [{"id": f"d{i}", "text": TEXTS[i % len(TEXTS)] + f" Case {i} ."} for i in range(9)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf8")
    model = shutil.copytree(pipelines["bert"], tmp_path / "model", ignore=shutil.ignore_patterns("onnx"))
    annotate(model, src, tmp_path / "torch.jsonl", progress=False)
    assert not (model / "onnx").exists()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        annotate(model, src, tmp_path / "ray.jsonl", backend="ray", runtime="onnx", shard_size=4, progress=False)
    finally:
        ray.shutdown()
    assert sorted((model / "onnx").glob("*-fp32.onnx"))  # the actors built (and shared) the graph

    def read(path):
        rows = [json.loads(line) for line in path.read_text(encoding="utf8").splitlines()]
        return sorted((r["id"], [(e["start"], e["end"], e["label"]) for e in r["entities"]]) for r in rows)

    assert read(tmp_path / "ray.jsonl") == read(tmp_path / "torch.jsonl") and len(read(tmp_path / "ray.jsonl")) == 9
