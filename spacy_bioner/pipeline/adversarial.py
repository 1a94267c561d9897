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

The loop's ``finish_update`` then takes one step with both. Only loops that update
with ``sgd=False`` and step afterwards, as spaCy's does, are supported: with
``nlp.update(sgd=optimizer)`` each head steps right after its own update, before
this component adds its gradients, which land in the next step (the component
warns once when it finds the heads' gradients already zeroed). The heads are
re-run through their public ``update`` (no private loss API), so any head that
listens to a ``transformer`` works: spaCy's ``ner`` and ``bioner_tagger``.
Cost per update: about 2× a clean one for FGSM, K + 1 times for PGD (K + 2
with a random start).

The component is trainable in spaCy's sense (a parameter-free model), only so
that the loop calls its ``finish_update`` once per optimizer step: that is what
``warmup_steps`` counts, whatever ``accumulate_gradient`` is. Each update also
measures what the perturbation did, per token ``‖δ_t‖ / ‖e_t‖`` over the tokens
the loss depends on, and reports the mean and the max since the last evaluation
in the ``losses`` dict (``bioner_adversarial.ratio_mean`` / ``.ratio_max``, kept in
``run.json``'s ``final_losses``); a max above ``max_ratio`` warns once.

:func:`attack` runs the same perturbation against a trained pipeline at test
time (``spacy-bioner evaluate --attack``), leaving its weights as they were.

The maths are plain functions in :mod:`spacy_bioner.models.adversarial`.
"""
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from spacy.language import Language
from spacy.pipeline import Pipe
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry
from thinc.api import Config, Model, noop

from ..errors import ConfigValueError
from ..models.adversarial import check_settings

#: A token moved by more than this fraction of its embedding's norm is a warning (``max_ratio``).
MAX_RATIO = 0.25

DEFAULT_CONFIG = """
[strategy]
@misc = "spacy_bioner.FGSM.v2"
epsilon = 0.03
norm = "l2"
per = "token"
scale = "relative"
weight = 1.0
warmup_steps = 0
target = "word"
max_ratio = 0.25
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
    warmup_steps (int): optimizer steps without perturbation at the start.
    target (str): ``word`` (word embeddings only, FreeLB's choice) or ``embeddings``
        (the whole embedding block's output).
    scale (str): ``absolute`` (ε, α are lengths) or ``relative`` (fractions of the mean token norm, per token).
    random_start (bool): PGD starts from a random point inside the ball.
    max_ratio (float): warn when a token moves by more than this fraction of its norm.
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
    scale: str = "absolute"
    random_start: bool = False
    max_ratio: float = MAX_RATIO

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


@registry.misc("spacy_bioner.FGSM.v1")
def configure_fgsm(*, epsilon: float = 0.5, norm: str = "l2", per: str = "sequence", weight: float = 1.0,
                   warmup_steps: int = 0, target: str = "word") -> AdversarialStrategy:
    """FGSM / FGM with ε a length in embedding space (kept for reproducing a paper's recipe; see ``v2``).

    The widely copied FGM recipe is ``epsilon = 1.0, per = "batch"``. ``v1``'s default
    (0.5 per sequence) moves the few tokens a gradient concentrates on by up to half
    their length on MiniLM, and hurt F1 in every measurement here.

    epsilon (float): perturbation size.
    norm (str): ``l2`` (ε·g/‖g‖) or ``linf`` (ε·sign(g)).
    per (str): scope of the L2 norm: ``token``, ``sequence`` or ``batch``.
    weight (float): adversarial loss weight (1: clean + adversarial loss).
    warmup_steps (int): optimizer steps without perturbation at the start.
    target (str): ``word`` or ``embeddings``.
    """
    check_settings(epsilon=epsilon, norm=norm, per=per, weight=weight, warmup_steps=warmup_steps, target=target)
    return AdversarialStrategy(method="fgsm", epsilon=float(epsilon), alpha=float(epsilon), steps=1, norm=norm,
                               per=per, weight=float(weight), warmup_steps=int(warmup_steps), target=target)


@registry.misc("spacy_bioner.PGD.v1")
def configure_pgd(*, epsilon: float = 0.5, alpha: float = 0.2, steps: int = 3, norm: str = "l2",
                  per: str = "sequence", weight: float = 1.0, warmup_steps: int = 0,
                  target: str = "word") -> AdversarialStrategy:
    """PGD with ε and α lengths in embedding space, starting at δ = 0 (kept for reproducing recipes; see ``v2``).

    Only the last iterate's gradients reach the weights (the FGM/PGD recipe, not
    FreeLB's average over the K steps). The widely copied recipe is
    ``epsilon = 1.0, alpha = 0.3, steps = 3``.

    epsilon (float): radius of the ball.
    alpha (float): step size.
    steps (int): ascent steps K.
    norm (str): ``l2`` or ``linf``.
    per (str): scope of the L2 norm: ``token``, ``sequence`` or ``batch``.
    weight (float): adversarial loss weight.
    warmup_steps (int): optimizer steps without perturbation at the start.
    target (str): ``word`` or ``embeddings``.
    """
    check_settings(epsilon=epsilon, alpha=alpha, steps=steps, norm=norm, per=per, weight=weight,
                   warmup_steps=warmup_steps, target=target)
    return AdversarialStrategy(method="pgd", epsilon=float(epsilon), alpha=float(alpha), steps=int(steps),
                               norm=norm, per=per, weight=float(weight), warmup_steps=int(warmup_steps),
                               target=target)


@registry.misc("spacy_bioner.FGSM.v2")
def configure_fgsm_v2(*, epsilon: float = 0.03, norm: str = "l2", per: str = "token", scale: str = "relative",
                      weight: float = 1.0, warmup_steps: int = 0, target: str = "word",
                      max_ratio: float = MAX_RATIO) -> AdversarialStrategy:
    """FGSM / FGM with ε on a scale users can reason about: by default each token's embedding moves by
    ε times the batch's mean token norm (``scale = "relative"``, ``per = "token"``).

    The default ε = 0.03 comes from the sweep in ``benchmarks/bench_adversarial.py`` (MiniLM, NCBI-disease,
    ε 0.01–0.3): the best F1 under attack with clean and noisy F1 kept (docs/robustness.md).

    epsilon (float): perturbation size (relative: a fraction of the mean token norm, per token).
    norm (str): ``l2`` or ``linf``.
    per (str): scope of the L2 norm: ``token``, ``sequence`` or ``batch`` (relative: ε stays per token).
    scale (str): ``relative`` or ``absolute`` (ε a length, as ``v1``).
    weight (float): adversarial loss weight.
    warmup_steps (int): optimizer steps without perturbation at the start.
    target (str): ``word`` or ``embeddings``.
    max_ratio (float): warn when a token moves by more than this fraction of its own norm.
    """
    check_settings(epsilon=epsilon, norm=norm, per=per, weight=weight, warmup_steps=warmup_steps, target=target,
                   scale=scale, max_ratio=max_ratio)
    warn_if_certain(epsilon=epsilon, norm=norm, per=per, scale=scale, max_ratio=max_ratio)
    return AdversarialStrategy(method="fgsm", epsilon=float(epsilon), alpha=float(epsilon), steps=1, norm=norm,
                               per=per, weight=float(weight), warmup_steps=int(warmup_steps), target=target,
                               scale=scale, random_start=False, max_ratio=float(max_ratio))


@registry.misc("spacy_bioner.PGD.v2")
def configure_pgd_v2(*, epsilon: float = 0.03, alpha: float = 0.01, steps: int = 3, random_start: bool = True,
                     norm: str = "l2", per: str = "token", scale: str = "relative", weight: float = 1.0,
                     warmup_steps: int = 0, target: str = "word", max_ratio: float = MAX_RATIO) -> AdversarialStrategy:
    """PGD on the relative scale of ``FGSM.v2``, starting from a random point inside the ball (Madry et al.).

    ε is FGSM.v2's swept default and α = ε / 3, so that K = 3 steps can cross the ball (not swept separately).

    Cost: K + 2 forward/backward passes per update with a random start (K + 1 without).

    epsilon (float): radius of the ball (relative: a fraction of the mean token norm, per token).
    alpha (float): step size, on the same scale.
    steps (int): ascent steps K.
    random_start (bool): start inside the ball at random (False: at δ = 0, as ``v1``).
    norm (str): ``l2`` or ``linf``.
    per (str): scope of the L2 norm.
    scale (str): ``relative`` or ``absolute``.
    weight (float): adversarial loss weight.
    warmup_steps (int): optimizer steps without perturbation at the start.
    target (str): ``word`` or ``embeddings``.
    max_ratio (float): warn when a token moves by more than this fraction of its own norm.
    """
    check_settings(epsilon=epsilon, alpha=alpha, steps=steps, norm=norm, per=per, weight=weight,
                   warmup_steps=warmup_steps, target=target, scale=scale, max_ratio=max_ratio)
    warn_if_certain(epsilon=epsilon, norm=norm, per=per, scale=scale, max_ratio=max_ratio)
    return AdversarialStrategy(method="pgd", epsilon=float(epsilon), alpha=float(alpha), steps=int(steps),
                               norm=norm, per=per, weight=float(weight), warmup_steps=int(warmup_steps),
                               target=target, scale=scale, random_start=bool(random_start),
                               max_ratio=float(max_ratio))


def warn_if_certain(*, epsilon: float, norm: str, per: str, scale: str, max_ratio: float) -> None:
    """Warn when the config alone says tokens will move by more than ``max_ratio`` of their norm on average.

    That is certain for a relative ε per token (L2, or L∞ whose per-token norm is the same); other
    settings are checked on every update from what the perturbation actually did.
    """
    if scale == "relative" and (per == "token" or norm == "linf") and epsilon > max_ratio:
        warnings.warn(f"bioner_adversarial: epsilon = {epsilon} moves every token by {epsilon:.0%} of the mean "
                      f"token norm, above max_ratio = {max_ratio}; the measured default is "
                      f"{DEFAULT_STRATEGY['epsilon']} (docs/robustness.md)", UserWarning, stacklevel=3)


@Language.factory(
    "bioner_adversarial",
    default_config={"strategy": DEFAULT_STRATEGY, "transformer": "transformer"},
)
def make_bioner_adversarial(nlp: Language, name: str, strategy: AdversarialStrategy,
                            transformer: str) -> "AdversarialTraining":
    """Adversarial training of the transformer's embeddings (no effect at inference).

    strategy (AdversarialStrategy): ``spacy_bioner.FGSM.v2`` / ``PGD.v2`` (or the ``v1`` ones).
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
        #: No parameters: it exists so that spaCy's loop calls ``finish_update`` once per optimizer step.
        self.model: Model = noop()
        self.n_updates = 0
        self.n_steps = 0
        self.n_perturbed = 0
        self.ratio_mean = 0.0  # over every perturbed update so far
        self.ratio_max = 0.0
        self._interval: List[Any] = [0.0, 0, 0.0]  # ratio × tokens, tokens, max ratio since the last reset
        self._tokens = 0
        self._warned = False
        self._warned_stepped = False
        self._hook: Any = None

    @property
    def is_trainable(self) -> bool:
        return True

    # ------------------------------------------------------------- inference: nothing
    def __call__(self, doc: Doc) -> Doc:
        return doc

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        yield from stream

    # ------------------------------------------------------------------ training
    def initialize(self, get_examples: Any = None, *, nlp: Optional[Language] = None) -> None:
        """Check the heads come first and hook the transformer's embeddings (the first update perturbs already)."""
        if nlp is not None:
            self.nlp = nlp
        self.check_order()
        self.hook()

    def check_order(self) -> None:
        """A ConfigValueError unless every head listening to the transformer runs before this component.

        Placed before a head, the clean pass has not reached the embeddings yet when ``update`` runs,
        and the component would silently do nothing.
        """
        names = list(self.nlp.component_names)  # disabled ones too: init_nlp disables sourced components
        listening = [n for n in names if n in set(getattr(self.transformer(), "listening_components", []))]
        if not listening:
            raise ConfigValueError(f"{self.name}: no component listens to {self.transformer_name!r}, so there is "
                                   "no loss to perturb; add an entity head (ner or bioner_tagger) with a "
                                   "TransformerListener")
        late = [n for n in listening if self.name in names and names.index(n) > names.index(self.name)]
        if late:
            order = [n for n in names if n != self.name]
            order.insert(max(order.index(n) for n in listening) + 1, self.name)
            raise ConfigValueError(f"{self.name} must come after the heads that listen to "
                                   f"{self.transformer_name!r} ({', '.join(late)} comes after it): "
                                   f"[nlp] pipeline = {order}")

    def transformer(self) -> Any:
        """The transformer component this one perturbs."""
        if self.transformer_name not in self.nlp.component_names:
            raise ConfigValueError(f"{self.name}: no component {self.transformer_name!r} in the pipeline "
                             f"({', '.join(self.nlp.component_names)}); set components.{self.name}.transformer")
        return self.nlp.get_pipe(self.transformer_name)

    def hf_shim(self) -> Any:
        """The transformer's PyTorch shim (holding the Hugging Face model), or None before initialisation."""
        return hf_shim(self.transformer())

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
        return listening_heads(self.nlp, self.transformer())

    def finish_update(self, sgd: Any) -> None:
        """Count one optimizer step (spaCy's loop calls this once per step; there is nothing to step)."""
        self.n_steps += 1

    def update(self, examples: Iterable[Example], *, drop: float = 0.0, sgd: Any = None,
               losses: Optional[Dict[str, float]] = None) -> Dict[str, float]:
        """Add the gradients of the heads' losses on perturbed embeddings to the clean ones (no step).

        examples (Iterable[Example]): the batch the pipeline was just updated on.
        drop (float): dropout rate for the perturbed passes.
        sgd: unused (spaCy steps the components after ``nlp.update``).
        losses (Dict[str, float]): gets the weighted adversarial loss under this component's name, and
            the mean and max per-token ratio ‖δ‖/‖e‖ since the last reset under ``NAME.ratio_mean`` /
            ``NAME.ratio_max``.
        RETURNS (Dict[str, float]): ``losses``.
        """
        from ..models.adversarial import grad_scale, merge_grads, take_grads, unscale

        if losses is None:
            losses = {}
        if self.name not in losses:  # a fresh dict: spaCy resets it after each evaluation
            self._interval = [0.0, 0, 0.0]
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        hook = self.hook()
        if hook is None or not any(len(eg.predicted) for eg in examples):
            return losses
        self.n_updates += 1
        s = self.strategy
        grads = hook.grads()
        outputs = hook.values()
        hook.clear()
        shim = self.hf_shim()
        if self.n_steps < s.warmup_steps:
            if self.n_steps == 0 and self.n_updates == 4 * s.warmup_steps + 16:
                warnings.warn(f"{self.name}: {self.n_updates} updates but no optimizer step counted: warmup_steps "
                              "counts calls of finish_update, which spaCy's loop makes once per step; a custom "
                              "loop must call it too", UserWarning, stacklevel=2)
            return losses
        if grads is None or s.weight == 0:
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
        if self.n_perturbed < 3 and not self._warned_stepped and heads_were_stepped(clean, g):
            self._warned_stepped = True
            warnings.warn(f"{self.name}: the heads' gradients are all zero before this component's update: the loop "
                          "stepped them already (nlp.update with sgd=optimizer or sgd=None steps each component "
                          "as it goes), so the adversarial gradients land in the next step; update with sgd=False "
                          "and call finish_update afterwards, as spaCy's loop does", UserWarning, stacklevel=2)
        scratch: Dict[str, float] = {}
        try:
            delta = perturbation(s, g, outputs, ascend=lambda d: self._ascent(examples, d, heads, models, params,
                                                                                drop=drop, scale=scale))
            self._perturbed_pass(examples, delta, heads, drop=drop, losses=scratch)
        finally:
            hook.deltas = None
            hook.clear()
            merge_grads(models, params, clean, weight=s.weight)
        self.n_perturbed += 1
        losses[self.name] += s.weight * sum(scratch.get(name, 0.0) for name in heads)
        self._record(delta, g, outputs, losses)
        return losses

    def _ascent(self, examples: List[Example], delta: List[Any], heads: List[str], models: List[Any],
                params: List[Any], *, drop: float, scale: Any) -> Optional[List[Any]]:
        """The loss gradient at ``δ`` (a PGD ascent pass, whose weight gradients are dropped)."""
        return ascent_gradient(self.nlp, self.transformer(), self._hook, examples, delta, heads, models, params,
                               drop=drop, scale=scale)

    def _record(self, delta: List[Any], grads: List[Any], outputs: List[Any], losses: Dict[str, float]) -> None:
        """Token-weighted mean and max of ‖δ_t‖/‖e_t‖: over the run, and since the last evaluation (``losses``)."""
        from ..models.adversarial import ratios, token_mask

        masks = token_mask(grads)
        mean, top = ratios(delta, outputs, masks)
        count = sum(int(m.sum()) for m in masks)
        self._tokens += count
        if self._tokens:
            self.ratio_mean += (mean - self.ratio_mean) * count / self._tokens
        self.ratio_max = max(self.ratio_max, top)
        interval = self._interval
        interval[0] += mean * count
        interval[1] += count
        interval[2] = max(interval[2], top)
        losses[f"{self.name}.ratio_mean"] = interval[0] / interval[1] if interval[1] else 0.0
        losses[f"{self.name}.ratio_max"] = interval[2]
        s = self.strategy
        if top > s.max_ratio and not self._warned:
            self._warned = True
            fix = ("lower epsilon" if (s.scale, s.per) == ("relative", "token") else
                   f"lower epsilon, or use spacy_bioner.{s.method.upper()}.v2 (scale = \"relative\", per = \"token\")")
            warnings.warn(f"{self.name}: the perturbation moved a token's embedding by {top:.0%} of its norm "
                          f"(mean {mean:.1%}), above max_ratio = {s.max_ratio}; {fix}", UserWarning, stacklevel=2)

    def _perturbed_pass(self, examples: List[Example], delta: List[Any], heads: List[str], *, drop: float,
                        losses: Dict[str, float]) -> None:
        """Forward and backward through the transformer and the heads with ``δ`` added to the embeddings."""
        perturbed_pass(self.nlp, self.transformer(), self._hook, examples, delta, heads, drop=drop, losses=losses)


def hf_shim(transformer: Any) -> Any:
    """A transformer component's PyTorch shim (holding the Hugging Face model), or None before initialisation."""
    for node in transformer.model.walk():
        for shim in node.shims:
            if getattr(shim, "_model", None) is not None:
                return shim
    return None


def listening_heads(nlp: Language, transformer: Any) -> List[str]:
    """Trainable components listening to ``transformer``, in pipeline order (frozen ones left out)."""
    listening = set(getattr(transformer, "listening_components", []))
    frozen = set(nlp.config.get("training", {}).get("frozen_components", []) or [])
    return [name for name in nlp.pipe_names if name in listening and name not in frozen]


def perturbation(s: AdversarialStrategy, grads: List[Any], outputs: List[Any], *, ascend: Any) -> List[Any]:
    """The perturbation a strategy builds from the clean gradients (FGSM, or PGD calling ``ascend``).

    s (AdversarialStrategy): the settings.
    grads (List[torch.Tensor]): the clean loss's gradients w.r.t. the embedding outputs (unscaled).
    outputs (List[torch.Tensor]): the clean embedding outputs (for the relative scale).
    ascend (Callable[[List[Tensor]], Optional[List[Tensor]]]): the loss gradient at a perturbation.
    RETURNS (List[torch.Tensor]): ``δ``.
    """
    from ..models import adversarial as adv

    eps = adv.radii(outputs, grads, epsilon=s.epsilon, norm=s.norm, per=s.per, scale=s.scale)
    if s.method != "pgd":
        return adv.fgsm_delta(grads, epsilon=eps, norm=s.norm, per=s.per)
    alpha = adv.radii(outputs, grads, epsilon=s.alpha, norm=s.norm, per=s.per, scale=s.scale)
    # from δ = 0 the first step uses the clean gradient; from a random start it needs its own pass
    delta, g = (adv.random_start(grads, epsilon=eps, norm=s.norm, per=s.per), None) if s.random_start else (None, grads)
    for _ in range(s.steps):
        if g is None:
            g = ascend(delta)
            if g is None:
                break
        delta = adv.pgd_step(delta, g, alpha=alpha, epsilon=eps, norm=s.norm, per=s.per)
        g = None
    return delta if delta is not None else adv.fgsm_delta(grads, epsilon=eps, norm=s.norm, per=s.per)


def heads_were_stepped(clean: Dict[Any, Any], grads: Sequence[Any]) -> bool:
    """Whether the heads' (thinc) gradients taken after the clean pass are all zero although the loss
    reached the embeddings: an optimizer step zeroed them before ``update`` ran (a batch whose tokens
    all lack gold tags has zero gradients everywhere, and is not that).

    clean (Dict[GradKey, array]): what :func:`~spacy_bioner.models.adversarial.take_grads` returned.
    grads (Sequence[array]): the loss gradient at the embedding output, per (sub-)batch.
    RETURNS (bool): True when the embeddings' gradient is not zero and every thinc gradient is.
    """
    thinc = [g for key, g in clean.items() if key[0] == "thinc"]
    if not thinc or any(bool(abs(g).sum()) for g in thinc):
        return False
    return any(bool(abs(g).sum()) for g in grads)


def ascent_gradient(nlp: Language, transformer: Any, hook: Any, examples: List[Example], delta: List[Any],
                    heads: List[str], models: List[Any], params: List[Any], *, drop: float,
                    scale: Any) -> Optional[List[Any]]:
    """The loss gradient w.r.t. the embeddings at ``δ``, unscaled; the weight gradients of that pass are dropped
    (None when a gradient is missing or not finite)."""
    from ..models.adversarial import drop_grads, unscale

    perturbed_pass(nlp, transformer, hook, examples, delta, heads, drop=drop, losses={})
    g = hook.grads()
    drop_grads(models, params)
    return unscale(g, scale) if g is not None else None


def perturbed_pass(nlp: Language, transformer: Any, hook: Any, examples: List[Example], delta: Optional[List[Any]],
                   heads: List[str], *, drop: float, losses: Dict[str, float]) -> None:
    """Forward and backward through the transformer and the heads with ``δ`` added to the embeddings."""
    hook.deltas = delta  # None: a clean pass (the gradient at δ = 0)
    try:
        transformer.update(examples, drop=drop, sgd=None, losses=losses)
        for name in heads:
            nlp.get_pipe(name).update(examples, drop=drop, sgd=None, losses=losses)
    finally:
        hook.deltas = None


def prediction_input(doc: Doc) -> Doc:
    """A copy of ``doc`` as prediction sees it: without the types its corpus annotates, so a task prompt
    (``spacy_bioner.TransformerModel.v5``) asks for every type in the attacked pass and in prediction alike.

    doc (Doc): an Example's predicted Doc.
    RETURNS (Doc): the copy.
    """
    from ..corpus.mixes import ANNOTATES, PROMPTED, PROMPTED_CORPUS

    copy = doc.copy()
    for key in (ANNOTATES, PROMPTED, PROMPTED_CORPUS):
        copy.user_data.pop(key, None)
    return copy


def attack(nlp: Language, examples: Sequence[Example], *, strategy: AdversarialStrategy,
           transformer: str = "transformer", batch_size: int = 64) -> Dict[str, Any]:
    """Predictions of a trained pipeline under a test-time attack on its embeddings (the weights are left alone).

    For each batch, the heads' losses on the gold annotation are backpropagated to the embedding
    output (no dropout: the backbone runs in eval mode), the strategy builds ``δ`` from that
    gradient exactly as in training, and the pipeline predicts with ``δ`` added. Every gradient is
    dropped afterwards and nothing is stepped, so the pipeline predicts as before once this returns.

    nlp (Language): a trained pipeline with a transformer and heads listening to it (torch runtime).
    examples (Sequence[Example]): gold Examples; their predicted Docs hold the words only.
    strategy (AdversarialStrategy): e.g. ``configure_fgsm_v2(epsilon=...)``.
    transformer (str): the transformer component's name.
    batch_size (int): Examples per attacked batch.
    RETURNS (Dict[str, Any]): ``docs`` (predicted, in the order of ``examples``), ``ratio_mean`` and
        ``ratio_max`` (per-token ‖δ‖/‖e‖ over every batch).
    """
    from ..models.adversarial import EmbeddingHook, drop_grads, grad_scale, ratios, token_mask, unscale

    if transformer not in nlp.pipe_names:
        raise ConfigValueError(f"attack: no component {transformer!r} in the pipeline ({', '.join(nlp.pipe_names)})")
    trf = nlp.get_pipe(transformer)
    shim = hf_shim(trf)
    if shim is None or not hasattr(shim._model, "parameters"):
        raise ConfigValueError("attack: the transformer runs on torch only (not --runtime onnx or --int8)")
    heads = listening_heads(nlp, trf)
    if not heads:
        raise ConfigValueError(f"attack: no component listens to {transformer!r}; nothing to attack")
    hf = shim._model
    models = [nlp.get_pipe(name).model for name in heads]
    params = list(hf.parameters())
    examples = [Example(prediction_input(eg.predicted), eg.reference) for eg in examples]
    hook = EmbeddingHook(hf, target=strategy.target, always=True)

    def no_dropout(module: Any, args: Any) -> None:  # returns None: the inputs stay as they are
        module.eval()

    eval_mode = hf.register_forward_pre_hook(no_dropout)  # thinc's begin_update calls train(); no dropout here
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].reference))
    out: List[Optional[Doc]] = [None] * len(examples)
    stats: List[Any] = []
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = [examples[i] for i in idx]
            if not any(len(eg.predicted) for eg in batch):
                docs = predict_batch(nlp, trf, [eg.predicted.copy() for eg in batch])
            else:
                perturbed_pass(nlp, trf, hook, batch, None, heads, drop=0.0, losses={})
                grads, outputs = hook.grads(), hook.values()
                drop_grads(models, params)

                def ascend(delta: List[Any]) -> Optional[List[Any]]:
                    return ascent_gradient(nlp, trf, hook, batch, delta, heads, models, params, drop=0.0,
                                           scale=grad_scale(shim))

                grads = unscale(grads, grad_scale(shim)) if grads is not None else None
                if grads is None:
                    raise ConfigValueError("attack: no finite gradient reached the embeddings (fp16 overflow?)")
                delta = perturbation(strategy, grads, outputs, ascend=ascend)
                mean, top = ratios(delta, outputs, token_mask(grads))
                stats.append((mean, top, sum(int(m.sum()) for m in token_mask(grads))))
                hook.clear()
                hook.deltas = delta
                try:
                    docs = predict_batch(nlp, trf, [eg.predicted.copy() for eg in batch])
                finally:
                    hook.deltas = None
                    hook.clear()
            for i, doc in zip(idx, docs):
                out[i] = doc
    finally:
        eval_mode.remove()
        hook.remove()
        drop_grads(models, params)
    n = sum(k for _, _, k in stats)
    return {"docs": out, "ratio_mean": sum(m * k for m, _, k in stats) / n if n else 0.0,
            "ratio_max": max((t for _, t, _ in stats), default=0.0)}


def predict_batch(nlp: Language, transformer: Any, docs: List[Doc]) -> List[Doc]:
    """Run the pipeline over ``docs`` with the transformer predicting them as one batch, as ``update`` does.

    ``Transformer.pipe`` regroups Docs by padded size, and a perturbation is laid out by the
    batch it was computed on, so the transformer's ``predict`` gets the very same batch here.
    """
    for name, proc in nlp.pipeline:
        if proc is transformer:
            proc.set_annotations(docs, proc.predict(docs))
        elif hasattr(proc, "pipe"):
            docs = list(proc.pipe(docs, batch_size=max(len(docs), 1)))
        else:
            docs = [proc(doc) for doc in docs]
    return docs
