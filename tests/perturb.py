"""Seeded synthetic predictions from gold: boundary shifts, type swaps, drops, insertions."""
import random
from typing import List, Sequence

from spacy.tokens import Doc, Span


def perturb_docs(docs: Sequence[Doc], *, seed: int = 0, extra_label: str = "OTHER") -> List[Doc]:
    rng = random.Random(seed)
    labels = sorted({e.label_ for d in docs for e in d.ents}) + [extra_label]
    out = []
    for doc in docs:
        pred = Doc(doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])
        spans = []
        for e in doc.ents:
            r = rng.random()
            if r < 0.1:
                continue  # dropped
            start, end, label = e.start, e.end, e.label_
            if r < 0.2:
                end = min(len(doc), end + 1)
            elif r < 0.25:
                start = max(0, start - 1)
            elif r < 0.3:
                label = rng.choice(labels)
            spans.append((start, end, label))
        if len(doc) > 2 and rng.random() < 0.1:
            i = rng.randrange(len(doc))
            spans.append((i, i + 1, rng.choice(labels)))
        kept, last_end = [], -1
        for start, end, label in sorted(spans):
            if start >= last_end:
                kept.append(Span(pred, start, end, label))
                last_end = end
        pred.ents = kept
        out.append(pred)
    return out
