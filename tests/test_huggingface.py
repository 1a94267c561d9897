"""Hugging Face both ways: ``import-hf`` (a token-classification checkpoint as a spaCy pipeline) and
``export-hf`` (a ``bioner_tagger`` pipeline as a checkpoint), on tiny random checkpoints built here."""
import json
import shutil

import numpy
import pytest

from spacy_bioner.errors import ConfigValueError
from spacy_bioner.packaging.hf_labels import read_label_scheme

from .test_cli_errors import assert_one_line_error, run_cli

#: Rows not in bioner_tagger's order (it puts O first), so a mapping that ignores the order fails.
LABELS = ["B-Disease", "O", "I-Disease", "B-Gene", "I-Gene"]
TEXTS = [
    "BRCA1 mutations cause hereditary breast cancer .",
    "TP53 is mutated in many tumours , including ovarian carcinoma .",
    "The IL - 2 gene ( human ) regulates T - cell proliferation .",
    "Patients with Parkinson ' s disease received selegiline .",
]


# ------------------------------------------------------------------------------------------- label schemes
def test_iob2_labels_map_row_by_row():
    m = read_label_scheme({0: "B-Disease", 1: "O", 2: "I-Disease", 3: "B-Gene", 4: "I-Gene"})
    assert (m.scheme, m.head_scheme, m.labels) == ("iob2", "iob2", ("Disease", "Gene"))
    assert m.tags == ["O", "B-Disease", "I-Disease", "B-Gene", "I-Gene"]
    assert m.rows == [1, 0, 2, 3, 4]


def test_string_keys_and_underscores():
    m = read_label_scheme({"0": "O", "1": "B_Chem", "2": "I_Chem"})
    assert m.scheme == "iob2" and m.labels == ("Chem",) and m.rows == [0, 1, 2]


def test_iob1_type_opens_with_its_inside_row():
    m = read_label_scheme({0: "O", 1: "I-Gene", 2: "B-Gene", 3: "I-Disease"})
    assert m.scheme == "iob1"
    assert dict(zip(m.tags, m.rows)) == {"O": 0, "B-Gene": 2, "I-Gene": 1, "B-Disease": 3, "I-Disease": 3}


def test_bioes_becomes_bilou():
    m = read_label_scheme(dict(enumerate(["O", "B-X", "I-X", "E-X", "S-X"])))
    assert (m.scheme, m.head_scheme) == ("bioes", "bilou")
    assert dict(zip(m.tags, m.rows)) == {"O": 0, "B-X": 1, "I-X": 2, "L-X": 3, "U-X": 4}


def test_bilou_with_a_missing_tag_has_no_row():
    m = read_label_scheme(dict(enumerate(["O", "B-X", "I-X", "L-X"])))
    assert m.scheme == "bilou" and dict(zip(m.tags, m.rows))["U-X"] is None


def test_bare_bio_labels_get_the_given_type():
    m = read_label_scheme({0: "O", 1: "B", 2: "I"}, bare_label="Disease")
    assert (m.scheme, m.labels, m.tags, m.rows) == ("bio", ("Disease",), ["O", "B-Disease", "I-Disease"], [0, 1, 2])


@pytest.mark.parametrize("id2label, needle", [
    ({0: "LABEL_0", 1: "LABEL_1"}, "no id2label"),
    ({}, "no id2label"),
    ({0: "PER", 1: "LOC", 2: "O"}, "no tag scheme"),
    ({0: "B-X", 1: "I-X"}, "no outside label"),
    ({0: "O", 1: "B-X", 2: "E-X", 3: "U-X"}, "mix BIOES"),
    ({0: "O", 2: "B-X"}, "does not number"),
])
def test_unusable_label_sets_are_one_clear_error(id2label, needle):
    with pytest.raises(ConfigValueError, match=needle) as err:
        read_label_scheme(id2label)
    assert "\n" not in str(err.value)


def test_missing_rows_are_never_chosen():
    from spacy_bioner.packaging.huggingface import NEVER, mapped_output

    m = read_label_scheme(dict(enumerate(["O", "B-X", "I-X", "L-X"])))
    W, b = mapped_output(m, numpy.ones((4, 3), dtype="float32") * numpy.arange(4)[:, None], numpy.arange(4.0))
    assert W.shape == (5, 3) and b[m.tags.index("U-X")] == NEVER and not W[m.tags.index("U-X")].any()
    assert b[m.tags.index("L-X")] == 3.0 and (W[m.tags.index("L-X")] == 3).all()


# ------------------------------------------------------------------------------------- tiny checkpoints
def make_checkpoint(base, out, labels=LABELS, seed=1):
    """A token-classification checkpoint over a tiny backbone, with a classifier strong enough that
    the argmax varies from word to word (a random init near zero would tag everything alike)."""
    import torch
    from transformers import AutoConfig, AutoModelForTokenClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    config = AutoConfig.from_pretrained(base, num_labels=len(labels), id2label=dict(enumerate(labels)),
                                        label2id={label: i for i, label in enumerate(labels)})
    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    model = AutoModelForTokenClassification.from_pretrained(base, config=config)
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 2.0)
        model.classifier.bias.normal_(0.0, 1.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def hf_first_subword_logits(checkpoint, doc):
    """The checkpoint's logits at each spaCy token's first subword, the text tokenized as HF does."""
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(checkpoint)
    model = AutoModelForTokenClassification.from_pretrained(checkpoint).eval()
    enc = tok(doc.text, return_offsets_mapping=True, return_tensors="pt")
    offsets = enc.pop("offset_mapping")[0].tolist()
    with torch.no_grad():
        logits = model(**enc).logits[0].numpy()
    rows = []
    for token in doc:
        start, end = token.idx, token.idx + len(token.text)
        rows.append(next(i for i, (s, e) in enumerate(offsets) if e > s and s < end and e > start))
    return logits[rows], model.config.id2label


@pytest.fixture(scope="module")
def checkpoints(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {family: make_checkpoint(tiny[family], root / f"tc_{family}") for family in ("bert", "roberta", "deberta")}


@pytest.fixture(scope="module")
def imported(checkpoints, tmp_path_factory):
    """Each checkpoint imported with HF's argmax decoding, from a copy that is then deleted."""
    from spacy_bioner.packaging.huggingface import import_hf

    root = tmp_path_factory.mktemp("imported")
    out = {}
    for family, checkpoint in checkpoints.items():
        copy = shutil.copytree(checkpoint, root / f"copy_{family}")
        import_hf(str(copy), root / family, constrained=False)
        shutil.rmtree(copy)  # the pipeline must not need it
        out[family] = root / family
    return out


def word_tags(doc):
    return [f"{t.ent_iob_}-{t.ent_type_}" if t.ent_iob_ != "O" else "O" for t in doc]


@pytest.mark.parametrize("family", ["bert", "roberta", "deberta"])
def test_imported_pipeline_tags_each_word_with_hf_argmax(family, checkpoints, imported):
    import spacy

    from spacy_bioner.pipeline.decoding import tags_to_spans

    nlp = spacy.load(imported[family])  # the checkpoint copy is gone: no source needed
    tagger = nlp.get_pipe("bioner_tagger")
    n_entities = 0
    for text in TEXTS:
        doc = nlp(text)
        logits, id2label = hf_first_subword_logits(checkpoints[family], doc)
        hf_tags = [id2label[int(i)] for i in logits.argmax(axis=1)]
        expected = [(s, e, label) for s, e, label in tags_to_spans([tagger.tags.index(t) for t in hf_tags],
                                                                   tagger.tags)]
        assert [(e.start, e.end, e.label_) for e in doc.ents] == expected, (text, hf_tags)
        n_entities += len(expected)
    assert n_entities > 3  # the classifier tags something, so the comparison means something


def test_a_decoder_checkpoint_imports_onto_decoder_tagger(tiny, tmp_path):
    """GPT-2 token classification: DecoderTagger pooling each word's first subword, the same entities as HF's
    argmax. Every word here follows a space, as DecoderTagger tokenizes it (the first with a space too:
    ``add_prefix_space``); like the real GPT-2 tokenizer, no token type ids."""
    import spacy
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from spacy_bioner.packaging.huggingface import import_hf
    from spacy_bioner.pipeline.decoding import tags_to_spans

    checkpoint = make_checkpoint(tiny["gpt2"], tmp_path / "tc_gpt2")
    record = import_hf(str(checkpoint), tmp_path / "p", constrained=False)
    assert record["decoder"] and record["architecture"] == "GPT2ForTokenClassification"
    nlp = spacy.load(tmp_path / "p")
    assert "transformer" not in nlp.pipe_names
    tagger = nlp.get_pipe("bioner_tagger")
    tok = AutoTokenizer.from_pretrained(checkpoint, add_prefix_space=True)
    model = AutoModelForTokenClassification.from_pretrained(checkpoint).eval()
    for text in TEXTS:
        doc = nlp(text)
        words = [t.text for t in doc]
        enc = tok(words, is_split_into_words=True, return_tensors="pt", return_token_type_ids=False)
        with torch.no_grad():
            best = model(**enc).logits[0].argmax(-1).tolist()
        first = {}
        for pos, w in enumerate(enc.word_ids()):
            if w is not None and w not in first:
                first[w] = pos
        hf_tags = [model.config.id2label[best[first[w]]] for w in range(len(words))]
        expected = tags_to_spans([tagger.tags.index(t) for t in hf_tags], tagger.tags)
        assert [(e.start, e.end, e.label_) for e in doc.ents] == expected, (text, hf_tags)


def test_scores_equal_the_checkpoints_logits(checkpoints, imported):
    import spacy

    nlp = spacy.load(imported["bert"])
    tagger = nlp.get_pipe("bioner_tagger")
    doc = nlp.make_doc(TEXTS[0])
    for name, proc in nlp.pipeline[:1]:
        doc = proc(doc)
    scores = tagger.model.predict([doc])[0]
    logits, id2label = hf_first_subword_logits(checkpoints["bert"], doc)
    order = [list(id2label.values()).index(tag) for tag in tagger.tags]
    numpy.testing.assert_allclose(scores, logits[:, order], atol=1e-5)


def test_entities_equal_hf_pipeline_first_aggregation(checkpoints, imported):
    import spacy
    from transformers import pipeline

    nlp = spacy.load(imported["bert"])
    hf = pipeline("token-classification", model=str(checkpoints["bert"]), aggregation_strategy="first")
    for text in TEXTS:
        ours = [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]
        theirs = [(e["start"], e["end"], e["entity_group"]) for e in hf(text)]
        assert ours == theirs, text


def test_export_gives_the_same_logits_and_entities(imported, tmp_path):
    import spacy
    import torch
    from transformers import AutoModelForTokenClassification, AutoTokenizer, pipeline

    from spacy_bioner.packaging.huggingface import export_hf

    record = export_hf(imported["bert"], tmp_path / "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= set(record["files"])
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "O", "1": "B-Disease", "2": "I-Disease", "3": "B-Gene", "4": "I-Gene"}
    assert config["architectures"] == ["BertForTokenClassification"]
    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\n") and "- token-classification" in card and "- spacy-bioner" in card
    nlp = spacy.load(imported["bert"])
    tagger = nlp.get_pipe("bioner_tagger")
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "hf")
    hf = pipeline("token-classification", model=model, tokenizer=tok, aggregation_strategy="first")
    for text in TEXTS:
        doc = nlp.get_pipe("transformer")(nlp.make_doc(text))
        scores = tagger.model.predict([doc])[0]
        logits, _ = hf_first_subword_logits(tmp_path / "hf", doc)
        numpy.testing.assert_allclose(scores, logits, atol=1e-5)
        ours = [(e.start_char, e.end_char, e.label_) for e in nlp(text).ents]
        assert ours == [(e["start"], e["end"], e["entity_group"]) for e in hf(text)], text
    with torch.no_grad():
        assert model.classifier.weight.shape == (5, 32)


def test_round_trip_keeps_a_constrained_pipelines_entities(checkpoints, tmp_path):
    import spacy

    from spacy_bioner.packaging.huggingface import export_hf, import_hf

    import_hf(str(checkpoints["roberta"]), tmp_path / "p", constrained=True)
    export_hf(tmp_path / "p", tmp_path / "hf")
    import_hf(str(tmp_path / "hf"), tmp_path / "p2", constrained=True)
    first, second = spacy.load(tmp_path / "p"), spacy.load(tmp_path / "p2")
    for text in TEXTS:
        a, b = first(text), second(text)
        assert [(e.start_char, e.end_char, e.label_) for e in a.ents] == \
               [(e.start_char, e.end_char, e.label_) for e in b.ents]
        assert a.spans["ents"].attrs["scores"] == pytest.approx(b.spans["ents"].attrs["scores"], abs=1e-5)
        tags = word_tags(a)  # constrained decoding: never an I- tag that does not continue its entity
        for prev, tag in zip(["O"] + tags, tags):
            if tag.startswith("I-"):
                assert prev != "O" and prev[2:] == tag[2:], tags


# ------------------------------------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def bad_inputs(tiny, tmp_path_factory):
    import spacy

    root = tmp_path_factory.mktemp("hf_bad")
    (root / "not_a_checkpoint").mkdir()
    (root / "not_a_checkpoint" / "notes.txt").write_text("hello")
    make_checkpoint(tiny["bert"], root / "no_id2label", labels=["LABEL_0", "LABEL_1", "LABEL_2"])
    make_checkpoint(tiny["bert"], root / "no_scheme", labels=["O", "PER", "LOC"])
    nlp = spacy.blank("en")
    nlp.add_pipe("ner").add_label("Disease")
    nlp.initialize()
    nlp.to_disk(root / "ner_pipeline")
    return root


@pytest.mark.parametrize("args, needles", [
    (["import-hf", "not_a_checkpoint", "out"], ["no config.json"]),
    (["import-hf", "./missing_folder", "out"], ["does not exist"]),
    (["import-hf", "no_id2label", "out"], ["no id2label", "LABEL_0"]),
    (["import-hf", "no_scheme", "out"], ["no tag scheme", "PER"]),
    (["export-hf", "ner_pipeline", "out"], ["transition-based", "--head tagger"]),
])
def test_bad_inputs_are_one_line_errors(bad_inputs, args, needles):
    assert_one_line_error(run_cli(args, bad_inputs), *needles)


# ------------------------------------------------------------------------------- continued fine-tuning
def _train_from(pipeline, corpus, out, steps=2, rate=1e-5):
    from spacy_bioner.training.config import build_config
    from spacy_bioner.training.run import run_training

    config = build_config("transformer", head="tagger", overrides={
        "paths.backbone": "./nowhere", "paths.train": str(corpus), "paths.dev": str(corpus),
        "training.max_steps": steps, "training.eval_frequency": steps, "training.batcher.size": 4,
        "training.optimizer.learn_rate.initial_rate": rate})
    return run_training(config, out, init_from=pipeline)


def test_training_continues_from_an_imported_pipeline(imported, train_file, tmp_path):
    """The classifier and encoder start from the imported weights (the backbone path is never needed)."""
    import spacy

    record = _train_from(imported["bert"], train_file, tmp_path / "run")
    assert record.init_from["sourced"] == ["transformer", "bioner_tagger"]
    assert record.init_from["labels_added"] == [] and record.backbone is None
    before = spacy.load(imported["bert"]).get_pipe("bioner_tagger").model.get_ref("output").get_param("W")
    after = spacy.load(record.model_last).get_pipe("bioner_tagger").model.get_ref("output").get_param("W")
    assert after.shape == before.shape
    numpy.testing.assert_allclose(after, before, atol=1e-3)  # two tiny steps: still the imported classifier
    assert abs(after - before).max() > 0  # and it did train


def test_new_labels_extend_the_classifier(imported, write, tmp_path):
    import spacy

    corpus = write("aspirin\tB-Chemical\nand\tO\nBRCA1\tB-Gene\n.\tO\n\n" * 4, name="chem.tsv")
    record = _train_from(imported["bert"], corpus, tmp_path / "run")
    assert record.init_from["labels_added"] == ["Chemical"]
    before = spacy.load(imported["bert"]).get_pipe("bioner_tagger")
    after = spacy.load(record.model_last).get_pipe("bioner_tagger")
    assert after.labels == ("Disease", "Gene", "Chemical")
    W0, W1 = (t.model.get_ref("output").get_param("W") for t in (before, after))
    assert W1.shape == (7, W0.shape[1])
    numpy.testing.assert_allclose(W1[:5], W0, atol=1e-3)  # the checkpoint's tags keep their rows


def test_init_from_a_pipeline_with_another_head_is_one_line(bad_inputs, train_file):
    proc = run_cli(["train", "transformer", "--head", "tagger", "-o", "out", "--init-from", "ner_pipeline",
                    "--paths.train", train_file, "--paths.dev", train_file], bad_inputs)
    assert_one_line_error(proc, "--init-from", "bioner_tagger")


def test_imported_pipeline_works_in_evaluate_and_annotate(imported, train_file, tmp_path):
    """An imported pipeline works in `evaluate` (int8 too) and `annotate`, from the command line."""
    proc = run_cli(["evaluate", imported["bert"], train_file, "-o", tmp_path / "m.json", "--int8", "--bootstrap", "0"],
                   tmp_path)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert "seqeval" in metrics and metrics["words_per_second"] > 0
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n"
                                               for i, t in enumerate(TEXTS)))
    proc = run_cli(["annotate", imported["bert"], tmp_path / "in.jsonl", tmp_path / "out.jsonl"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["0", "1", "2", "3"] and any(r["entities"] for r in rows)
