"""Corpus mixes (``spacy_bioner.MixedCorpus.v1``, ``configs/mixes/``): label maps, annotated types,
temperature sampling, and the shipped HUNER mixes against ../shared/corpora."""
import collections
from pathlib import Path

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example

from spacy_bioner.corpus import mixes
from spacy_bioner.errors import CorpusConfigError

from .conftest import PROJECT

SHARED = PROJECT.parent / "shared" / "corpora"
MIX_DIR = PROJECT / "spacy_bioner" / "configs" / "mixes"


def write_corpus(folder: Path, sentences, splits=("train", "dev", "test")):
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sentences)
    for split in splits:
        (folder / f"{split}.tsv").write_text(text, encoding="utf8")
    return folder


GENES = [[("BRCA1", "B-GENE"), ("is", "O"), ("mutated", "O")]]
CDR = [[("aspirin", "B-Chemical"), ("causes", "O"), ("ulcers", "B-Disease")],
       [("ibuprofen", "B-Chemical"), ("is", "O"), ("safe", "O")]]


@pytest.fixture
def mix_file(tmp_path):
    write_corpus(tmp_path / "corpora" / "genes", GENES * 4)
    write_corpus(tmp_path / "corpora" / "cdr", CDR * 8)
    (tmp_path / "maps.yml").write_text("genes:\n  GENE: Gene\ncdr:\n  Chemical: Chemical\n  Disease: Disease\n")
    path = tmp_path / "mix.yml"
    path.write_text("name: tiny\ntypes: [Gene, Chemical, Disease]\ntemperature: 0.5\ncorpora_dir: corpora\ndedupe: false\n"
                    "label_maps: maps.yml\ncorpora:\n  - name: genes\n    path: genes\n    label_map: genes\n"
                    "  - name: cdr\n    path: cdr\n    label_map: cdr\n", encoding="utf8")
    return path


def read(mix_file, tmp_path, **kwargs):
    reader = spacy.registry.resolve({"r": {"@readers": "spacy_bioner.MixedCorpus.v1", "path": str(mix_file),
                                           "corpora_dir": str(tmp_path / "corpora"), **kwargs}})["r"]
    return reader(spacy.blank("en"))


def test_label_maps_and_annotated_types_on_every_example(mix_file, tmp_path):
    examples = list(read(mix_file, tmp_path, split="dev"))
    assert len(examples) == 4 + 16  # dev: every Example of every corpus, unsampled
    genes, cdr = examples[:4], examples[4:]
    assert [(e.text, e.label_) for e in genes[0].reference.ents] == [("BRCA1", "Gene")]
    for eg in genes:
        assert mixes.annotated_types(eg.reference) == ["Gene"] == mixes.annotated_types(eg.predicted)
        assert not eg.predicted.ents
    for eg in cdr:
        assert mixes.annotated_types(eg.reference) == ["Chemical", "Disease"]
    # the corpus name (a task_prompt.v3 prompt may name it) on both Docs of every Example
    assert [(eg.reference.user_data[mixes.CORPUS], eg.predicted.user_data[mixes.CORPUS]) for eg in examples] == \
        [("genes", "genes")] * 4 + [("cdr", "cdr")] * 16


def test_augmented_training_examples_keep_their_corpus(mix_file, tmp_path):
    def augmenter(nlp, eg):
        yield eg
        yield Example(Doc(nlp.vocab, words=[t.text for t in eg.predicted]), eg.reference.copy())

    examples = list(read(mix_file, tmp_path, split="train", augmenter=augmenter))
    assert examples and all(d.user_data.get(mixes.CORPUS) in ("genes", "cdr") and mixes.annotated_types(d)
                            for eg in examples for d in (eg.predicted, eg.reference))


def test_a_dropped_type_becomes_outside_and_an_unmapped_one_is_an_error(tmp_path):
    write_corpus(tmp_path / "c", CDR)
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Disease]\ncorpora:\n  - path: c\n    label_map: {Chemical: null, Disease: Disease}\n")
    m = mixes.load_mix(mix, corpora_dir=tmp_path)
    assert m.corpora[0].annotates == ["Disease"] and m.corpora[0].name == "c"
    docs = mixes.corpus_docs(m.corpora[0], "train", vocab=spacy.blank("en").vocab)
    assert [[(e.text, e.label_) for e in d.ents] for d in docs] == [[("ulcers", "Disease")], []]
    assert [t.ent_iob_ for t in docs[0]] == ["O", "O", "B"]  # the dropped chemical is outside, not missing
    mix.write_text("types: [Disease]\ncorpora:\n  - path: c\n    label_map: {Disease: Disease}\n")
    m = mixes.load_mix(mix, corpora_dir=tmp_path)
    with pytest.raises(CorpusConfigError, match="types Chemical are not in its label map; map each"):
        mixes.corpus_docs(m.corpora[0], "train", vocab=spacy.blank("en").vocab)


@pytest.mark.parametrize("text, match", [
    ("types: Gene\ncorpora: [{path: c}]\n", "`types` must be a list"),
    ("types: [Gene]\ncorpora: []\n", "`corpora` must be a non-empty list"),
    ("types: [Gene]\ntemperature: -1\ncorpora: [{path: c}]\n", "temperature must be >= 0"),
    ("types: [Gene]\ncorpora: [{path: c, label_map: {GENE: null}}]\n", "annotates none of the mix's types"),
    ("types: [Gene]\ncorpora: [{path: c, label_map: nowhere}]\n", "label map 'nowhere' is not in"),
    ("types: [Gene]\ncorpora: [{path: c, annotates: [Chemical]}]\n", "`annotates` must list types"),
    ("types: [Gene]\ncorpora: [{path: c, wieght: 2}]\n", "unknown keys wieght"),
    ("types: [Gene]\ncorpora: [{path: c, annotates: [Gene]}, {path: c, annotates: [Gene]}]\n",
     "corpus names must be unique"),
    ("types: [Gene]\ncorpora: [{path: c}]\n", "give its label_map .* or the types it annotates"),
    ("types: [Gene\n", "not valid YAML"),
])
def test_bad_mix_files_are_one_line_errors(tmp_path, text, match):
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(CorpusConfigError, match=match):
        mixes.load_mix(path, corpora_dir=tmp_path)


def test_missing_corpus_folder_names_the_fix(mix_file, tmp_path):
    with pytest.raises(CorpusConfigError, match="not found .*corpora_dir, --corpora-dir or BIONER_CORPORA"):
        list(read(mix_file, tmp_path / "elsewhere", split="train"))


def test_sampling_probabilities_follow_the_temperature():
    assert mixes.sampling_probabilities([100, 400], [1, 1], temperature=1.0) == pytest.approx([0.2, 0.8])
    assert mixes.sampling_probabilities([100, 400], [1, 1], temperature=0.5) == pytest.approx([1 / 3, 2 / 3])
    assert mixes.sampling_probabilities([100, 400], [1, 1], temperature=0.0) == pytest.approx([0.5, 0.5])
    assert mixes.sampling_probabilities([100, 400], [3, 1], temperature=0.0) == pytest.approx([0.75, 0.25])
    assert mixes.sampling_probabilities([0, 400], [1, 1], temperature=0.0) == pytest.approx([0.0, 1.0])
    with pytest.raises(CorpusConfigError, match="no training Examples"):
        mixes.sampling_probabilities([0, 0], [1, 1], temperature=1.0)


@pytest.mark.parametrize("temperature, expected", [(1.0, 4 / 20), (0.5, 2 / 6), (0.0, 0.5)])
def test_training_stream_samples_by_size_to_the_temperature(mix_file, tmp_path, temperature, expected):
    """genes: 4 Docs, cdr: 16 Docs; a long training pass draws genes with probability 4^T / (4^T + 16^T)."""
    stream = list(read(mix_file, tmp_path, split="train", temperature=temperature, epoch_size=4000, seed=1))
    share = sum(mixes.annotated_types(eg.reference) == ["Gene"] for eg in stream) / len(stream)
    assert share == pytest.approx(expected, abs=0.03)


def test_each_training_pass_draws_afresh_and_is_seeded(mix_file, tmp_path):
    reader = spacy.registry.resolve({"r": {"@readers": "spacy_bioner.MixedCorpus.v1", "path": str(mix_file),
                                           "corpora_dir": str(tmp_path / "corpora"), "epoch_size": 50}})["r"]
    nlp = spacy.blank("en")
    first, second = ([eg.reference.text for eg in reader(nlp)] for _ in range(2))
    assert len(first) == 50 and first != second  # a new draw per pass (epoch)
    again = spacy.registry.resolve({"r": {"@readers": "spacy_bioner.MixedCorpus.v1", "path": str(mix_file),
                                          "corpora_dir": str(tmp_path / "corpora"), "epoch_size": 50}})["r"]
    assert [eg.reference.text for eg in again(nlp)] == first  # the same seed draws the same stream


def test_standoff_corpus_split_by_document(tmp_path):
    folder = tmp_path / "brat"
    folder.mkdir()
    for i in range(10):
        (folder / f"d{i}.txt").write_text(f"HeLa cells and mice {i}.\n")
        (folder / f"d{i}.ann").write_text("T1\tCellLine 0 4\tHeLa\nT2\tSpecies 15 19\tmice\n")
    mix = tmp_path / "m.yml"
    mix.write_text("types: [CellLine, Species]\ncorpora:\n  - path: brat\n    format: brat\n    split: [0.6, 0.1, 0.3]\n"
                   "    annotates: [CellLine, Species]\n")
    m = mixes.load_mix(mix, corpora_dir=tmp_path)
    vocab = spacy.blank("en").vocab
    sizes = {s: len(mixes.corpus_docs(m.corpora[0], s, vocab=vocab)) for s in mixes.SPLITS}
    assert sum(sizes.values()) == 10 and sizes["train"] >= 5 and sizes["test"] >= 2
    doc = mixes.corpus_docs(m.corpora[0], "test", vocab=vocab)[0]
    assert [(e.text, e.label_) for e in doc.ents] == [("HeLa", "CellLine"), ("mice", "Species")]


def test_mix_summary_names_corpora_sizes_and_probabilities(mix_file, tmp_path):
    m = mixes.load_mix(mix_file, corpora_dir=tmp_path / "corpora")
    summary = mixes.mix_summary(m, vocab=spacy.blank("en").vocab)
    assert summary["mix"] == "tiny" and summary["temperature"] == 0.5
    rows = {r["name"]: r for r in summary["corpora"]}
    assert rows["genes"]["sentences"] == {"train": 4, "dev": 4, "test": 4} and rows["genes"]["deduped"] == 0
    assert rows["cdr"]["annotates"] == ["Chemical", "Disease"]
    assert rows["genes"]["probability"] == pytest.approx(2 / 6)


# ------------------------------------------------------------------------------ the shipped mixes
SHIPPED = sorted(p.stem for p in MIX_DIR.glob("*.yml") if p.stem != "label_maps")


def corpus_types(corpus: mixes.MixCorpus):
    """Entity types in a corpus's files, read from the tag column (or brat's T lines) without building Docs."""
    found = set()
    if corpus.format == "brat":
        for ann in corpus.path.glob("*.ann"):
            found |= {line.split("\t")[1].split()[0] for line in ann.read_text(encoding="utf8").splitlines()
                      if line.startswith("T")}
        return found
    for split in mixes.SPLITS:
        path = mixes.split_file(corpus, split)
        if path is None:
            continue
        for line in path.read_text(encoding="utf8").splitlines():
            tag = line.rsplit("\t", 1)[-1] if "\t" in line else ""
            if tag[:2] in ("B-", "I-", "S-", "E-"):
                found.add(tag[2:])
            elif tag in ("B", "I"):
                found.add("ENTITY")
    return found


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_mix_loads_and_maps_every_type_of_its_corpora(name):
    if not SHARED.is_dir():
        pytest.skip("../shared/corpora is not here")
    mix = mixes.load_mix(name, corpora_dir=SHARED)
    assert mix.path == MIX_DIR / f"{name}.yml"
    held_out = {"BioNLP13CG", "CRAFT"}
    names = {c.name for c in mix.corpora}
    assert (names <= held_out) if name == "huner-heldout" else not (names & held_out)
    for corpus in mix.corpora:
        assert corpus.path.exists(), corpus.path
        unmapped = corpus_types(corpus) - set(corpus.label_map)
        assert not unmapped, f"{name}: {corpus.name}: {unmapped} not in its label map"
        assert set(corpus.annotates) <= set(mix.types)
        assert corpus.split or mixes.split_file(corpus, "test") is not None


def test_huner_mix_covers_every_type_with_its_corpora():
    if not SHARED.is_dir():
        pytest.skip("../shared/corpora is not here")
    mix = mixes.load_mix("huner", corpora_dir=SHARED)
    by_type = collections.defaultdict(list)
    for c in mix.corpora:
        for t in c.annotates:
            by_type[t].append(c.name)
    assert set(by_type) == {"Gene", "Chemical", "Disease", "Species", "CellLine"}
    assert by_type["CellLine"] == ["JNLPBA", "CellFinder"] and "BC5CDR" in by_type["Chemical"]
    for t in by_type:
        one = mixes.load_mix(f"huner-{t.lower()}", corpora_dir=SHARED)
        assert one.types == [t] and [c.name for c in one.corpora] == by_type[t]


def test_unknown_mix_name_lists_the_shipped_ones():
    with pytest.raises(CorpusConfigError, match="huner-gene"):
        mixes.load_mix("hunner")


def test_train_from_a_mix_with_partial_labels_records_the_mix(mix_file, tmp_path, tiny):
    import json

    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    out = tmp_path / "run"
    result = CliRunner().invoke(app, [
        "train", "transformer", "--head", "tagger", "--mix", str(mix_file), "--partial-labels", "partial",
        "-o", str(out), "--paths.backbone", str(tiny["bert"]), "--training.max_steps", "2",
        "--training.eval_frequency", "2", "--training.logger.progress_bar", "false",
        "--corpora.train.corpora_dir", str(tmp_path / "corpora"), "--corpora.dev.corpora_dir", str(tmp_path / "corpora")])
    assert result.exit_code == 0, result.output
    record = json.loads((out / "run.json").read_text())
    assert record["mix"]["mix"] == "tiny" and [c["name"] for c in record["mix"]["corpora"]] == ["genes", "cdr"]
    assert record["mix"]["corpora"][1]["sentences"]["test"] == 16
    config = spacy.util.load_config(out / "config.cfg")
    assert config["components"]["bioner_tagger"]["partial_labels"] == "partial"
    nlp = spacy.load(out / "model-best")
    assert set(nlp.get_pipe("bioner_tagger").labels) == {"Gene", "Chemical", "Disease"}


def test_partial_labels_need_the_tagger_head(mix_file):
    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    result = CliRunner().invoke(app, ["config", "transformer", "/tmp/never.cfg", "--head", "ner",
                                      "--mix", str(mix_file), "--partial-labels", "partial"])
    assert result.exit_code != 0 and "--partial-labels needs the bioner_tagger head" in result.output
    assert "Traceback" not in result.output


@pytest.fixture
def ruler(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "Gene", "pattern": "BRCA1"},
                                               {"label": "Disease", "pattern": "ulcers"},
                                               {"label": "Chemical", "pattern": "aspirin"}])
    nlp.to_disk(tmp_path / "ruler")
    return tmp_path / "ruler"


def test_each_corpus_is_scored_only_on_the_types_it_annotates(ruler, tmp_path):
    from spacy_bioner.evaluation.crosscorpus import evaluate_mix, mix_table

    write_corpus(tmp_path / "corpora" / "dis", [[("BRCA1", "O"), ("causes", "O"), ("ulcers", "B-Disease")]])
    write_corpus(tmp_path / "corpora" / "genes", [[("BRCA1", "B-GENE"), ("and", "O"), ("aspirin", "O")]])
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Gene, Chemical, Disease]\ncorpora:\n  - {name: dis, path: dis, annotates: [Disease]}\n"
                   "  - {name: genes, path: genes, label_map: {GENE: Gene}}\n")
    result = evaluate_mix(ruler, mix, corpora_dir=tmp_path / "corpora", n_bootstrap=10)
    dis, genes = result["corpora"]["dis"], result["corpora"]["genes"]
    # the ruler's correct gene in the disease-only corpus, and its chemical in the gene-only one, are set aside
    assert dis["types"] == ["Disease"] and dis["strict"]["p"] == 1.0 and dis["n_pred"] == 1
    assert genes["strict"] == {"p": 1.0, "r": 1.0, "f": 1.0} and genes["per_type"]["Gene"]["support"] == 1
    assert result["macro"] == {"strict": 1.0, "lenient": 1.0}
    assert "| dis | Disease | 100.00 | 100.00 | 1 |" in mix_table(result)


def test_evaluate_cli_takes_a_mix_file(ruler, tmp_path):
    import json

    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    write_corpus(tmp_path / "corpora" / "dis", [[("ulcers", "B-Disease"), ("and", "O"), ("aspirin", "O")]])
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Disease]\ncorpora:\n  - {name: dis, path: dis, annotates: [Disease]}\n")
    result = CliRunner().invoke(app, ["evaluate", str(ruler), str(mix), "--corpora-dir", str(tmp_path / "corpora"),
                                      "-o", str(tmp_path / "m.json"), "-r", str(tmp_path / "r.md"),
                                      "--bootstrap", "10"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m.json").read_text())["corpora"]["dis"]["strict"]["f"] == 1.0
    assert "| dis | all |" in (tmp_path / "r.md").read_text()
    bad = CliRunner().invoke(app, ["evaluate", str(ruler), str(tmp_path / "nowhere.yml")])
    assert bad.exit_code != 0 and "no such mix file" in bad.output and "Traceback" not in bad.output


def test_training_sentences_found_in_a_test_split_are_left_out(tmp_path):
    write_corpus(tmp_path / "a", CDR, splits=("train", "dev"))
    (tmp_path / "a" / "test.tsv").write_text("x\tO\n\n")
    write_corpus(tmp_path / "b", CDR[:1], splits=("test",))  # b's test sentence is a's first training sentence
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Chemical, Disease]\ncorpora:\n  - {path: a, annotates: [Chemical, Disease]}\n"
                   "  - {path: b, annotates: [Disease], splits: {train: null, dev: null, test: test}}\n")
    m = mixes.load_mix(mix, corpora_dir=tmp_path)
    vocab = spacy.blank("en").vocab
    kept, dropped = mixes.training_docs(m, m.corpora[0], vocab=vocab)
    assert [d.text for d in kept] == ["ibuprofen is safe"] and dropped == 1
    m.dedupe = False
    assert len(mixes.training_docs(m, m.corpora[0], vocab=vocab)[0]) == 2


def test_documents_are_cut_into_sentences(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "train.tsv").write_text("-DOCSTART-\tO\n\nBRCA1\tB-GENE\nbinds\tO\n\nTP53\tB-GENE\nto\tO\n\n")
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Gene]\ncorpora:\n  - {path: docs, label_map: {GENE: Gene}, splits: {train: train, dev: null, test: null}}\n")
    m = mixes.load_mix(mix, corpora_dir=tmp_path)
    docs = mixes.corpus_docs(m.corpora[0], "train", vocab=spacy.blank("en").vocab)
    assert [d.text.strip() for d in docs] == ["BRCA1 binds", "TP53 to"]
    assert all(mixes.annotated_types(d) == ["Gene"] and len(d.ents) == 1 for d in docs)


def test_map_targets_outside_the_mix_must_be_declared(tmp_path):
    write_corpus(tmp_path / "c", CDR)
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Disease]\ncorpora:\n  - path: c\n    label_map: {Chemical: Chemical, Disease: Disease}\n")
    with pytest.raises(CorpusConfigError, match="produces Chemical, neither a type of the mix"):
        mixes.load_mix(mix, corpora_dir=tmp_path)
    mix.write_text("types: [Disease]\nother_types: [Chemical]\ncorpora:\n"
                   "  - path: c\n    label_map: {Chemical: Chemical, Disease: Disease}\n")
    assert mixes.load_mix(mix, corpora_dir=tmp_path).corpora[0].label_map == {"Chemical": None, "Disease": "Disease"}


def test_types_a_corpus_does_not_annotate_are_dropped_from_its_gold(tmp_path):
    write_corpus(tmp_path / "c", CDR)
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Chemical, Disease]\ncorpora:\n  - path: c\n    label_map: {Chemical: Chemical, "
                   "Disease: Disease}\n    annotates: [Disease]\n")
    m = mixes.load_mix(mix, corpora_dir=tmp_path)
    docs = mixes.corpus_docs(m.corpora[0], "test", vocab=spacy.blank("en").vocab)
    assert [[e.label_ for e in d.ents] for d in docs] == [["Disease"], []]


def test_a_missing_split_file_is_an_error_naming_the_fix(tmp_path):
    write_corpus(tmp_path / "c", CDR, splits=("train", "test"))
    mix = tmp_path / "m.yml"
    mix.write_text("types: [Disease]\ncorpora:\n  - {path: c, annotates: [Disease]}\n")
    m = mixes.load_mix(mix, corpora_dir=tmp_path)
    with pytest.raises(CorpusConfigError, match="no dev.* file in .* dev: null if it has none"):
        mixes.corpus_docs(m.corpora[0], "dev", vocab=spacy.blank("en").vocab)


def test_training_on_a_mix_streams_and_scores_dev_on_annotated_types(mix_file):
    from spacy_bioner.training.config import build_config

    config = build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", mix=str(mix_file))
    assert config["training"]["max_epochs"] == -1  # every pass a new draw
    assert config["components"]["bioner_tagger"]["scorer"] == {"@scorers": "spacy_bioner.annotated_ner_scorer.v1"}
    assert config["corpora"]["dev"]["@readers"] == "spacy_bioner.MixedCorpus.v1"


def test_annotated_ner_scorer_ignores_types_a_corpus_does_not_annotate():
    from spacy.tokens import Doc
    from spacy.training import Example

    nlp = spacy.blank("en")
    words = ["BRCA1", "causes", "ulcers"]
    gold = Doc(nlp.vocab, words=words, ents=["O", "O", "B-Disease"])
    pred = Doc(nlp.vocab, words=words, ents=["B-Gene", "O", "B-Disease"])
    scorer = spacy.registry.resolve({"s": {"@scorers": "spacy_bioner.annotated_ner_scorer.v1"}})["s"]
    assert scorer([Example(pred, gold)])["ents_p"] == 0.5  # not from a mix: every type counts
    gold.user_data[mixes.ANNOTATES] = ["Disease"]
    assert scorer([Example(pred, gold)])["ents_p"] == 1.0


def test_evaluate_takes_a_shipped_mix_by_name(ruler, tmp_path):
    import json

    from typer.testing import CliRunner

    from spacy_bioner.cli import app

    if not SHARED.is_dir():
        pytest.skip("../shared/corpora is not here")
    result = CliRunner().invoke(app, ["evaluate", str(ruler), "huner-heldout", "--corpora-dir", str(SHARED),
                                      "--corpora", "BioNLP13CG", "--limit", "30", "--bootstrap", "5",
                                      "-o", str(tmp_path / "m.json")])
    assert result.exit_code == 0, result.output
    scored = json.loads((tmp_path / "m.json").read_text())["corpora"]
    assert list(scored) == ["BioNLP13CG"] and scored["BioNLP13CG"]["types"] == ["Chemical", "Disease", "Gene", "Species"]


@pytest.mark.parametrize("base,head", [("tok2vec", None), ("transformer", "tagger")])
def test_heads_know_every_type_though_spacy_initializes_a_stream_from_100_examples(tmp_path, tiny, base, head):
    """spaCy initializes from the first 100 Examples of a streamed corpus: a rare type must not be lost."""
    from spacy.training.initialize import init_nlp

    from spacy_bioner.training.config import build_config

    write_corpus(tmp_path / "corpora" / "genes", GENES * 300)
    write_corpus(tmp_path / "corpora" / "cells", [[("HeLa", "B-CellLine"), ("cells", "O")]])
    path = tmp_path / "mix.yml"
    path.write_text("name: rare\ntypes: [Gene, CellLine]\ncorpora_dir: corpora\ndedupe: false\ncorpora:\n"
                    "  - name: genes\n    path: genes\n    label_map: {GENE: Gene}\n"
                    "  - name: cells\n    path: cells\n    label_map: {CellLine: CellLine}\n    weight: 0.0001\n",
                    encoding="utf8")
    corpora = str(tmp_path / "corpora")
    overrides = {"corpora.train.corpora_dir": corpora, "corpora.dev.corpora_dir": corpora}
    if base == "transformer":
        overrides["paths.backbone"] = str(tiny["bert"])
    nlp = init_nlp(build_config(base, head=head, mix=str(path), overrides=overrides))
    name = "bioner_tagger" if head == "tagger" else "ner"
    assert set(nlp.get_pipe(name).labels) == {"Gene", "CellLine"}
