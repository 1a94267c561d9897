"""Learning-rate schedules: ``spacy_bioner.warmup_linear_fraction.v1``."""
from typing import Iterable

from spacy.util import registry


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
