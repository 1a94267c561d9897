"""Every function spacy-bioner registers is declared as an entry point (in setup.cfg and in the installed
distribution), and every declared entry point resolves to the very object the registry holds."""
import configparser
import functools
import importlib
import pkgutil
from importlib.metadata import EntryPoint, distribution

import catalogue
import pytest
import spacy
from spacy.language import Language

import spacy_bioner

from .conftest import PROJECT

#: Optional dependencies (setup.cfg extras): a module that needs a missing one is skipped, nothing else is.
OPTIONAL = {"ray", "cupy", "cupy_backends", "accelerate"}
#: Entry-point groups that are not registries.
NOT_REGISTRIES = {"console_scripts"}


def import_every_module():
    """Import every spacy_bioner module (so each registration decorator runs); return the ones skipped
    because an optional dependency is missing, as {module: missing package}."""
    skipped = {}
    for info in pkgutil.walk_packages(spacy_bioner.__path__, "spacy_bioner."):
        if info.name.endswith(".__main__"):
            continue  # runs the CLI
        try:
            importlib.import_module(info.name)
        except ModuleNotFoundError as err:
            if (err.name or "").split(".")[0] not in OPTIONAL:
                raise
            skipped[info.name] = err.name
    return skipped


def group_of(namespace):
    """The entry-point group read for a registry namespace: ("spacy", "misc") → "spacy_misc"; spaCy keeps
    factories in ("spacy", "internal_factories") and reads their entry points from "spacy_factories"."""
    if tuple(namespace) == spacy.registry.factories.namespace:
        return spacy.util.registry._entry_point_factories.entry_point_namespace
    return "_".join(namespace)


@functools.lru_cache(maxsize=None)
def registered_by_the_package():
    """{(group, name): function} for every registry entry that is spacy-bioner's: a name in its namespace,
    or a function defined in it (factories are named ``bioner_*``)."""
    import spacy_transformers  # noqa: F401  (creates the span_getters registry)

    import_every_module()
    found = {}
    for (*namespace, name), func in list(catalogue.REGISTRY.items()):
        if name.startswith("spacy_bioner.") or getattr(func, "__module__", "").startswith("spacy_bioner"):
            found[(group_of(namespace), name)] = func
    return found


def installed_entry_points():
    return {(ep.group, ep.name): ep for ep in distribution("spacy-bioner").entry_points}


def declared_in_setup_cfg():
    """{(group, name): "module:attr"} from setup.cfg's [options.entry_points]."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep the case of names
    parser.read(PROJECT / "setup.cfg", encoding="utf8")
    declared = {}
    for group, lines in parser["options.entry_points"].items():
        for line in filter(None, (line.strip() for line in lines.splitlines())):
            name, _, value = line.partition("=")
            declared[(group, name.strip())] = value.strip()
    return declared


def registry_entry_points():
    return [ep for (group, _), ep in sorted(installed_entry_points().items()) if group not in NOT_REGISTRIES]


def test_the_package_registers_what_we_expect():
    """A floor, so that a broken import walk (finding nothing) cannot pass the tests below."""
    names = {name for _, name in registered_by_the_package()}
    assert {"bioner_tagger", "bioner_adversarial", "spacy_bioner.IOBCorpus.v1", "spacy_bioner.TransformerModel.v4",
            "spacy_bioner.subword_windows.v1", "spacy_bioner.subword_pooling.v1",
            "spacy_bioner.batch_by_sentences.v1", "spacy_bioner.warmup_linear_fraction.v1"} <= names


def test_every_registered_function_is_an_entry_point():
    registered = registered_by_the_package()
    cfg = declared_in_setup_cfg()
    installed = {key: ep.value for key, ep in installed_entry_points().items()}
    missing_cfg = sorted(f"{group}: {name}" for group, name in registered if (group, name) not in cfg)
    assert not missing_cfg, f"registered but not declared in setup.cfg [options.entry_points]: {missing_cfg}"
    missing_installed = sorted(f"{group}: {name}" for group, name in registered if (group, name) not in installed)
    assert not missing_installed, f"not in the installed metadata (reinstall: pip install -e .): {missing_installed}"
    for (group, name), func in registered.items():
        assert EntryPoint(name, cfg[(group, name)], group).load() is func, f"{group}: {name} points elsewhere"


def test_installed_metadata_matches_setup_cfg():
    """A stale install (setup.cfg changed, `pip install -e .` not re-run) leaves spaCy reading old entry points."""
    installed = {key: ep.value for key, ep in installed_entry_points().items()}
    assert installed == declared_in_setup_cfg()


def test_entry_point_names_are_namespaced_and_versioned():
    assert len(registry_entry_points()) >= 8  # not vacuous
    for ep in registry_entry_points():
        if ep.group == "spacy_factories":  # factories are named like spaCy's own ("ner"), with the project's prefix
            assert ep.name.startswith("bioner_"), f"{ep.name}: factories start with bioner_"
        else:
            assert ep.name.startswith("spacy_bioner.") and ".v" in ep.name, f"{ep.name}: namespaced and versioned"


@pytest.mark.parametrize("ep", registry_entry_points(), ids=lambda ep: f"{ep.group}:{ep.name}")
def test_entry_point_resolves(ep):
    try:
        func = ep.load()
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] in OPTIONAL:
            pytest.skip(f"{ep.value} needs the optional {err.name}")
        raise
    assert callable(func)
    registered = registered_by_the_package()
    assert registered.get((ep.group, ep.name)) is func, f"{ep.group}: {ep.name} is not what the registry holds"
    if ep.group == "spacy_factories":
        assert spacy.util.registry._entry_point_factories.get(ep.name) is func  # spaCy's entry-point lookup
        spacy.blank("en")  # a Language loads the factory entry points
        assert Language.has_factory(ep.name)


def test_reader_in_config(write, tmp_path):
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
