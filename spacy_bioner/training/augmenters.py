"""Training augmenters (``[corpora.train.augmenter]``): noisy copies of training Examples.

``spacy_bioner.entity_swap_augmenter.v1``, ``spacy_bioner.mention_noise_augmenter.v1`` and
``spacy_bioner.case_augmenter.v1`` wrap the noise functions of :mod:`spacy_bioner.corpus.noise`,
which ``evaluate --noise`` uses for noisy test sets; ``spacy_bioner.chain_augmenter.v1`` applies
several in turn (``--augment noise``: ``configs/augment/noise.cfg``).
"""
import random
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from spacy.training import Example
from spacy.util import registry

from ..corpus.noise import mention_pool, mentions, noisy_doc
from ..corpus.sentences import input_copy


def augment_example(nlp, example: Example, kind: str, rng: random.Random, *, rate: float,
                    pool: Optional[Dict[str, List[Tuple[str, ...]]]] = None) -> Example:
    """A training Example whose reference is a noisy copy and whose predicted Doc has the same words."""
    ref = noisy_doc(example.reference, kind, rng, rate=rate, pool=pool)
    return Example(input_copy(ref, vocab=nlp.vocab), ref)


def make_augmenter(kind: str, *, level: float, rate: float, seed: int,
                   source: Optional[Union[str, Path]] = None) -> Callable[..., Iterator[Example]]:
    """A spaCy augmenter: with probability ``level`` an Example is replaced by a noisy copy.

    kind (str): ``swap``, ``typo_mention``, ``hyphen``, ``case``, … (see :data:`~spacy_bioner.corpus.noise.NOISE_KINDS`).
    level (float): share of Examples augmented.
    rate (float): noise rate within an augmented Example.
    seed (int): seed of the augmenter's own generator.
    source (Optional[str | Path]): for ``swap``: a corpus whose mentions are drawn
        (e.g. ``${paths.train}``); None: the mentions of the Examples seen so far.
    """
    rng = random.Random(f"{seed}:{kind}:augment")
    state: Dict[str, Optional[Dict[str, List[Tuple[str, ...]]]]] = {"pool": None}

    def augment(nlp, example: Example) -> Iterator[Example]:
        pool = None
        if kind == "swap":
            if state["pool"] is None:
                state["pool"] = _load_pool(source, nlp) if source else {}
            pool = state["pool"]
            if not source:  # grow the pool from the training stream itself
                for label, found in mentions(example.reference).items():
                    pool.setdefault(label, []).extend(found)
        if rng.random() >= level:
            yield example
            return
        yield augment_example(nlp, example, kind, rng, rate=rate, pool=pool)

    return augment


def _load_pool(source: Union[str, Path], nlp) -> Dict[str, List[Tuple[str, ...]]]:
    from ..corpus.readers import load_corpus_docs

    return mention_pool(load_corpus_docs(Path(source), vocab=nlp.vocab))


@registry.augmenters("spacy_bioner.entity_swap_augmenter.v1")
def create_entity_swap_augmenter(*, level: float = 0.2, rate: float = 0.5, seed: int = 0,
                                 source: Optional[str] = None) -> Callable[..., Iterator[Example]]:
    """Replace mentions with other mentions of the same type.

    level (float): share of Examples augmented.
    rate (float): share of the mentions of an augmented Example replaced.
    seed (int): seed.
    source (Optional[str]): corpus to draw mentions from (e.g. ``${paths.train}``); None: those seen so far.
    """
    return make_augmenter("swap", level=level, rate=rate, seed=seed, source=source)


@registry.augmenters("spacy_bioner.mention_noise_augmenter.v1")
def create_mention_noise_augmenter(*, level: float = 0.2, rate: float = 0.3, hyphen: float = 0.5,
                                   seed: int = 0) -> Callable[..., Iterator[Example]]:
    """Typos inside mentions, and hyphen/space variants of multi-word mentions.

    level (float): share of Examples augmented.
    rate (float): share of mention words given a typo.
    hyphen (float): share of augmented Examples that get hyphen/space variants instead.
    seed (int): seed.
    """
    typos = make_augmenter("typo_mention", level=1.0, rate=rate, seed=seed)
    hyphens = make_augmenter("hyphen", level=1.0, rate=0.5, seed=seed)
    rng = random.Random(f"{seed}:mention_noise")

    def augment(nlp, example: Example) -> Iterator[Example]:
        if rng.random() >= level:
            yield example
            return
        yield from (hyphens if rng.random() < hyphen else typos)(nlp, example)

    return augment


@registry.augmenters("spacy_bioner.case_augmenter.v1")
def create_case_augmenter(*, level: float = 0.1, rate: float = 0.3, seed: int = 0) -> Callable[..., Iterator[Example]]:
    """Lower-, upper- or title-case words.

    level (float): share of Examples augmented.
    rate (float): share of the words of an augmented Example re-cased.
    seed (int): seed.
    """
    return make_augmenter("case", level=level, rate=rate, seed=seed)


def chain(augmenters: Sequence[Callable[..., Iterator[Example]]]) -> Callable[..., Iterator[Example]]:
    """One augmenter that passes every Example through each of ``augmenters`` in turn.

    augmenters (Sequence[Callable]): spaCy augmenters (``(nlp, example) -> Iterator[Example]``).
    RETURNS (Callable): an augmenter yielding what the last one yields for everything the earlier ones yield.
    """
    def augment(nlp, example: Example) -> Iterator[Example]:
        stream: List[Example] = [example]
        for one in augmenters:
            stream = [out for eg in stream for out in one(nlp, eg)]
        yield from stream

    return augment


@registry.augmenters("spacy_bioner.chain_augmenter.v1")
def create_chain_augmenter(*augmenters: Callable[..., Iterator[Example]]) -> Callable[..., Iterator[Example]]:
    """Several augmenters in turn, given as ``[corpora.train.augmenter.*.NAME]`` blocks (in file order).

    augmenters (Callable): the augmenters.
    """
    return chain(list(augmenters))
