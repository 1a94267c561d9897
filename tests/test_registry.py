"""Every entry point the package declares resolves through spaCy's registry."""
from importlib.metadata import distribution

import pytest
import spacy
from spacy.language import Language

GROUPS = {
    "spacy_readers": "readers",
    "spacy_architectures": "architectures",
    "spacy_scorers": "scorers",
    "spacy_misc": "misc",
    "spacy_augmenters": "augmenters",
    "spacy_loggers": "loggers",
    "spacy_batchers": "batchers",
    "spacy_span_getters": "span_getters",
    "thinc_schedules": "schedules",
    "thinc_layers": "layers",
}


def entry_points():
    eps = distribution("spacy-bioner").entry_points
    return [ep for ep in eps if ep.group.startswith(("spacy_", "thinc_"))]


def test_package_declares_entry_points():
    names = {ep.name for ep in entry_points()}
    assert {"spacy_bioner.IOBCorpus.v1", "spacy_bioner.TransformerModel.v1", "spacy_bioner.subword_windows.v1",
            "spacy_bioner.batch_by_sentences.v1", "spacy_bioner.warmup_linear_fraction.v1"} <= names
    factories = {ep.name for ep in entry_points() if ep.group == "spacy_factories"}
    assert "bioner_tagger" in factories
    for name in names - factories:
        assert name.startswith("spacy_bioner") and ".v" in name, f"{name}: must be namespaced and versioned"
    for name in factories:  # factories are named like spaCy's own ("ner"), with the project's prefix
        assert name.startswith("bioner_"), f"{name}: factories start with bioner_"


@pytest.mark.parametrize("ep", entry_points(), ids=lambda ep: f"{ep.group}:{ep.name}")
def test_entry_point_resolves(ep):
    if ep.group == "spacy_factories":
        assert spacy.util.registry._entry_point_factories.get(ep.name) is ep.load()  # spaCy's entry-point lookup
        spacy.blank("en")  # a Language loads the factory entry points
        assert Language.has_factory(ep.name)
        return
    import spacy_transformers  # noqa: F401  (adds the span_getters registry)

    func = spacy.registry.get(GROUPS[ep.group], ep.name)
    assert func is ep.load()


def test_reader_in_config(write, tmp_path):
    from spacy.util import load_model_from_config
    from thinc.api import Config

    path = write("a\tB-X\nb\tO\n\n")
    cfg = Config().from_str(
        f"""
[nlp]
lang = "en"
pipeline = []
[components]
[corpora]
[corpora.train]
@readers = "spacy_bioner.IOBCorpus.v1"
path = "{path}"
"""
    )
    nlp = spacy.blank("en")
    reader = spacy.registry.resolve({"r": cfg["corpora"]["train"]})["r"]
    examples = list(reader(nlp))
    assert len(examples) == 1
    assert [t.text for t in examples[0].predicted] == ["a", "b"]
    assert [(e.text, e.label_) for e in examples[0].reference.ents] == [("a", "X")]
    del load_model_from_config
