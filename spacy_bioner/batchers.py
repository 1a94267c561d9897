"""Batching by sentence count, as the published studies count batch size."""
import itertools
import random
from functools import partial
from typing import Iterable, Iterator, List, Union

from spacy.training import Example
from spacy.util import registry
Sizing = Union[int, Iterable[int]]


def n_sentences(example: Union[Example, object]) -> int:
    """Sentences in an Example's reference Doc (or a Doc): 1 without sentence starts."""
    doc = example.reference if isinstance(example, Example) else example
    if len(doc) == 0:
        return 1
    if doc.has_annotation("SENT_START"):
        return sum(1 for t in doc if t.is_sent_start)
    return 1


def batch_by_sentences(
    items: Iterable[Example], *, size: Sizing, discard_oversize: bool = False, buffer: int = 0
) -> Iterator[List[Example]]:
    """Batches holding at most ``size`` sentences (a Doc with more sentences is a batch of its own).

    items (Iterable[Example]): training examples.
    size (Sizing): sentences per batch: a number, or a schedule / sequence of numbers.
    discard_oversize (bool): drop a Doc that alone has more sentences than ``size``.
    buffer (int): if > 0, gather this many batches' worth of examples, sort them by
        length so each batch pads little, and yield those batches in random order
        (``random``, which spaCy seeds). Same batch sizes, far less padding.
    """
    if buffer > 0:
        yield from _bucketed(items, size=size, discard_oversize=discard_oversize, buffer=buffer)
        return
    sizes = itertools.repeat(size) if isinstance(size, int) else iter(size)
    target = int(next(sizes))
    batch: List[Example] = []
    count = 0
    for item in items:
        n = n_sentences(item)
        if n > target:
            if not discard_oversize:
                yield [item]
            continue
        if count + n > target and batch:
            yield batch
            batch, count = [], 0
            target = int(next(sizes))
        batch.append(item)
        count += n
    if batch:
        yield batch


def _bucketed(items: Iterable[Example], *, size: Sizing, discard_oversize: bool, buffer: int) -> Iterator[List[Example]]:
    sizes = itertools.repeat(size) if isinstance(size, int) else iter(size)
    items = iter(items)
    while True:
        target = int(next(sizes))
        chunk = list(itertools.islice(items, target * buffer))
        if not chunk:
            return
        chunk.sort(key=lambda eg: len(eg.reference) if isinstance(eg, Example) else len(eg))
        batches = list(batch_by_sentences(chunk, size=target, discard_oversize=discard_oversize))
        random.shuffle(batches)
        yield from batches


@registry.batchers("spacy_bioner.batch_by_sentences.v1")
def configure_batch_by_sentences(size: Sizing = 32, discard_oversize: bool = False, buffer: int = 0):
    """Batch Examples by number of sentences (8/16/32 as in the papers), not words.

    size (Sizing): sentences per batch, or a schedule.
    discard_oversize (bool): drop Docs with more sentences than ``size``.
    buffer (int): batches' worth of examples sorted by length together (0: off).
    """
    return partial(batch_by_sentences, size=size, discard_oversize=discard_oversize, buffer=buffer)


@registry.schedules("spacy_bioner.warmup_linear_fraction.v1")
def configure_warmup_linear_fraction(initial_rate: float, total_steps: int, warmup_fraction: float = 0.1) -> Iterable[float]:
    """Linear warm-up over a fraction of the steps, then linear decay to 0.

    initial_rate (float): peak learning rate.
    total_steps (int): steps of the whole run (usually ${training.max_steps}).
    warmup_fraction (float): share of ``total_steps`` spent warming up (the papers' 0.1).
    """
    from thinc.api import warmup_linear

    if not 0 <= warmup_fraction < 1:
        raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
    return warmup_linear(initial_rate, int(warmup_fraction * total_steps), total_steps)


__all__ = ["batch_by_sentences", "configure_batch_by_sentences", "n_sentences"]
