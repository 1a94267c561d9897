"""``bioner_adversarial``: train the pipeline's transformer on adversarially perturbed input embeddings.

A training-only component: at inference it passes Docs through untouched (it
may be removed from a packaged pipeline), and nothing of it is saved but its
config. Put it after the entity head(s) that listen to the transformer:

    pipeline = ["transformer", "ner", "bioner_adversarial", "doc_cleaner"]

How it fits spaCy's training loop (``spacy/training/loop.py``): for each
(sub-)batch the loop calls ``nlp.update(batch, sgd=False)``, which calls every
component's ``update`` in pipeline order, and only then ``finish_update`` (one
optimizer step) on each trainable component. So by the time this component's
``update`` runs, the clean pass is complete: the transformer ran forward, the
heads computed their losses and the last listener backpropagated into the
transformer, leaving the clean gradients in the weights and — through a forward
hook on the embedding layer that keeps its output's gradient — ``g = ∂L/∂e``.
The component then

1. moves the clean gradients aside (:func:`~spacy_bioner.models.adversarial.take_grads`);
2. builds ``δ`` from ``g`` (unscaled first when mixed precision is on): FGSM in
   one step; PGD with K projected ascent steps, each a forward/backward pass
   whose weight gradients are dropped;
3. calls the transformer's and the heads' own ``update(..., sgd=None)`` once more
   while the hook adds ``δ`` to the embedding output: the heads' own losses, on
   perturbed inputs, backpropagated as in the clean pass, nothing stepped;
4. sets every gradient to ``clean + weight × adversarial``.

The loop's ``finish_update`` then takes one step with both. The heads are
re-run through their public ``update`` (no private loss API), so any head that
listens to a ``transformer`` works: spaCy's ``ner`` and ``bioner_tagger``.
Cost per update: about 2× a clean one for FGSM, K + 1 times for PGD.

The maths are plain functions in :mod:`spacy_bioner.models.adversarial`.
"""
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional

from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Config

from ..errors import ConfigValueError
from ..models.adversarial import check_settings

DEFAULT_CONFIG = """
[strategy]
@misc = "spacy_bioner.FGSM.v1"
epsilon = 0.5
norm = "l2"
per = "sequence"
weight = 1.0
warmup_steps = 0
target = "word"
"""
DEFAULT_STRATEGY = Config().from_str(DEFAULT_CONFIG)["strategy"]


@dataclass(frozen=True)
class AdversarialStrategy:
    """How the embeddings are perturbed.

    method (str): ``fgsm`` or ``pgd``.
    epsilon (float): radius of the ε-ball.
    alpha (float): PGD step size (FGSM: ε).
    steps (int): PGD ascent steps K (FGSM: 1).
    norm (str): ``linf`` (sign of the gradient, clamp) or ``l2`` (normalised gradient, rescale).
    per (str): scope of an L2 norm: ``token``, ``sequence`` or ``batch``.
    weight (float): the adversarial loss's weight next to the clean loss.
    warmup_steps (int): clean updates before perturbation starts.
    target (str): ``word`` (word embeddings only, FreeLB's choice) or ``embeddings``
        (the whole embedding block's output).
    """

    method: str
    epsilon: float
    alpha: float
    steps: int
    norm: str
    per: str
    weight: float
    warmup_steps: int
    target: str

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@registry.misc("spacy_bioner.FGSM.v1")
def configure_fgsm(*, epsilon: float = 0.5, norm: str = "l2", per: str = "sequence", weight: float = 1.0,
                   warmup_steps: int = 0, target: str = "word") -> AdversarialStrategy:
    """FGSM / FGM: one step of size ε along the clean loss's gradient (about 2× a clean update).

    Defaults are this project's own (the study we build on gives none): an L2 step of
    0.5 per sequence on the word embeddings, inside FreeLB's published bounds (0.14–0.7).
    The widely copied FGM recipe is ``epsilon = 1.0, per = "batch"``.

    epsilon (float): perturbation size.
    norm (str): ``l2`` (ε·g/‖g‖) or ``linf`` (ε·sign(g)).
    per (str): scope of the L2 norm: ``token``, ``sequence`` or ``batch``.
    weight (float): adversarial loss weight (1: clean + adversarial loss).
    warmup_steps (int): clean updates before perturbation starts.
    target (str): ``word`` or ``embeddings``.
    """
    check_settings(epsilon=epsilon, norm=norm, per=per, weight=weight, warmup_steps=warmup_steps, target=target)
    return AdversarialStrategy(method="fgsm", epsilon=float(epsilon), alpha=float(epsilon), steps=1, norm=norm,
                               per=per, weight=float(weight), warmup_steps=int(warmup_steps), target=target)


@registry.misc("spacy_bioner.PGD.v1")
def configure_pgd(*, epsilon: float = 0.5, alpha: float = 0.2, steps: int = 3, norm: str = "l2",
                  per: str = "sequence", weight: float = 1.0, warmup_steps: int = 0,
                  target: str = "word") -> AdversarialStrategy:
    """PGD: K projected ascent steps of size α inside the ε-ball (about K + 1 times a clean update).

    Only the last iterate's gradients reach the weights (the FGM/PGD recipe, not
    FreeLB's average over the K steps). Defaults are this project's own; the
    widely copied recipe is ``epsilon = 1.0, alpha = 0.3, steps = 3``.

    epsilon (float): radius of the ball.
    alpha (float): step size.
    steps (int): ascent steps K.
    norm (str): ``l2`` or ``linf``.
    per (str): scope of the L2 norm: ``token``, ``sequence`` or ``batch``.
    weight (float): adversarial loss weight.
    warmup_steps (int): clean updates before perturbation starts.
    target (str): ``word`` or ``embeddings``.
    """
    check_settings(epsilon=epsilon, alpha=alpha, steps=steps, norm=norm, per=per, weight=weight,
                   warmup_steps=warmup_steps, target=target)
    return AdversarialStrategy(method="pgd", epsilon=float(epsilon), alpha=float(alpha), steps=int(steps),
                               norm=norm, per=per, weight=float(weight), warmup_steps=int(warmup_steps),
                               target=target)


@Language.factory(
    "bioner_adversarial",
    default_config={"strategy": DEFAULT_STRATEGY, "transformer": "transformer"},
)
def make_bioner_adversarial(nlp: Language, name: str, strategy: AdversarialStrategy,
                            transformer: str) -> "AdversarialTraining":
    """Adversarial training of the transformer's embeddings (no effect at inference).

    strategy (AdversarialStrategy): ``spacy_bioner.FGSM.v1`` or ``spacy_bioner.PGD.v1``.
    transformer (str): name of the transformer component to perturb.
    """
    return AdversarialTraining(nlp, name, strategy=strategy, transformer=transformer)


class AdversarialTraining(Pipe):
    """Adds a perturbed-embedding pass to every training update; the identity at inference."""

    def __init__(self, nlp: Language, name: str = "bioner_adversarial", *, strategy: AdversarialStrategy,
                 transformer: str = "transformer") -> None:
        self.nlp = nlp
        self.name = name
        self.strategy = strategy
        self.transformer_name = transformer
        self.n_updates = 0
        self.n_perturbed = 0
        self._hook: Any = None

    # ------------------------------------------------------------- inference: nothing
    def __call__(self, doc: Doc) -> Doc:
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        yield from stream

    # ------------------------------------------------------------------ training
    def initialize(self, get_examples: Any = None, *, nlp: Optional[Language] = None) -> None:
        """Check the transformer is there and hook its embeddings (the first update then perturbs already)."""
        if nlp is not None:
            self.nlp = nlp
        self.hook()

    def transformer(self) -> Any:
        """The transformer component this one perturbs."""
        if self.transformer_name not in self.nlp.component_names:
            raise ConfigValueError(f"{self.name}: no component {self.transformer_name!r} in the pipeline "
                             f"({', '.join(self.nlp.component_names)}); set components.{self.name}.transformer")
        return self.nlp.get_pipe(self.transformer_name)

    def hf_shim(self) -> Any:
        """The transformer's PyTorch shim (holding the Hugging Face model), or None before initialisation."""
        for node in self.transformer().model.walk():
            for shim in node.shims:
                if getattr(shim, "_model", None) is not None:
                    return shim
        return None

    def hook(self) -> Any:
        """The embedding hook on the transformer's current Hugging Face model (installed on first use)."""
        from ..models.adversarial import EmbeddingHook

        shim = self.hf_shim()
        if shim is None:
            return None
        if self._hook is None or self._hook.module is not shim._model:
            if self._hook is not None:
                self._hook.remove()
            self._hook = EmbeddingHook(shim._model, target=self.strategy.target)
        return self._hook

    def heads(self) -> List[str]:
        """Trainable components listening to the transformer, in pipeline order (frozen ones left out)."""
        listening = set(getattr(self.transformer(), "listening_components", []))
        frozen = set(self.nlp.config.get("training", {}).get("frozen_components", []) or [])
        return [name for name in self.nlp.pipe_names if name in listening and name not in frozen]

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Any = None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """Add the gradients of the heads' losses on perturbed embeddings to the clean ones (no step).

        examples (Iterable[Example]): the batch the pipeline was just updated on.
        drop (float): dropout rate for the perturbed passes.
        sgd: unused (spaCy steps the components after ``nlp.update``).
        losses (Dict[str, float]): gets the weighted adversarial loss under this component's name.
        RETURNS (Dict[str, float]): ``losses``.
        """
        from ..models.adversarial import (drop_grads, fgsm_delta, grad_scale, merge_grads, pgd_step,
                                            take_grads, unscale)

        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        hook = self.hook()
        if hook is None or not any(len(eg.predicted) for eg in examples):
            return losses
        self.n_updates += 1
        s = self.strategy
        grads = hook.grads()
        hook.clear()
        shim = self.hf_shim()
        if self.n_updates <= s.warmup_steps or grads is None or s.weight == 0:
            return losses
        scaler = getattr(shim, "_grad_scaler", None)
        if scaler is not None and scaler.found_inf:  # the clean pass overflowed: its step is skipped anyway
            return losses
        scale = grad_scale(shim)
        g = unscale(grads, scale)
        if g is None:
            return losses
        heads = self.heads()
        models = [self.nlp.get_pipe(name).model for name in heads]
        params = list(shim._model.parameters())
        clean = take_grads(models, params)
        scratch: Dict[str, float] = {}
        try:
            if s.method == "pgd":
                delta = pgd_step(None, g, alpha=s.alpha, epsilon=s.epsilon, norm=s.norm, per=s.per)
                for _ in range(s.steps - 1):
                    self._perturbed_pass(examples, delta, heads, drop=drop, losses={})
                    g = hook.grads()
                    g = unscale(g, scale) if g is not None else None
                    drop_grads(models, params)  # an ascent pass only moves δ
                    if g is None:
                        break
                    delta = pgd_step(delta, g, alpha=s.alpha, epsilon=s.epsilon, norm=s.norm, per=s.per)
            else:
                delta = fgsm_delta(g, epsilon=s.epsilon, norm=s.norm, per=s.per)
            self._perturbed_pass(examples, delta, heads, drop=drop, losses=scratch)
        finally:
            hook.deltas = None
            hook.clear()
            merge_grads(models, params, clean, weight=s.weight)
        self.n_perturbed += 1
        losses[self.name] += s.weight * sum(scratch.get(name, 0.0) for name in heads)
        return losses

    def _perturbed_pass(self, examples: List[Example], delta: List[Any], heads: List[str], *, drop: float,
                        losses: Dict[str, float]) -> None:
        """Forward and backward through the transformer and the heads with ``δ`` added to the embeddings."""
        hook = self._hook
        hook.deltas = delta
        try:
            self.transformer().update(examples, drop=drop, sgd=None, losses=losses)
            for name in heads:
                self.nlp.get_pipe(name).update(examples, drop=drop, sgd=None, losses=losses)
        finally:
            hook.deltas = None
