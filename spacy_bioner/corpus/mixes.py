"""Corpus mixes: several corpora, their labels mapped onto one type set, sampled by size with a temperature.

A mix file (YAML) names the corpora and, for each, a label map onto the mix's
types (source type → target type, or null to drop it), the target types that
corpus annotates (default: those its map produces), a weight, and where its
splits are. Shipped mixes are in ``configs/mixes/`` (``huner.yml`` and one per
type); their label maps, each decision with its source, are in
``configs/mixes/label_maps.yml``::

    name: huner
    types: [Gene, Chemical, Disease, Species, CellLine]
    temperature: 0.5            # training draws corpus i with probability ∝ weight_i × size_i ** T
    corpora_dir: ../shared/corpora
    label_maps: label_maps.yml  # relative to the mix file
    corpora:
      - name: BC2GM
        path: MTL-BC2GM-IOB     # relative to corpora_dir, absolute, or asset:NAME (the project's assets/)
        label_map: BC2GM        # a key of label_maps, or an inline mapping
      - name: JNLPBA
        path: MTL-JNLPBA
        splits: {train: dev, test: test}   # the file each split reads (this corpus has no train file)
      - name: CellFinder
        path: CellFinder-brat   # standoff: converted as `convert` does, split by document
        split: [0.6, 0.1, 0.3]

Every Example a mix yields is one sentence (documents with sentence boundaries
are cut into them, so sizes and draws count sentences) and carries the types its
corpus annotates, in ``doc.user_data["bioner.annotates"]`` of both its Docs
(:func:`annotated_types`): the ``partial`` loss and the dev scorer read it, and
per-corpus scoring is restricted to it. Its corpus's name is in
``doc.user_data["bioner.corpus"]`` (a ``task_prompt.v3`` prompt may name it). A training sentence that also occurs in
a test split of the mix is left out (``dedupe``, on by default). A corpus type its
label map does not mention, or maps to a type that is neither the mix's nor in
its ``other_types``, is an error naming the fix, never silently dropped.
"""
import os
import random
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..errors import CorpusConfigError
from ..types import CorpusReader
from .sentences import input_copy

#: ``doc.user_data`` key holding the types a Doc's corpus annotates (a sorted list of labels).
ANNOTATES = "bioner.annotates"
#: ``Doc.user_data`` key: the types a training window's task prompt asked for (set by the transformer's
#: training pass, read by the tagger's loss; see :mod:`spacy_bioner.models.prompts`).
PROMPTED = "bioner.prompted"
#: ``doc.user_data`` key holding the name of the mix corpus a Doc comes from.
CORPUS = "bioner.corpus"
#: ``Doc.user_data`` key: the corpus a training window's task prompt named ("" when it named none).
PROMPTED_CORPUS = "bioner.prompted_corpus"
#: What a Doc carries from its mix corpus, kept by every copy of it (sentences, Examples, augmented ones).
CORPUS_KEYS = (ANNOTATES, CORPUS)
SPLITS = ("train", "dev", "test")
#: Environment variable that overrides a mix's ``corpora_dir``.
CORPORA_ENV = "BIONER_CORPORA"
#: Suffixes tried for a split file inside a corpus folder, in order.
SPLIT_SUFFIXES = (".spacy", ".tsv", ".iob", ".iob2", ".conll", ".txt")


@dataclass
class MixCorpus:
    """One corpus of a mix.

    name (str): short name (rows of tables, the run record).
    path (Path): folder (split files or standoff documents) or file.
    label_map (Dict[str, Optional[str]]): source type → target type (None: dropped).
    annotates (List[str]): target types this corpus annotates.
    weight (float): sampling weight (× size ** temperature).
    splits (Dict[str, Optional[str]]): split → file stem inside ``path`` (None: the corpus has no such split).
    split (Optional[List[float]]): for a corpus without split files: shares of train/dev/test, by document.
    format (Optional[str]): standoff format (``brat``, ``pubtator``, ``bioc``); None: token-per-line or DocBin.
    """

    name: str
    path: Path
    label_map: Dict[str, Optional[str]]
    annotates: List[str]
    weight: float = 1.0
    splits: Dict[str, Optional[str]] = field(default_factory=lambda: {s: s for s in SPLITS})
    split: Optional[List[float]] = None
    format: Optional[str] = None


@dataclass
class Mix:
    """A corpus mix (see the module docstring).

    name (str): the mix's name.
    types (List[str]): the target types.
    corpora (List[MixCorpus]): its corpora.
    temperature (float): sampling temperature T (weights ∝ size ** T; 1: by size, 0: uniform).
    path (Optional[Path]): the file it was read from.
    seed (int): seed of document splits (``split``).
    dedupe (bool): leave out training sentences that occur in a test split of the mix.
    """

    name: str
    types: List[str]
    corpora: List[MixCorpus]
    temperature: float = 1.0
    path: Optional[Path] = None
    seed: int = 0
    dedupe: bool = True

    def corpus(self, name: str) -> MixCorpus:
        for c in self.corpora:
            if c.name == name:
                return c
        raise CorpusConfigError(f"{self.name}: no corpus {name!r} in the mix ({', '.join(c.name for c in self.corpora)})")


def _yaml(path: Path) -> Any:
    import srsly

    try:
        return srsly.yaml_loads(path.read_text(encoding="utf8"))
    except FileNotFoundError:
        raise CorpusConfigError(f"{path}: no such mix file") from None
    except Exception as err:  # YAML parsers raise many kinds
        raise CorpusConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())[:160]})") from None


def resolve_corpus_path(value: str, *, corpora_dir: Path, project_dir: Optional[Path] = None) -> Path:
    """A corpus path from a mix entry: absolute, ``asset:NAME`` (the project's ``assets/NAME``) or relative to
    ``corpora_dir``.

    value (str): the entry's ``path``.
    corpora_dir (Path): the mix's corpora folder.
    project_dir (Optional[Path]): the project folder for ``asset:`` (default: the working directory).
    RETURNS (Path): the path (not checked).
    """
    if value.startswith("asset:"):
        return (project_dir or Path.cwd()) / "assets" / value[len("asset:"):]
    path = Path(value).expanduser()
    return path if path.is_absolute() else corpora_dir / path


def load_mix(path: Union[str, Path], *, corpora_dir: Union[str, Path, None] = None) -> Mix:
    """Read and check a mix file.

    path (Union[str, Path]): the YAML file, or the name of a shipped mix (``huner``, ``huner-gene``…).
    corpora_dir (Union[str, Path, None]): where relative corpus paths start (default: the
        ``BIONER_CORPORA`` environment variable, else the file's ``corpora_dir``, relative to the
        working directory).
    RETURNS (Mix): the mix; a CorpusConfigError names the first problem.
    """
    from .align import read_label_map

    path = resolve_mix_path(path)
    data = _yaml(path)
    where = str(path)
    if not isinstance(data, dict):
        raise CorpusConfigError(f"{where}: a mix file is a mapping with `types` and `corpora`")
    unknown = set(data) - {"name", "types", "other_types", "temperature", "corpora_dir", "label_maps", "corpora",
                           "seed", "dedupe", "description"}
    if unknown:
        raise CorpusConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    types = data.get("types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise CorpusConfigError(f"{where}: `types` must be a list of the mix's entity types")
    other = data.get("other_types") or []
    if not isinstance(other, list) or not all(isinstance(t, str) for t in other):
        raise CorpusConfigError(f"{where}: `other_types` must be a list of types the label maps may produce "
                                "that this mix leaves out")
    temperature = float(data.get("temperature", 1.0))
    if temperature < 0:
        raise CorpusConfigError(f"{where}: temperature must be >= 0, got {temperature}")
    root = Path(corpora_dir or os.environ.get(CORPORA_ENV) or data.get("corpora_dir") or ".").expanduser()
    maps: Dict[str, Any] = {}
    if data.get("label_maps"):
        maps_path = (path.parent / data["label_maps"]).resolve()
        raw = _yaml(maps_path)
        if not isinstance(raw, dict):
            raise CorpusConfigError(f"{maps_path}: label maps are a mapping of name → (type → type or null)")
        maps = raw
    entries = data.get("corpora")
    if not isinstance(entries, list) or not entries:
        raise CorpusConfigError(f"{where}: `corpora` must be a non-empty list")
    corpora = []
    for i, entry in enumerate(entries):
        corpora.append(_corpus(entry, i, where=where, types=types, other=other, root=root, maps=maps,
                               read_map=read_label_map))
    names = [c.name for c in corpora]
    if len(set(names)) != len(names):
        raise CorpusConfigError(f"{where}: corpus names must be unique ({', '.join(names)})")
    return Mix(name=str(data.get("name") or path.stem), types=list(types), corpora=corpora,
               temperature=temperature, path=path, seed=int(data.get("seed", 0)), dedupe=bool(data.get("dedupe", True)))


def _corpus(entry: Any, i: int, *, where: str, types: List[str], other: List[str], root: Path, maps: Dict[str, Any],
            read_map: Callable[[Any], Dict[str, Optional[str]]]) -> MixCorpus:
    if not isinstance(entry, dict) or not entry.get("path"):
        raise CorpusConfigError(f"{where}: corpora[{i}] needs at least a `path`")
    unknown = set(entry) - {"name", "path", "label_map", "annotates", "weight", "splits", "split", "format"}
    if unknown:
        raise CorpusConfigError(f"{where}: corpora[{i}]: unknown keys {', '.join(sorted(unknown))}")
    name = str(entry.get("name") or Path(str(entry["path"])).name)
    raw_map = entry.get("label_map")
    if isinstance(raw_map, str):
        if raw_map in maps:
            raw_map = maps[raw_map]
        elif Path(raw_map).suffix in (".yml", ".yaml", ".json"):
            raw_map = read_map(Path(where).parent / raw_map)
        else:
            raise CorpusConfigError(f"{where}: {name}: label map {raw_map!r} is not in the mix's label_maps file")
    if raw_map is None:
        if entry.get("annotates") is None:
            raise CorpusConfigError(f"{where}: {name}: give its label_map (its types → the mix's types, null to "
                                    "drop one), or the types it annotates (`annotates`, labels kept as they are)")
        raw_map = {t: t for t in types}
    if not isinstance(raw_map, dict) or not all(isinstance(k, str) and (v is None or isinstance(v, str))
                                                for k, v in raw_map.items()):
        raise CorpusConfigError(f"{where}: {name}: a label map is a mapping of type → type (or null to drop)")
    stray = sorted({v for v in raw_map.values() if v is not None and v not in types and v not in other})
    if stray:
        raise CorpusConfigError(f"{where}: {name}: its label map produces {', '.join(stray)}, neither a type of the "
                                f"mix ({', '.join(types)}) nor in `other_types`: a typo, or list it in other_types")
    label_map = {k: (v if v in types else None) for k, v in raw_map.items()}
    produced = sorted({v for v in label_map.values() if v is not None})
    annotates = entry.get("annotates", produced)
    if not isinstance(annotates, list) or any(t not in types for t in annotates):
        raise CorpusConfigError(f"{where}: {name}: `annotates` must list types of the mix ({', '.join(types)})")
    if not annotates:
        raise CorpusConfigError(f"{where}: {name}: annotates none of the mix's types ({', '.join(types)}); "
                                "leave it out of this mix or map its types onto them")
    label_map = {k: (v if v in annotates else None) for k, v in label_map.items()}  # not annotated: not kept
    weight = float(entry.get("weight", 1.0))
    if weight < 0:
        raise CorpusConfigError(f"{where}: {name}: weight must be >= 0, got {weight}")
    splits = {s: s for s in SPLITS}
    if entry.get("splits") is not None:
        given = entry["splits"]
        if not isinstance(given, dict) or set(given) - set(SPLITS):
            raise CorpusConfigError(f"{where}: {name}: `splits` maps train/dev/test to file names")
        splits = {s: given.get(s) for s in SPLITS}
    split = entry.get("split")
    if split is not None and (not isinstance(split, list) or len(split) != 3 or not all(x >= 0 for x in split)
                              or not sum(split) > 0):
        raise CorpusConfigError(f"{where}: {name}: `split` is three shares (train, dev, test), e.g. [0.6, 0.1, 0.3]")
    return MixCorpus(name=name, path=resolve_corpus_path(str(entry["path"]), corpora_dir=root), label_map=label_map,
                     annotates=sorted(annotates), weight=weight, splits=splits,
                     split=[float(x) for x in split] if split else None, format=entry.get("format"))


def resolve_mix_path(value: Union[str, Path]) -> Path:
    """A mix file from a path, or the name of one shipped in ``configs/mixes/``."""
    path = Path(value).expanduser()
    if path.is_file():
        return path
    shipped = Path(__file__).resolve().parent.parent / "configs" / "mixes" / f"{path.name.removesuffix('.yml')}.yml"
    if shipped.is_file() and path.parent == Path("."):
        return shipped
    names = sorted(p.stem for p in shipped.parent.glob("*.yml") if p.stem != "label_maps")
    raise CorpusConfigError(f"{value}: no such mix file, and not the name of a shipped mix ({', '.join(names)})")


# ------------------------------------------------------------------------------------------ reading
_CACHE: Dict[Tuple[Any, ...], List[Doc]] = {}


def split_file(corpus: MixCorpus, split: str) -> Optional[Path]:
    """The file a split of a token-per-line/DocBin corpus reads, or None when ``splits`` says it has none.

    A split the corpus should have (its ``splits`` entry is not null) whose file is missing is an error.
    """
    stem = corpus.splits.get(split)
    if stem is None:
        return None
    if corpus.path.is_file():
        return corpus.path if split == "train" else None
    for suffix in SPLIT_SUFFIXES:
        candidate = corpus.path / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise CorpusConfigError(f"{corpus.name}: no {stem}{{{','.join(SPLIT_SUFFIXES)}}} file in {corpus.path} for its "
                            f"{split} split; give the file in `splits` ({split}: NAME), or {split}: null if it has none")


def corpus_docs(corpus: MixCorpus, split: str, *, vocab, seed: int = 0) -> List[Doc]:
    """A split of one corpus as Docs with the mix's labels and annotated types (cached per process).

    corpus (MixCorpus): the corpus.
    split (str): ``train``, ``dev`` or ``test``.
    vocab (Vocab): the pipeline's vocab.
    seed (int): seed of a document split (``split`` shares).
    RETURNS (List[Doc]): the Docs (empty when the corpus has no such split).
    """
    return [doc.copy() for doc in _cached_docs(corpus, split, vocab=vocab, seed=seed)]


def _cached_docs(corpus: MixCorpus, split: str, *, vocab, seed: int) -> List[Doc]:
    """:func:`corpus_docs` without the copies (shared: never modify them)."""
    if not corpus.path.exists():
        raise CorpusConfigError(f"{corpus.name}: {corpus.path} not found (set the mix's corpora_dir, "
                                f"--corpora-dir or {CORPORA_ENV})")
    key = (corpus.name, str(corpus.path), split, seed, repr(sorted(corpus.label_map.items())), tuple(corpus.annotates),
           repr(sorted(corpus.splits.items())), repr(corpus.split), corpus.format, id(vocab))
    if key not in _CACHE:
        docs = [relabel(doc, corpus) for doc in _raw_docs(corpus, split, vocab=vocab, seed=seed)]
        _CACHE[key] = [sent for doc in docs for sent in sentence_docs(doc)]
    return _CACHE[key]


def sentence_docs(doc: Doc) -> List[Doc]:
    """A Doc cut into one Doc per sentence (entities and annotated types kept); the Doc itself without
    sentence boundaries or with one sentence."""
    if not doc.has_annotation("SENT_START"):
        return [doc]
    sents = list(doc.sents)
    if len(sents) < 2:
        return [doc]
    out = []
    for sent in sents:
        piece = sent.as_doc()
        copy_corpus_data(doc, piece)
        out.append(piece)
    return out


def training_docs(mix: Mix, corpus: MixCorpus, *, vocab) -> Tuple[List[Doc], int]:
    """A corpus's training sentences, less those that occur in a test split of the mix (``dedupe``).

    RETURNS (Tuple[List[Doc], int]): the sentences (shared: never modify them) and how many were left out.
    """
    docs = _cached_docs(corpus, "train", vocab=vocab, seed=mix.seed)
    if not mix.dedupe:
        return docs, 0
    tests = test_texts(mix, vocab=vocab)
    kept = [doc for doc in docs if doc.text.strip() not in tests]
    return kept, len(docs) - len(kept)


def test_texts(mix: Mix, *, vocab) -> set:
    """Texts of every test sentence of the mix's corpora."""
    return {doc.text.strip() for c in mix.corpora for doc in _cached_docs(c, "test", vocab=vocab, seed=mix.seed)}


def _raw_docs(corpus: MixCorpus, split: str, *, vocab, seed: int) -> List[Doc]:
    from .readers import load_corpus_docs

    if corpus.split is None and corpus.format is None:
        path = split_file(corpus, split)
        return load_corpus_docs(path, vocab=vocab) if path is not None else []
    docs = _all_docs(corpus, vocab=vocab)
    shares = corpus.split or [1.0, 0.0, 0.0]
    from .splits import document_groups, split_documents

    parts, _ = split_documents(docs, document_groups(docs), ratios=shares, seed=seed)
    return [docs[i] for i in parts[SPLITS.index(split)]]


def _all_docs(corpus: MixCorpus, *, vocab) -> List[Doc]:
    from .readers import load_corpus_docs

    if corpus.format is not None:
        from .align import convert_standoff

        docs, _ = convert_standoff(corpus.path, fmt=corpus.format)
        return [Doc(vocab).from_bytes(doc.to_bytes()) for doc in docs]
    return load_corpus_docs(corpus.path, vocab=vocab)


def relabel(doc: Doc, corpus: MixCorpus) -> Doc:
    """The Doc with its entities mapped onto the mix's types (dropped ones become ``O``) and its annotated
    types recorded; a type the label map does not mention is an error."""
    unmapped = sorted({e.label_ for e in doc.ents} - set(corpus.label_map))
    if unmapped:
        raise CorpusConfigError(f"{corpus.name}: types {', '.join(unmapped)} are not in its label map; map each "
                                "to a type of the mix, or to null to drop it")
    ents = []
    for ent in doc.ents:
        target = corpus.label_map[ent.label_]
        if target is not None:
            ents.append(doc.char_span(ent.start_char, ent.end_char, label=target) if ent.label_ != target else ent)
    doc.set_ents([e for e in ents if e is not None], default="outside")
    doc.user_data[ANNOTATES] = list(corpus.annotates)
    doc.user_data[CORPUS] = corpus.name
    return doc


def copy_corpus_data(source: Doc, target: Doc, *, overwrite: bool = True) -> Doc:
    """Give ``target`` what ``source`` carries from its mix corpus (annotated types, corpus name).

    source (Doc): a Doc from a mix.
    target (Doc): its copy (a sentence, an Example's predicted Doc, an augmented Doc).
    overwrite (bool): replace what ``target`` already has.
    RETURNS (Doc): ``target``.
    """
    for key in CORPUS_KEYS:
        if key in source.user_data and (overwrite or key not in target.user_data):
            value = source.user_data[key]
            target.user_data[key] = list(value) if isinstance(value, (list, tuple)) else value
    return target


def annotated_types(doc: Doc) -> Optional[List[str]]:
    """The types a Doc's corpus annotates (None: not from a mix, i.e. every type the model knows)."""
    value = doc.user_data.get(ANNOTATES)
    return list(value) if value is not None else None


def prompted_types(doc: Doc) -> Optional[List[str]]:
    """The types a training Doc's task prompt asked for (None: no prompt, i.e. every type)."""
    value = doc.user_data.get(PROMPTED)
    return list(value) if value is not None else None


def sampling_probabilities(sizes: Sequence[int], weights: Sequence[float], *, temperature: float) -> List[float]:
    """``p_i ∝ weight_i × size_i ** T``: T = 1 samples by size, T = 0 uniformly (by weight), between flattens.

    sizes (Sequence[int]): Examples per corpus.
    weights (Sequence[float]): the corpora's weights.
    temperature (float): T >= 0.
    RETURNS (List[float]): probabilities (0 for an empty corpus).
    """
    raw = [w * (n ** temperature) if n > 0 else 0.0 for n, w in zip(sizes, weights)]
    total = sum(raw)
    if total <= 0:
        raise CorpusConfigError("the mix has no training Examples (every corpus is empty or weighted 0)")
    return [r / total for r in raw]


def mix_examples(nlp: Language, *, mix: Mix, split: str, temperature: Optional[float] = None, epoch_size: int = 0,
                 limit: int = 0, seed: int = 0, corpora: Optional[Sequence[str]] = None,
                 augmenter: Optional[Callable[[Language, Example], Iterable[Example]]] = None,
                 state: Optional[Dict[str, int]] = None) -> Iterator[Example]:
    """Examples of a mix: sampled across corpora for ``train``, every Example of every corpus otherwise.

    nlp (Language): the pipeline (its vocab).
    mix (Mix): the mix.
    split (str): ``train`` (sampled), ``dev`` or ``test`` (all, corpus after corpus).
    temperature (Optional[float]): overrides the mix's.
    epoch_size (int): Examples per pass for ``train`` (0: as many as the corpora hold).
    limit (int): at most this many sentences per corpus (0: all).
    seed (int): sampling seed (each pass draws afresh).
    corpora (Optional[Sequence[str]]): only these corpora (None: all).
    augmenter (Callable): a spaCy augmenter for every Example.
    state (Dict[str, int]): the pass counter (kept by the reader between calls).
    """
    chosen = [c for c in mix.corpora if corpora is None or c.name in corpora]
    docs = []
    for c in chosen:
        found = training_docs(mix, c, vocab=nlp.vocab)[0] if split == "train" else \
            _cached_docs(c, split, vocab=nlp.vocab, seed=mix.seed)
        docs.append(found[:limit] if limit else found)

    def example(doc: Doc) -> Example:
        predicted = copy_corpus_data(doc, input_copy(doc, vocab=nlp.vocab))
        return Example(predicted, doc)

    def emit(eg: Example) -> Iterator[Example]:
        if augmenter is None:
            yield eg
            return
        for out in augmenter(nlp, eg):
            for d in (out.predicted, out.reference):
                copy_corpus_data(eg.reference, d, overwrite=False)
            yield out

    if split != "train":
        for found in docs:
            for doc in found:
                yield from emit(example(doc))
        return
    state = state if state is not None else {}
    state["pass"] = state.get("pass", 0) + 1
    rng = random.Random(f"{seed}:{state['pass']}")
    sizes = [len(found) for found in docs]
    probs = sampling_probabilities(sizes, [c.weight for c in chosen],
                                   temperature=mix.temperature if temperature is None else temperature)
    queues: List[List[int]] = [[] for _ in docs]
    for _ in range(epoch_size or sum(sizes)):
        i = rng.choices(range(len(docs)), weights=probs)[0]
        if not queues[i]:
            queues[i] = list(range(sizes[i]))
            rng.shuffle(queues[i])
        yield from emit(example(docs[i][queues[i].pop()]))


def mix_summary(mix: Mix, *, vocab, temperature: Optional[float] = None, corpora: Optional[Sequence[str]] = None,
                limit: int = 0) -> Dict[str, Any]:
    """The mix as the run record names it: each corpus's path, label map, annotated types, sentences per split
    (training: after ``limit`` and ``dedupe``; ``deduped``: left out) and training probability.

    corpora (Optional[Sequence[str]]): only these corpora (as the reader's ``corpora``).
    limit (int): as the reader's ``limit`` (sentences per corpus).
    """
    rows = []
    sizes = []
    chosen = [c for c in mix.corpora if corpora is None or c.name in corpora]
    for c in chosen:
        train, dropped = training_docs(mix, c, vocab=vocab)
        counts = {"train": min(len(train), limit) if limit else len(train)}
        counts.update({s: len(_cached_docs(c, s, vocab=vocab, seed=mix.seed)) for s in ("dev", "test")})
        sizes.append(counts["train"])
        rows.append({"name": c.name, "path": str(c.path), "annotates": c.annotates, "label_map": c.label_map,
                     "weight": c.weight, "sentences": counts, "deduped": dropped})
    t = mix.temperature if temperature is None else temperature
    probs = sampling_probabilities(sizes, [c.weight for c in chosen], temperature=t) if any(sizes) else []
    for row, p in zip(rows, probs):
        row["probability"] = p
    return {"mix": mix.name, "path": str(mix.path) if mix.path else None, "types": mix.types, "temperature": t,
            "corpora": rows}


@registry.readers("spacy_bioner.MixedCorpus.v1")
def create_mixed_corpus(
    path: Optional[Path],
    split: str = "train",
    temperature: Optional[float] = None,
    epoch_size: int = 0,
    limit: int = 0,
    seed: int = 0,
    corpora: Optional[List[str]] = None,
    corpora_dir: Optional[str] = None,
    augmenter: Optional[Callable[[Language, Example], Iterable[Example]]] = None,
) -> CorpusReader:
    """Examples from a corpus mix, each carrying the types its corpus annotates.

    path (Path): the mix file (or a shipped mix's name, e.g. ``huner``).
    split (str): ``train`` (sampled by size ** temperature), ``dev`` or ``test`` (every Example).
    temperature (Optional[float]): overrides the mix's temperature.
    epoch_size (int): Examples per training pass (0: as many as the corpora hold).
    limit (int): at most this many sentences per corpus (0: all).
    seed (int): sampling seed.
    corpora (Optional[List[str]]): only these corpora of the mix.
    corpora_dir (Optional[str]): where the mix's relative corpus paths start.
    augmenter (Callable): a spaCy augmenter, as ``spacy.Corpus.v1`` takes.
    """
    if path is None:
        raise CorpusConfigError("spacy_bioner.MixedCorpus.v1: 'path' is not set (e.g. --paths.mix huner)")
    if split not in SPLITS:
        raise CorpusConfigError(f"spacy_bioner.MixedCorpus.v1: split must be one of {', '.join(SPLITS)}, got {split!r}")
    mix = load_mix(path, corpora_dir=corpora_dir)
    if corpora:
        for name in corpora:
            mix.corpus(name)
    return partial(mix_examples, mix=mix, split=split, temperature=temperature, epoch_size=epoch_size, limit=limit,
                   seed=seed, corpora=corpora, augmenter=augmenter, state={})

