"""Batching by sentence count, as the published studies count batch size: ``spacy_bioner.batch_by_sentences.v1``."""
import itertools
import random
from functools import partial
from typing import Iterable, Iterator, List

from spacy.training import Example
from spacy.util import registry

from ..corpus.sentences import n_sentences
from ..types import Sizing



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


__all__ = ["batch_by_sentences", "configure_batch_by_sentences"]
