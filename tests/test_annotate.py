"""``spacy-bioner annotate``: formats, exact offsets, bad records, resume after a kill, workers."""
import gzip
import json
import subprocess
import sys

import pytest
import spacy

from spacy_bioner.annotate.formats import read_records
from spacy_bioner.annotate.job import annotate
from spacy_bioner.types import BadRecord, Record

TEXTS = {
    "d1": "BRCA1 mutations cause hereditary breast cancer.",
    "d2": "Tabs\tand  double  spaces: breast  cancer? No, breast cancer and BRCA1.\r\nCRLF line: tumeur é ü BRCA1",
    "d3": "Ünïcödé ✓ text → BRCA1 in Straße; breast cancer (non-small cell).",
    "d4": "Nothing to see here.",
}


@pytest.fixture(scope="module")
def ruler(tmp_path_factory):
    """A real, tiny pipeline (entity ruler): exact, fast, and it sets doc.ents like a trained one."""
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([
        {"label": "Disease", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}]},
        {"label": "Gene", "pattern": "BRCA1"}, {"label": "Disease", "pattern": "tumeur"}])
    path = tmp_path_factory.mktemp("ruler") / "model"
    nlp.to_disk(path)
    return path


def expected(text):
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([
        {"label": "Disease", "pattern": [{"LOWER": "breast"}, {"LOWER": "cancer"}]},
        {"label": "Gene", "pattern": "BRCA1"}, {"label": "Disease", "pattern": "tumeur"}])
    return [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]


def write_jsonl(path, records, *, gz=False):
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf8")
    (gzip.open if gz else open)(path, "wb").write(data)
    return path


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf8").splitlines() if line.strip()]


@pytest.mark.parametrize("gz", [False, True])
def test_jsonl_offsets_index_the_original_text(ruler, tmp_path, gz):
    src = write_jsonl(tmp_path / ("in.jsonl.gz" if gz else "in.jsonl"),
                      [{"pmid": k, "body": v} for k, v in TEXTS.items()], gz=gz)
    stats = annotate(ruler, src, tmp_path / "out.jsonl", id_field="pmid", text_field="body", progress=False)
    out = {r["id"]: r for r in read_jsonl(tmp_path / "out.jsonl")}
    assert list(out) == list(TEXTS) and stats.documents == 4 and stats.errors == 0
    for doc_id, text in TEXTS.items():
        ents = out[doc_id]["entities"]
        assert [(e["start"], e["end"], e["label"]) for e in ents] == expected(text)
        assert all(text[e["start"]:e["end"]] == e["text"] for e in ents)
    assert len(out["d2"]["entities"]) == 4  # "breast  cancer" (two spaces) is not the pattern; CRLF kept
    assert stats.entities == sum(len(r["entities"]) for r in out.values())


def test_text_folder_one_document_per_file(ruler, tmp_path):
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    for k, v in TEXTS.items():
        (folder / ("sub" if k == "d3" else "") / f"{k}.txt").write_bytes(v.encode("utf8"))
    annotate(ruler, folder, tmp_path / "out.jsonl", progress=False)
    out = {r["id"]: r for r in read_jsonl(tmp_path / "out.jsonl")}
    assert set(out) == {"d1", "d2", "d4", "sub/d3"}
    assert [(e["start"], e["end"], e["label"]) for e in out["d2"]["entities"]] == expected(TEXTS["d2"])


PUBTATOR = ("111|t|BRCA1 and breast cancer\n111|a|Second passage: breast cancer in tumeur é.\n"
            "111\t0\t5\tBRCA1\tGene\t672\n\n"
            "222|t|No entities.\n222|a|None at all here\n\n")


def test_pubtator_round_trip_keeps_passages_and_document_offsets(ruler, tmp_path):
    src = tmp_path / "in.pubtator"
    src.write_text(PUBTATOR, encoding="utf8")
    annotate(ruler, src, tmp_path / "out.pubtator", output_format="pubtator", progress=False)
    again = list(read_records(tmp_path / "out.pubtator"))
    original = list(read_records(src))
    assert [(r.id, [(p.offset, p.text) for p in r.passages]) for r in again] == \
           [(r.id, [(p.offset, p.text) for p in r.passages]) for r in original]
    doc = " ".join(p.text for p in original[0].passages)  # PubTator's document: title + " " + abstract
    lines = [line.split("\t") for line in (tmp_path / "out.pubtator").read_text().splitlines() if "\t" in line]
    assert [(int(s), int(e), label) for _, s, e, _, label, _ in lines] == expected(doc)
    assert all(doc[int(s):int(e)] == text for _, s, e, text, _, _ in lines)


BIOC = """<?xml version='1.0' encoding='UTF-8'?>
<collection><source>test</source><date/><key/>
<document><id>PMC1</id>
<passage><infon key="type">title</infon><offset>0</offset><text>BRCA1 &amp; breast cancer</text></passage>
<passage><infon key="type">abstract</infon><offset>100</offset><text>In tumeur cells, breast cancer.</text></passage>
</document>
<document><id>PMC2</id><passage><offset>0</offset><text>Nothing.</text></passage></document>
</collection>
"""


def test_bioc_round_trip_keeps_passages_infons_and_offsets(ruler, tmp_path):
    src = tmp_path / "in.xml"
    src.write_text(BIOC, encoding="utf8")
    annotate(ruler, src, tmp_path / "out.xml", output_format="bioc", progress=False)
    from xml.etree import ElementTree

    root = ElementTree.parse(tmp_path / "out.xml").getroot()
    docs = root.findall("document")
    assert [d.findtext("id") for d in docs] == ["PMC1", "PMC2"]
    passages = docs[0].findall("passage")
    assert [(int(p.findtext("offset")), p.findtext("text"), p.find("infon").text) for p in passages] == [
        (0, "BRCA1 & breast cancer", "title"), (100, "In tumeur cells, breast cancer.", "abstract")]
    for p in passages:
        offset, text = int(p.findtext("offset")), p.findtext("text")
        found = [(int(a.find("location").get("offset")) - offset, a.find("infon").text) for a in p.findall("annotation")]
        assert found == [(s, label) for s, _, label in expected(text)]
        for a in p.findall("annotation"):
            start = int(a.find("location").get("offset")) - offset
            assert text[start:start + int(a.find("location").get("length"))] == a.findtext("text")
    again = list(read_records(tmp_path / "out.xml"))
    assert [(r.id, [(p.offset, p.text) for p in r.passages]) for r in again] == \
           [(r.id, [(p.offset, p.text) for p in r.passages]) for r in read_records(src)]


def test_bioc_keeps_carriage_returns(ruler, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "x", "text": "a\r\nBRCA1"}])
    annotate(ruler, src, tmp_path / "out.xml", output_format="bioc", progress=False)
    [record] = list(read_records(tmp_path / "out.xml"))
    assert record.passages[0].text == "a\r\nBRCA1"


def test_bad_records_go_to_the_error_file_and_the_job_goes_on(ruler, tmp_path):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": "ok1", "text": "BRCA1"}).encode(), b"{not json", b"[1, 2]",
             json.dumps({"id": "notext"}).encode(), json.dumps({"id": "num", "text": 7}).encode(),
             json.dumps({"id": "empty", "text": "  \n "}).encode(), b'{"id": "latin1", "text": "caf\xe9"}',
             json.dumps({"id": "huge", "text": "a " * 500_001}).encode(),
             json.dumps({"id": "ok2", "text": "breast cancer"}).encode()]
    src.write_bytes(b"\n".join(lines) + b"\n")
    stats = annotate(ruler, src, tmp_path / "out.jsonl", progress=False)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["ok1", "ok2"]
    errors = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert [(e["source"], e["id"]) for e in errors] == [
        ("in.jsonl:2", None), ("in.jsonl:3", None), ("in.jsonl:4", "notext"), ("in.jsonl:5", "num"),
        ("in.jsonl:6", "empty"), ("in.jsonl:7", None), ("in.jsonl:8", "huge")]
    reasons = " | ".join(e["error"] for e in errors)
    for why in ("invalid JSON", "not an object", "no 'text' field", "not a string", "empty text", "invalid UTF-8",
                "over the limit of 1,000,000"):
        assert why in reasons
    assert stats.errors == 7 and stats.documents == 2


@pytest.mark.parametrize("buffer_size", [None, 1], ids=["in-a-buffer", "alone"])
def test_a_record_the_pipeline_fails_on_is_isolated(ruler, tmp_path, buffer_size):
    """In a buffer with others, or alone in its buffer: the record goes to the error file, the rest on."""
    nlp = spacy.load(ruler)
    name = f"explode_on_boom_{buffer_size}"

    @spacy.Language.component(name)
    def explode(doc):
        if "BOOM" in doc.text:
            raise RuntimeError("boom\nsecond line")
        return doc

    nlp.add_pipe(name)
    nlp.to_disk(tmp_path / "model")
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}, {"id": "b", "text": "BOOM"},
                                              {"id": "c", "text": "breast cancer"}])
    # the worker and this process both need the component: it is registered above, in this process
    sizes = {} if buffer_size is None else {"buffer_size": buffer_size}
    stats = annotate(tmp_path / "model", src, tmp_path / "out.jsonl", progress=False, **sizes)
    assert [r["id"] for r in read_jsonl(tmp_path / "out.jsonl")] == ["a", "c"]
    [err] = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert err["id"] == "b" and "RuntimeError: boom" in err["error"] and "\n" not in err["error"]
    assert stats.errors == 1


@pytest.mark.parametrize("fmt", ["jsonl", "pubtator", "bioc"])
def test_resume_after_a_kill_no_duplicate_no_gap(ruler, tmp_path, fmt):
    records = [{"id": f"doc{i}", "text": f"Case {i}: BRCA1 and breast cancer." if i % 3 else ""} for i in range(40)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / f"out.{fmt}"
    full = tmp_path / f"full.{fmt}"
    annotate(ruler, src, full, output_format=fmt, buffer_size=7, progress=False)

    class Killed(Exception):
        pass

    def kill_after_two(stats):
        if stats.documents + stats.errors >= 14:
            raise Killed

    with pytest.raises(Killed):
        annotate(ruler, src, out, output_format=fmt, buffer_size=7, progress=False, on_buffer=kill_after_two)
    with open(out, "a", encoding="utf8") as f:  # a record cut off half-way by the kill
        f.write({"jsonl": '{"id": "doc14", "entit', "pubtator": "doc14|t|Case 14",
                 "bioc": "<document><id>doc14</id>\n<passage>"}[fmt])
    with open(tmp_path / f"out.{fmt}.errors.jsonl", "a") as f:
        f.write('{"source": "in.jsonl:16", "id"')
    with pytest.raises(FileExistsError, match="--resume"):
        annotate(ruler, src, out, output_format=fmt, buffer_size=7, progress=False)
    stats = annotate(ruler, src, out, output_format=fmt, buffer_size=7, resume=True, progress=False)
    assert stats.skipped == 14
    assert out.read_text(encoding="utf8") == full.read_text(encoding="utf8")
    assert (tmp_path / f"out.{fmt}.errors.jsonl").read_text() == (tmp_path / f"full.{fmt}.errors.jsonl").read_text()
    again = annotate(ruler, src, out, output_format=fmt, resume=True, progress=False)  # nothing left to do
    assert again.documents == 0 and again.skipped == 40


def test_workers_give_the_same_output(ruler, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "text": t} for i, t in enumerate(list(TEXTS.values()) * 5)])
    annotate(ruler, src, tmp_path / "one.jsonl", buffer_size=3, progress=False)
    annotate(ruler, src, tmp_path / "two.jsonl", buffer_size=3, n_process=2, progress=False)
    assert (tmp_path / "one.jsonl").read_text() == (tmp_path / "two.jsonl").read_text()


def test_readers_yield_bad_records_without_stopping(tmp_path):
    bad = tmp_path / "bad.xml"
    bad.write_text("<collection><document><id>A</id><passage><offset>0</offset><text>x</text></passage></document>"
                   "<document><id>B</id><passage><offset>zero</offset><text>y</text></passage></document>"
                   "<document><passage><offset>0</offset><text>z</text></passage></document><oops></collection>")
    got = list(read_records(bad))
    assert isinstance(got[0], Record) and got[0].id == "A"
    assert [type(r) for r in got[1:]] == [BadRecord, BadRecord, BadRecord]
    assert "not a number" in got[1].error and "without an <id>" in got[2].error and "invalid XML" in got[3].error
    pubtator = tmp_path / "bad.pubtator"
    pubtator.write_text("1|t|Title\n2|a|Other id in the same block\n\n3|t|Fine\n\n", encoding="utf8")
    got = list(read_records(pubtator))
    assert isinstance(got[0], BadRecord) and "blank line" in got[0].error and got[1].id == "3"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "spacy_bioner", "annotate", *map(str, args)],
                          capture_output=True, text=True)


def test_cli_one_line_errors(ruler, tmp_path):
    res = run_cli(ruler, tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
    assert res.returncode == 1 and "no such file or folder" in res.stderr and "Traceback" not in res.stderr
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}])
    res = run_cli(tmp_path / "nomodel", src, tmp_path / "out.jsonl")
    assert res.returncode == 1 and "no such pipeline" in res.stderr and "Traceback" not in res.stderr
    res = run_cli(ruler, src, tmp_path / "out.jsonl", "--output-format", "csv")
    assert res.returncode == 1 and "--output-format csv" in res.stderr
    res = run_cli(ruler, src, tmp_path / "out.jsonl")
    assert res.returncode == 0 and "1 documents annotated" in res.stdout
    res = run_cli(ruler, src, tmp_path / "out.jsonl")
    assert res.returncode == 1 and "--resume" in res.stderr


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray for the module's Ray tests (annotate uses it rather than starting its own)."""
    ray = pytest.importorskip("ray", reason="the ray backend is an optional extra: pip install 'spacy-bioner[ray]'")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_backend_matches_local_and_resumes_by_shard(ruler, tmp_path, local_ray):
    from spacy_bioner.annotate.job import RSS_ACTORS, RSS_DRIVER

    records = [{"id": f"doc{i}", "text": f"Case {i}: BRCA1 and breast cancer." if i % 4 else ""} for i in range(10)]
    src = write_jsonl(tmp_path / "in.jsonl", records + [{"id": "x"}])
    annotate(ruler, src, tmp_path / "local.jsonl", progress=False)
    out = tmp_path / "ray.jsonl"
    stats = annotate(ruler, src, out, backend="ray", shard_size=3, progress=False)
    assert out.read_text() == (tmp_path / "local.jsonl").read_text()
    assert sorted(read_jsonl(tmp_path / "ray.jsonl.errors.jsonl"), key=lambda e: e["source"]) == \
        sorted(read_jsonl(tmp_path / "local.jsonl.errors.jsonl"), key=lambda e: e["source"])
    assert stats.documents == 7 and stats.errors == 4
    assert stats.peak_rss_of == RSS_ACTORS and stats.peak_rss_mib > 0  # the actors', not the driver's
    shards = tmp_path / "ray.jsonl.shards"
    assert len(list(shards.glob("output-*.jsonl"))) == 4
    (shards / "output-00002.jsonl").unlink()  # a shard the killed job never finished
    out.unlink()
    before = (shards / "output-00000.jsonl").stat().st_mtime_ns
    annotate(ruler, src, out, backend="ray", shard_size=3, resume=True, progress=False)
    assert out.read_text() == (tmp_path / "local.jsonl").read_text()
    assert (shards / "output-00000.jsonl").stat().st_mtime_ns == before  # finished shards are not redone
    out.unlink()
    stats = annotate(ruler, src, out, backend="ray", shard_size=3, resume=True, progress=False)  # no actor runs
    assert stats.peak_rss_of == RSS_DRIVER and out.read_text() == (tmp_path / "local.jsonl").read_text()


def test_ray_backend_a_pipeline_that_cannot_load_is_one_error(tmp_path, local_ray):
    from spacy_bioner.errors import ModelLoadError

    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}])
    with pytest.raises(ModelLoadError, match="no such pipeline") as info:
        annotate(tmp_path / "missing-model", src, tmp_path / "out.jsonl", backend="ray", progress=False)
    assert "\n" not in str(info.value)


def test_ray_failures_become_one_line_errors():
    from spacy_bioner.annotate.ray_backend import ray_failure
    from spacy_bioner.annotate.worker import JobFailure

    class RayTaskError(Exception):  # as Ray wraps what an actor raised: the cause in .cause
        def __init__(self, cause):
            super().__init__("ray::MapWorker(ShardAnnotator)\nTraceback ...")
            self.cause = cause

    err = ray_failure(RayTaskError(JobFailure("out of memory while annotating 3 record(s)")))
    assert type(err) is JobFailure and str(err) == "out of memory while annotating 3 record(s)"
    err = ray_failure(RayTaskError(KeyError("x")))
    assert type(err) is JobFailure and "KeyError" in str(err) and "--resume" in str(err)


def test_ray_backend_without_ray_says_how_to_install(ruler, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}])
    with pytest.raises(ImportError, match=r"pip install \"spacy-bioner\[ray\]\""):
        annotate(ruler, src, tmp_path / "out.jsonl", backend="ray", progress=False)


def test_workers_that_cannot_load_the_pipeline_fail_with_one_error(tmp_path):
    from spacy_bioner.errors import ModelLoadError

    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}])
    with pytest.raises(ModelLoadError, match="no such pipeline"):
        annotate(tmp_path / "missing-model", src, tmp_path / "out.jsonl", n_process=2, progress=False)


def test_bioc_resume_before_any_complete_document(ruler, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}, {"id": "b", "text": "breast cancer"}])
    annotate(ruler, src, tmp_path / "full.xml", output_format="bioc", progress=False)
    out = tmp_path / "out.xml"
    out.write_text("<?xml version='1.0' encoding='UTF-8'?>\n<!DOCTYPE collection SYSTEM 'BioC.dtd'>\n"
                   "<collection><source>spacy-bioner</source><date></date><key></key>\n<document><id>a</id>\n<pas")
    annotate(ruler, src, out, output_format="bioc", resume=True, progress=False)
    assert out.read_text() == (tmp_path / "full.xml").read_text()


def test_repeated_ids_resume_by_count(ruler, tmp_path):
    records = [{"id": "same", "text": f"BRCA1 case {i}"} for i in range(6)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    annotate(ruler, src, tmp_path / "full.jsonl", buffer_size=2, progress=False)
    out = tmp_path / "out.jsonl"

    class Killed(Exception):
        pass

    def kill(stats):
        raise Killed

    with pytest.raises(Killed):
        annotate(ruler, src, out, buffer_size=2, progress=False, on_buffer=kill)
    stats = annotate(ruler, src, out, buffer_size=2, resume=True, progress=False)
    assert stats.skipped == 2 and stats.documents == 4
    assert out.read_text() == (tmp_path / "full.jsonl").read_text()


def test_uppercase_gz_and_output_inside_the_input_folder(ruler, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_jsonl(folder / "A.JSONL.GZ", [{"id": "a", "text": "BRCA1"}], gz=True)
    stats = annotate(ruler, folder, folder / "out.jsonl", progress=False)
    assert stats.documents == 1 and stats.errors == 0
    stats = annotate(ruler, folder, folder / "out.jsonl", resume=True, progress=False)  # out.jsonl is not input
    assert stats.documents == 0 and stats.skipped == 1 and len(read_jsonl(folder / "out.jsonl")) == 1


# ---------------------------------------------------------------- a failing job is not a failing record
FAIL = {"on": True}  # what the components below do, switched by the tests (in this process: n_process=1)


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda.OutOfMemoryError, which needs no GPU to be recognised."""


JOB_ERRORS = {"cuda-oom": lambda: RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
              "torch-oom": lambda: OutOfMemoryError("Allocation on device"),
              "memory": lambda: MemoryError(),
              "device-assert": lambda: RuntimeError("CUDA error: device-side assert triggered\nCompile with ..."),
              # what torch raises when the CPU allocator fails (torch.empty(1 << 50) on Linux)
              "cpu-oom": lambda: RuntimeError(
                  "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you "
                  "tried to allocate 1125899906842624 bytes. Error code 12 (Cannot allocate memory)")}


def pipeline_with(ruler, path, name, component):
    """The ruler pipeline with one more (in-process) component, saved to ``path``."""
    if name not in spacy.registry.factories:
        spacy.Language.component(name, func=component)
    nlp = spacy.load(ruler)
    nlp.add_pipe(name)
    nlp.to_disk(path)
    return path


def _raise_on_oom(kind):
    def component(doc):
        if FAIL["on"] and "OOM" in doc.text:
            raise JOB_ERRORS[kind]()
        return doc
    return component


@pytest.mark.parametrize("kind", list(JOB_ERRORS))
def test_out_of_memory_stops_the_job_and_resume_loses_nothing(ruler, tmp_path, kind):
    from spacy_bioner.annotate.worker import JobFailure

    model = pipeline_with(ruler, tmp_path / "model", f"oom_{kind}", _raise_on_oom(kind))
    records = [{"id": f"d{i}", "text": f"Case {i}: BRCA1" + (" OOM" if i == 5 else "")} for i in range(10)]
    src = write_jsonl(tmp_path / "in.jsonl", records + [{"id": "bad"}])
    out = tmp_path / "out.jsonl"
    FAIL["on"] = True
    with pytest.raises(JobFailure, match="--resume") as info:
        annotate(model, src, out, buffer_size=4, progress=False)
    assert "\n" not in str(info.value) and ("out of memory" in str(info.value) or "device error" in str(info.value))
    assert [r["id"] for r in read_jsonl(out)] == ["d0", "d1", "d2", "d3"]  # the first buffer, flushed
    assert not (tmp_path / "out.jsonl.errors.jsonl").read_text()  # nothing of the failing buffer
    FAIL["on"] = False  # the memory is back
    stats = annotate(model, src, out, buffer_size=4, resume=True, progress=False)
    assert stats.skipped == 4 and stats.documents == 6 and stats.errors == 1
    assert [r["id"] for r in read_jsonl(out)] == [f"d{i}" for i in range(10)]


def _raise_always(doc):
    if FAIL["on"]:
        raise ValueError("the model is broken")
    return doc


def test_a_buffer_failing_record_by_record_stops_the_job(ruler, tmp_path):
    from spacy_bioner.annotate.worker import JobFailure

    model = pipeline_with(ruler, tmp_path / "model", "raise_always", _raise_always)
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": "BRCA1"} for i in range(6)])
    FAIL["on"] = True
    with pytest.raises(JobFailure, match="every record of a buffer of 3 .*ValueError: the model is broken"):
        annotate(model, src, tmp_path / "out.jsonl", buffer_size=3, progress=False)
    assert not (tmp_path / "out.jsonl").read_text() and not (tmp_path / "out.jsonl.errors.jsonl").read_text()
    FAIL["on"] = False
    stats = annotate(model, src, tmp_path / "out.jsonl", buffer_size=3, resume=True, progress=False)
    assert stats.documents == 6 and stats.errors == 0


def test_cli_a_failing_job_is_one_line_and_exit_1(ruler, tmp_path):
    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    model = pipeline_with(ruler, tmp_path / "model", "oom_cli", _raise_on_oom("cuda-oom"))
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1 OOM"}, {"id": "b", "text": "x"}])
    FAIL["on"] = True
    result = CliRunner().invoke(app, ["annotate", str(model), str(src), str(tmp_path / "out.jsonl")])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback: fail()'s exit
    output = result.output.strip()
    assert "out of memory" in output and "--resume" in output and "Traceback" not in output
    assert len(output.splitlines()) == 1


def _flaky(doc):
    if FAIL["on"] and "FLAKY" in doc.text:
        raise RuntimeError("a transient glitch")
    return doc


def test_retry_errors_annotates_the_error_files_records_again(ruler, tmp_path):
    model = pipeline_with(ruler, tmp_path / "model", "flaky", _flaky)
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": f"BRCA1 {'FLAKY' if i in (1, 4) else ''}"}) for i in range(6)]
    src.write_text("\n".join(lines[:3] + ["{not json"] + lines[3:]) + "\n")
    out, errors = tmp_path / "out.jsonl", tmp_path / "out.jsonl.errors.jsonl"
    FAIL["on"] = True
    annotate(model, src, out, buffer_size=3, progress=False)
    assert [(e["id"], e["error"].split(":")[0]) for e in read_jsonl(errors)] == [
        ("d1", "the pipeline failed on it"), (None, "invalid JSON"), ("d4", "the pipeline failed on it")]
    before = errors.read_text()
    stats = annotate(model, src, out, retry_errors=True, progress=False)  # still failing: nothing changes
    assert stats.retried == 3 and stats.documents == 0 and stats.errors == 3 and errors.read_text() == before
    FAIL["on"] = False
    stats = annotate(model, src, out, retry_errors=True, progress=False)
    assert stats.retried == 3 and stats.documents == 2 and stats.errors == 1 and stats.not_found == 0
    assert [r["id"] for r in read_jsonl(out)] == ["d0", "d2", "d3", "d5", "d1", "d4"]  # appended
    assert [e["error"].split(":")[0] for e in read_jsonl(errors)] == ["invalid JSON"]  # bad input stays
    assert read_jsonl(out)[-1]["entities"] == [{"start": 0, "end": 5, "label": "Gene", "text": "BRCA1"}]
    again = annotate(model, src, out, resume=True, progress=False)  # resume sees the retried ones as done
    assert again.documents == 0 and again.skipped == 7


def test_a_job_failure_while_retrying_says_to_retry_again(ruler, tmp_path):
    """--resume would skip every record of the error file: a retry that stops says --retry-errors."""
    from spacy_bioner.annotate.worker import JobFailure

    model = pipeline_with(ruler, tmp_path / "model", "oom_retry", _raise_on_oom("cpu-oom"))
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}, {"id": "b", "text": "BRCA1 OOM"}])
    out, errors = tmp_path / "out.jsonl", tmp_path / "out.jsonl.errors.jsonl"
    out.write_text(json.dumps({"id": "a", "source": "in.jsonl:1", "entities": []}) + "\n")
    errors.write_text(json.dumps({"source": "in.jsonl:2", "id": "b", "error": "the pipeline failed on it: X"}) + "\n")
    before = errors.read_text()
    FAIL["on"] = True
    with pytest.raises(JobFailure) as info:
        annotate(model, src, out, retry_errors=True, progress=False)
    message = str(info.value)
    assert "out of memory" in message and "rerun with --retry-errors" in message and "--resume" not in message
    assert errors.read_text() == before and len(read_jsonl(out)) == 1  # nothing lost, nothing written
    FAIL["on"] = False
    stats = annotate(model, src, out, retry_errors=True, progress=False)
    assert stats.documents == 1 and [r["id"] for r in read_jsonl(out)] == ["a", "b"] and not errors.read_text()


def test_retry_hint_replaces_the_resume_hint_of_every_job_failure():
    from spacy_bioner.annotate.job import WORKER_DIED
    from spacy_bioner.annotate.worker import JobFailure, for_retry

    for text in (WORKER_DIED, "out of memory while annotating ...; nothing of that buffer was written. Fix the "
                              "cause and continue with --resume"):
        message = str(for_retry(JobFailure(text)))
        assert "--resume" not in message and "--retry-errors" in message, message


class Killed(BaseException):
    """A kill -9 at a chosen place (BaseException: nothing on the way catches it)."""


def _flaky_run(ruler, tmp_path, suffix="jsonl"):
    """OUTPUT d0 d2 d3 d5; the error file d1, a line of invalid JSON, d4 (the flaky component is off after)."""
    model = pipeline_with(ruler, tmp_path / "model", "flaky", _flaky)
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": f"d{i}", "text": f"BRCA1 {'FLAKY' if i in (1, 4) else ''}"}) for i in range(6)]
    src.write_text("\n".join(lines[:3] + ["{not json"] + lines[3:]) + "\n")
    out = tmp_path / f"out.{suffix}"
    FAIL["on"] = True
    annotate(model, src, out, buffer_size=3, progress=False, output_format={"xml": "bioc"}.get(suffix, suffix))
    FAIL["on"] = False
    return model, src, out, tmp_path / f"out.{suffix}.errors.jsonl"


@pytest.mark.parametrize("suffix,then", [("jsonl", "retry"), ("jsonl", "resume"), ("pubtator", "retry"),
                                         ("xml", "retry")])
def test_retry_errors_killed_between_output_and_error_file_no_duplicate(ruler, tmp_path, monkeypatch, suffix,
                                                                        then):
    """Killed after a buffer's records reach OUTPUT and before the error file lets them go: the next start
    settles them (nothing annotated or appended twice) and retries the rest (nothing lost)."""
    from spacy_bioner.annotate import job

    model, src, out, errors = _flaky_run(ruler, tmp_path, suffix)
    fmt = {"xml": "bioc"}.get(suffix, suffix)
    save, calls = job.ErrorFileRetry.save, []

    def killed_on_the_second_save(self):
        calls.append(1)
        if len(calls) == 2:
            raise Killed  # the second buffer (d4) is in OUTPUT, fsynced; the error file still holds it
        save(self)

    monkeypatch.setattr(job.ErrorFileRetry, "save", killed_on_the_second_save)
    with pytest.raises(Killed):
        annotate(model, src, out, retry_errors=True, buffer_size=2, progress=False, output_format=fmt)
    monkeypatch.setattr(job.ErrorFileRetry, "save", save)
    assert [r.id for r in read_records(out)] == ["d0", "d2", "d3", "d5", "d1", "d4"]
    assert [e["id"] for e in read_jsonl(errors)] == [None, "d4"]  # d4 in both
    if then == "resume":  # a --resume first: it settles d4 too, before it appends to the error file
        stats = annotate(model, src, out, resume=True, progress=False, output_format=fmt)
        assert stats.documents == 0 and stats.settled == 1
    stats = annotate(model, src, out, retry_errors=True, progress=False, output_format=fmt)
    assert stats.documents == 0 and stats.retried == 1 and stats.errors == 1  # only the invalid JSON is left
    assert stats.settled == (1 if then == "retry" else 0)
    assert [r.id for r in read_records(out)] == ["d0", "d2", "d3", "d5", "d1", "d4"]
    assert [e["error"].split(":")[0] for e in read_jsonl(errors)] == ["invalid JSON"]


def test_retry_errors_killed_after_the_error_file_is_saved(ruler, tmp_path, monkeypatch):
    """Killed after the error file is rewritten, before the retry's note is removed: nothing to settle twice."""
    from spacy_bioner.annotate import job

    model, src, out, errors = _flaky_run(ruler, tmp_path)
    monkeypatch.setattr(job, "end_retry_journal", lambda path: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        annotate(model, src, out, retry_errors=True, buffer_size=10, progress=False)
    monkeypatch.undo()
    assert [e["error"].split(":")[0] for e in read_jsonl(errors)] == ["invalid JSON"]
    stats = annotate(model, src, out, retry_errors=True, progress=False)
    assert stats.retried == 1 and stats.documents == 0
    assert [r["id"] for r in read_jsonl(out)] == ["d0", "d2", "d3", "d5", "d1", "d4"]
    assert [e["error"].split(":")[0] for e in read_jsonl(errors)] == ["invalid JSON"]
    assert not job.retry_journal_path(errors).exists()


def test_retry_errors_needs_an_error_file_and_the_local_backend(ruler, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1"}])
    with pytest.raises(FileNotFoundError, match="no error file to retry"):
        annotate(ruler, src, tmp_path / "out.jsonl", retry_errors=True, progress=False)
    (tmp_path / "out.jsonl.errors.jsonl").write_text("")
    with pytest.raises(ValueError, match="drop --backend ray"):
        annotate(ruler, src, tmp_path / "out.jsonl", retry_errors=True, backend="ray", progress=False)


def test_job_failure_reasons():
    from spacy_bioner.annotate.worker import job_failure_reason

    assert [job_failure_reason(make()) for make in JOB_ERRORS.values()] == [
        "out of memory", "out of memory", "out of memory", "device error", "out of memory"]
    for text in ("DefaultCPUAllocator: CAN'T ALLOCATE MEMORY", "mmap: Cannot allocate memory",
                 "DefaultCPUAllocator: not enough memory: you tried to allocate 8 bytes"):
        assert job_failure_reason(RuntimeError(text)) == "out of memory", text
    try:
        try:
            raise MemoryError()
        except MemoryError as inner:
            raise ValueError("wrapped") from inner
    except ValueError as err:
        assert job_failure_reason(err) == "out of memory"  # a wrapped OOM is still one
    assert job_failure_reason(ValueError("E1041: out of memory words")) is None  # not a RuntimeError
    assert job_failure_reason(RuntimeError("index out of range")) is None


def test_a_killed_worker_stops_the_job_instead_of_hanging(ruler, tmp_path):
    import multiprocessing
    import os
    import signal
    import threading

    src = write_jsonl(tmp_path / "in.jsonl", [{"id": f"d{i}", "text": "BRCA1"} for i in range(60)])
    out = tmp_path / "out.jsonl"

    def kill_the_workers(stats):
        if stats.documents == 1:  # buffers are still in flight and to come
            for child in multiprocessing.active_children():
                os.kill(child.pid, signal.SIGKILL)

    outcome = {}

    def run():
        try:
            outcome["stats"] = annotate(ruler, src, out, buffer_size=1, n_process=2, progress=False,
                                        on_buffer=kill_the_workers)
        except BaseException as err:  # noqa: BLE001
            outcome["error"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=240)
    assert not thread.is_alive(), "the job hangs on a dead worker"
    from spacy_bioner.annotate.worker import JobFailure

    assert isinstance(outcome.get("error"), JobFailure), outcome
    assert "worker process died" in str(outcome["error"]) and "--resume" in str(outcome["error"])
    done = [r["id"] for r in read_jsonl(out)]
    assert done == [f"d{i}" for i in range(len(done))]  # in order, nothing after a gap
    stats = annotate(ruler, src, out, resume=True, progress=False)
    assert stats.skipped == len(done) and [r["id"] for r in read_jsonl(out)] == [f"d{i}" for i in range(60)]


# ---------------------------------------------------------------- PubTator resume
def test_pubtator_resume_with_a_title_holding_pipes(ruler, tmp_path):
    records = [{"id": f"doc{i}", "text": f"Title |a| with |t| pipes {i} BRCA1"} for i in range(6)]
    src = write_jsonl(tmp_path / "in.jsonl", records)
    annotate(ruler, src, tmp_path / "full.pubtator", output_format="pubtator", buffer_size=2, progress=False)
    out = tmp_path / "out.pubtator"

    class Killed(Exception):
        pass

    def kill(stats):
        raise Killed

    with pytest.raises(Killed):
        annotate(ruler, src, out, output_format="pubtator", buffer_size=2, progress=False, on_buffer=kill)
    stats = annotate(ruler, src, out, output_format="pubtator", buffer_size=2, resume=True, progress=False)
    assert stats.skipped == 2 and stats.documents == 4
    assert out.read_text() == (tmp_path / "full.pubtator").read_text()


def test_pubtator_output_refuses_ids_it_cannot_hold(ruler, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a|b", "text": "BRCA1"}, {"id": "c", "text": "BRCA1"}])
    stats = annotate(ruler, src, tmp_path / "out.pubtator", output_format="pubtator", progress=False)
    assert stats.documents == 1 and stats.errors == 1
    [err] = read_jsonl(tmp_path / "out.pubtator.errors.jsonl")
    assert err["id"] == "a|b" and "PubTator output cannot hold" in err["error"]
    assert [r.id for r in read_records(tmp_path / "out.pubtator")] == ["c"]


def test_pubtator_output_refuses_an_empty_id(ruler, tmp_path):
    """``|t|text`` has no id: resume could not see it as done and would write it again."""
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "", "text": "BRCA1"}, {"id": "c", "text": "BRCA1"}])
    out = tmp_path / "out.pubtator"
    stats = annotate(ruler, src, out, output_format="pubtator", progress=False)
    assert stats.documents == 1 and stats.errors == 1
    [err] = read_jsonl(tmp_path / "out.pubtator.errors.jsonl")
    assert err["id"] == "" and "empty" in err["error"] and "PubTator output cannot hold" in err["error"]
    before = out.read_text()
    again = annotate(ruler, src, out, output_format="pubtator", resume=True, progress=False)
    assert again.documents == 0 and again.skipped == 2 and out.read_text() == before


# ---------------------------------------------------------------- entity confidence
SCORES = {"BRCA1": 0.912345678, "cancer": 0.3}


def _scored_ents(doc):
    """Sets doc.ents and doc.spans["ents"] with attrs["scores"], as bioner_tagger does."""
    from spacy.tokens import Span, SpanGroup

    ents = [Span(doc, t.i, t.i + 1, label="Gene" if t.text == "BRCA1" else "Disease")
            for t in doc if t.text in SCORES]
    doc.ents = ents
    doc.spans["ents"] = SpanGroup(doc, name="ents", spans=list(doc.ents),
                                  attrs={"scores": [SCORES[e.text] for e in doc.ents]})
    return doc


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    if "scored_ents" not in spacy.registry.factories:
        spacy.Language.component("scored_ents", func=_scored_ents)
    nlp = spacy.blank("en")
    nlp.add_pipe("scored_ents")
    path = tmp_path_factory.mktemp("scored") / "model"
    nlp.to_disk(path)
    return path


def test_entity_scores_in_jsonl_and_bioc_not_pubtator(scored, ruler, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1 and breast cancer"}])
    annotate(scored, src, tmp_path / "out.jsonl", progress=False)
    [rec] = read_jsonl(tmp_path / "out.jsonl")
    assert [(e["text"], e["score"]) for e in rec["entities"]] == [("BRCA1", 0.9123), ("cancer", 0.3)]
    annotate(scored, src, tmp_path / "out.xml", output_format="bioc", progress=False)
    from xml.etree import ElementTree

    annotations = ElementTree.parse(tmp_path / "out.xml").getroot().iter("annotation")
    assert [{i.get("key"): i.text for i in a.findall("infon")} for a in annotations] == [
        {"type": "Gene", "score": "0.9123"}, {"type": "Disease", "score": "0.3"}]
    annotate(scored, src, tmp_path / "out.pubtator", output_format="pubtator", progress=False)
    assert "0.9123" not in (tmp_path / "out.pubtator").read_text()
    annotate(ruler, src, tmp_path / "plain.jsonl", progress=False)  # spaCy's ner / a ruler: no scores
    assert all("score" not in e for e in read_jsonl(tmp_path / "plain.jsonl")[0]["entities"])


def test_min_confidence_drops_low_scores_and_needs_scores(scored, ruler, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "BRCA1 and breast cancer"},
                                              {"id": "b", "text": "cancer only"}])
    stats = annotate(scored, src, tmp_path / "out.jsonl", min_confidence=0.5, progress=False)
    assert [[e["text"] for e in r["entities"]] for r in read_jsonl(tmp_path / "out.jsonl")] == [["BRCA1"], []]
    assert stats.entities == 1 and stats.errors == 0
    from spacy_bioner.annotate.worker import MissingScoresError

    with pytest.raises(MissingScoresError, match="drop --min-confidence"):
        annotate(ruler, src, tmp_path / "plain.jsonl", min_confidence=0.5, buffer_size=1, progress=False)
    assert not (tmp_path / "plain.jsonl.errors.jsonl").read_text()  # an error of the job, not of records
    with pytest.raises(ValueError, match="between 0 and 1"):
        annotate(scored, src, tmp_path / "x.jsonl", min_confidence=50, progress=False)
    res = run_cli(ruler, src, tmp_path / "cli.jsonl", "--min-confidence", "0.5")
    assert res.returncode == 1 and "drop --min-confidence" in res.stderr and "Traceback" not in res.stderr


def test_bioner_tagger_scores_reach_the_output(tiny, train_file, tmp_path):
    from .test_tagger import make_tagger_nlp

    nlp, examples = make_tagger_nlp(tiny, train_file, **{"training.max_steps": 10})
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(8):
        nlp.update(examples, sgd=optimizer, drop=0.0)
    text = "BRCA1 mutations cause breast cancer . TP53 is a gene ."
    doc = nlp(text)
    assert len(doc.ents) > 0, "the tiny pipeline should have learnt some entity"
    expected_scores = [round(s, 4) for s in doc.spans["ents"].attrs["scores"]]
    nlp.to_disk(tmp_path / "model")
    src = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": text}])
    annotate(tmp_path / "model", src, tmp_path / "out.jsonl", progress=False)
    [rec] = read_jsonl(tmp_path / "out.jsonl")
    assert [(e["start"], e["end"], e["label"]) for e in rec["entities"]] == \
        [(e.start_char, e.end_char, e.label_) for e in doc.ents]
    assert [e["score"] for e in rec["entities"]] == pytest.approx(expected_scores, abs=2e-4)
    low = min(expected_scores)
    annotate(tmp_path / "model", src, tmp_path / "high.jsonl", min_confidence=low + 1e-3, progress=False)
    assert len(read_jsonl(tmp_path / "high.jsonl")[0]["entities"]) == sum(s > low + 1e-3 for s in expected_scores)


def test_scores_survive_the_ray_shards():
    from spacy_bioner.annotate.ray_backend import record_from_json, record_to_json
    from spacy_bioner.types import AnnotatedRecord, Passage

    record = AnnotatedRecord(id="a", source="x:1", passages=[Passage(offset=0, text="BRCA1")],
                             entities=[(0, 5, "Gene", "BRCA1")], scores=[0.9])
    assert record_from_json(json.loads(json.dumps(record_to_json(record)))) == record


# ---------------------------------------------------------------- layers
def _imports(path):
    import ast

    tree = ast.parse(path.read_text(encoding="utf8"))
    package = "spacy_bioner." + ".".join(path.relative_to(path.parents[1]).with_suffix("").parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            yield f"{base}.{node.module}" if node.module else base
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def test_annotate_imports_no_cycle_and_nothing_from_evaluation():
    from pathlib import Path

    import spacy_bioner

    root = Path(spacy_bioner.__file__).parent
    graph = {f"spacy_bioner.annotate.{p.stem}": {m for m in _imports(p) if m.startswith("spacy_bioner.annotate.")}
             for p in (root / "annotate").glob("*.py")}
    for module, deps in graph.items():
        for dep in deps:
            assert module not in graph.get(dep, set()), f"import cycle {module} <-> {dep}"
        outside = {m for m in _imports(root / "annotate" / (module.rsplit(".", 1)[1] + ".py"))
                   if m.startswith("spacy_bioner.evaluation") or m.startswith("spacy_bioner.training")}
        assert not outside, f"{module} imports {outside}"
    inference = set(_imports(root / "models" / "inference.py"))
    assert not {m for m in inference if m.split(".")[:2] in (["spacy_bioner", "pipeline"],
                                                             ["spacy_bioner", "evaluation"])}
