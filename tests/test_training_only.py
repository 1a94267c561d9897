"""Training-only components (``bioner_adversarial``) stay out of saved pipelines, and the
pipeline being trained (and its training config) keeps them."""
import json
import subprocess
import sys

import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config, registry
from thinc.api import Config

from spacy_bioner.corpus.conll import read_docs
from spacy_bioner.training.callbacks import CALLBACK, drop_training_only, strip_config, training_only_components
from spacy_bioner.training.config import build_config, fit_schedule

from .conftest import PROJECT

NAME = "bioner_adversarial"
#: Loads a pipeline with the adversarial component's module (and this callback's) unimportable and
#: their entry points gone, as on a machine whose spacy-bioner has neither.
LOAD_WITHOUT_FACTORY = """
import sys
from importlib.metadata import EntryPoints
import catalogue
BLOCKED = ("spacy_bioner.pipeline.adversarial", "spacy_bioner.training.callbacks")
for module in BLOCKED:
    sys.modules[module] = None
found = catalogue.AVAILABLE_ENTRY_POINTS
found = [ep for group in found.groups for ep in found.select(group=group)]
catalogue.AVAILABLE_ENTRY_POINTS = EntryPoints(ep for ep in found if not ep.value.startswith(BLOCKED))
import spacy
assert "bioner_adversarial" not in spacy.registry.factories.get_all()
nlp = spacy.load(sys.argv[1])
doc = nlp("BRCA1 mutations cause hereditary breast cancer .")
print(",".join(nlp.pipe_names))
print(len(list(doc.ents)))
"""


def config_for(tiny, train_file, **overrides):
    return build_config(PROJECT / "configs" / "transformer.cfg", head="tagger", adversarial="fgsm", overrides={
        "paths.backbone": str(tiny["bert"]), "paths.train": str(train_file), "paths.dev": str(train_file),
        **overrides})


def test_training_saves_checkpoints_without_the_adversarial_component(tiny, train_file, tmp_path):
    from spacy_bioner.training.run import run_training

    config = config_for(tiny, train_file, **{"training.max_steps": 3, "training.eval_frequency": 2,
                                             "training.logger.progress_bar": False})
    record = run_training(config, tmp_path / "out")
    # the run kept training adversarially after the first checkpoint (step 0) was written
    assert record.final_losses.get(NAME, 0) > 0
    training_config = Config().from_disk(tmp_path / "out" / "config.cfg", interpolate=False)
    assert NAME in training_config["nlp"]["pipeline"]  # resuming from the training config is adversarial
    assert training_config["training"]["before_to_disk"]["@callbacks"] == CALLBACK
    for model in (record.model_best, record.model_last):
        text = (tmp_path / "out" / model / "config.cfg").read_text(encoding="utf8")
        assert NAME not in text and CALLBACK not in text
        saved = Config().from_str(text, interpolate=False)
        assert saved["nlp"]["pipeline"] == ["transformer", "bioner_tagger", "doc_cleaner"]
        assert saved["training"]["before_to_disk"] is None
        meta = json.loads((tmp_path / "out" / model / "meta.json").read_text(encoding="utf8"))
        assert NAME not in meta["pipeline"] and NAME not in meta["components"]
        assert not (tmp_path / "out" / model / NAME).exists()
    loaded = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_FACTORY, record.model_best],
                            capture_output=True, text=True, cwd=tmp_path)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert loaded.stdout.split()[0] == "transformer,bioner_tagger,doc_cleaner"


def test_before_to_disk_leaves_the_training_pipeline_whole(tiny, train_file, tmp_path):
    spacy.util.fix_random_seed(0)
    config, _ = fit_schedule(config_for(tiny, train_file, **{"training.max_steps": 10}))
    nlp = load_model_from_config(config, auto_fill=True, validate=True)
    examples = [Example(Doc(nlp.vocab, words=[t.text for t in d]), d) for d in read_docs(train_file, vocab=nlp.vocab)]
    optimizer = nlp.initialize(lambda: examples)
    callback = registry.resolve({"c": config["training"]["before_to_disk"]})["c"]
    saved = callback(nlp)
    assert saved is not nlp and NAME not in saved.pipe_names and NAME not in saved.component_names
    assert saved.get_pipe("transformer") is nlp.get_pipe("transformer")  # shared, nothing copied
    saved.to_disk(tmp_path / "model")
    assert NAME in nlp.pipe_names and NAME in nlp.config["components"]
    assert nlp.config["training"]["before_to_disk"]["@callbacks"] == CALLBACK
    assert NAME not in (tmp_path / "model" / "config.cfg").read_text(encoding="utf8")
    losses = {}
    nlp.update(examples, sgd=optimizer, losses=losses)  # training goes on, still adversarial
    assert losses[NAME] > 0
    assert drop_training_only(saved) is saved  # nothing left to drop
    texts = ["BRCA1 mutations cause hereditary breast cancer .", "TP53 is mutated in ovarian carcinoma ."]
    loaded = spacy.load(tmp_path / "model")
    assert loaded.pipe_names == ["transformer", "bioner_tagger", "doc_cleaner"]
    before = [[(e.start, e.end, e.label_) for e in doc.ents] for doc in saved.pipe(texts)]
    assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in loaded.pipe(texts)] == before


def test_strip_config_removes_every_reference():
    config = Config().from_str(f"""
[nlp]
lang = "en"
pipeline = ["transformer", "ner", "{NAME}", "doc_cleaner"]
disabled = ["{NAME}"]

[components]

[components.ner]
factory = "ner"

[components.{NAME}]
factory = "{NAME}"

[training]
frozen_components = ["{NAME}"]
annotating_components = ["ner", "{NAME}"]

[training.before_to_disk]
@callbacks = "{CALLBACK}"

[training.before_to_disk.then]
@callbacks = "my.callback.v1"

[initialize]

[initialize.components]

[initialize.components.{NAME}]
x = 1
""", interpolate=False)
    assert training_only_components(config) == [NAME]
    out = strip_config(config, [NAME])
    assert NAME not in out.to_str()
    assert out["nlp"]["pipeline"] == ["transformer", "ner", "doc_cleaner"] and out["nlp"]["disabled"] == []
    assert out["training"]["annotating_components"] == ["ner"]
    assert out["training"]["before_to_disk"] == {"@callbacks": "my.callback.v1"}
    assert NAME in config["components"]  # the input is left alone


@pytest.mark.parametrize("own", [None, {"@callbacks": "my.callback.v1", "x": 1}])
def test_adversarial_config_wraps_the_configs_own_before_to_disk(own):
    base = build_config(PROJECT / "configs" / "transformer.cfg", head="tagger")
    base["training"]["before_to_disk"] = own
    from spacy_bioner.training.config import add_adversarial, resolve_config_path

    merged = add_adversarial(base, Config().from_disk(resolve_config_path("fgsm", kind="adversarial"),
                                                      interpolate=False))
    hook = merged["training"]["before_to_disk"]
    assert hook["@callbacks"] == CALLBACK
    assert hook.get("then") == own
