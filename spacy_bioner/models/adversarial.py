"""Adversarial perturbation of a transformer's input embeddings (FGSM, PGD): the maths and the plumbing.

Everything here is plain functions and one small hook class; the spaCy
component that drives them is :mod:`spacy_bioner.pipeline.adversarial`.

* A perturbation is a list of tensors, one per call of the embedding layer in
  one forward pass (a padded batch run in length buckets calls it once per
  bucket), each shaped like that call's output ``[rows, positions, hidden]``.
* ``norm = "linf"``: the direction of a gradient ``g`` is ``sign(g)`` and the
  ε-ball is ``|δ_i| <= ε``; ``norm = "l2"``: the direction is ``g / ‖g‖`` and the
  ball is ``‖δ‖ <= ε``, where ``‖·‖`` is taken ``per`` token (over the hidden
  dimension), ``sequence`` (one transformer input row) or ``batch`` (everything
  in the forward pass, as the widely copied FGM recipe normalises the gradient
  of the whole embedding matrix).
* FGSM: ``δ = ε · direction(g)``. PGD: ``δ_0 = 0``, ``δ_{k+1} = Π_ε(δ_k + α · direction(g_k))``
  for ``k < K``, ``g_k`` the loss gradient at ``δ_k`` (``g_0``: the clean pass's); with a random
  start (Madry et al.) ``δ_0`` is drawn inside the ball (:func:`random_start`).
* ``scale = "absolute"``: ε and α are lengths in embedding space (``v1``). ``scale = "relative"``:
  they are fractions of the mean per-token norm ``n̄`` of the clean embedding outputs of the batch,
  given per token whatever the scope: the ball's radius is ``ε · n̄ · √T`` for a scope of ``T``
  tokens (1 per token, the row's tokens per sequence, all per batch), so the root-mean-square
  perturbation of a token is ``ε · n̄`` (:func:`radii`). For ``linf`` the bound per element is
  ``ε · n̄ / √D`` (a sign vector of that size has per-token norm ``ε · n̄``).
* "Tokens" are the positions the loss depends on: those with a non-zero gradient
  (:func:`token_mask`); padding has none and is never perturbed or counted.
* :func:`ratios` measures what a perturbation did: per token ``‖δ_t‖ / ‖e_t‖``.

torch is imported inside the functions: light commands never load it through here.
"""
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import ConfigValueError

NORMS = ("linf", "l2")
SCOPES = ("token", "sequence", "batch")
TARGETS = ("word", "embeddings")
SCALES = ("absolute", "relative")
#: Below this a gradient (or perturbation) norm counts as zero: no direction.
TINY = 1e-12


def check_settings(*, epsilon: float, alpha: Optional[float] = None, steps: int = 1, norm: str, per: str,
                   weight: float = 1.0, warmup_steps: int = 0, target: str = "word", scale: str = "absolute",
                   max_ratio: Optional[float] = None) -> None:
    """A ValueError naming the first bad setting (when the config is built, not mid-training).

    epsilon (float): radius of the ε-ball (> 0).
    alpha (Optional[float]): PGD step size (> 0).
    steps (int): PGD steps K (>= 1).
    norm (str): ``linf`` or ``l2``.
    per (str): ``token``, ``sequence`` or ``batch`` (the scope of an L2 norm).
    weight (float): adversarial loss weight (>= 0).
    warmup_steps (int): clean updates before perturbation starts (>= 0).
    target (str): ``word`` (word embeddings only) or ``embeddings`` (the embedding block's output).
    scale (str): ``absolute`` or ``relative`` (ε and α as fractions of the mean token norm).
    max_ratio (Optional[float]): warn above this per-token ratio ``‖δ_t‖ / ‖e_t‖`` (> 0).
    """
    if not epsilon > 0:
        raise ConfigValueError(f"adversarial: epsilon must be > 0, got {epsilon}")
    if alpha is not None and not alpha > 0:
        raise ConfigValueError(f"adversarial: alpha (step size) must be > 0, got {alpha}")
    if int(steps) != steps or steps < 1:
        raise ConfigValueError(f"adversarial: steps must be an integer >= 1, got {steps}")
    if norm not in NORMS:
        raise ConfigValueError(f"adversarial: norm must be one of {', '.join(NORMS)}, got {norm!r}")
    if per not in SCOPES:
        raise ConfigValueError(f"adversarial: per must be one of {', '.join(SCOPES)}, got {per!r}")
    if not weight >= 0:
        raise ConfigValueError(f"adversarial: weight must be >= 0, got {weight}")
    if int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ConfigValueError(f"adversarial: warmup_steps must be an integer >= 0, got {warmup_steps}")
    if target not in TARGETS:
        raise ConfigValueError(f"adversarial: target must be one of {', '.join(TARGETS)}, got {target!r}")
    if scale not in SCALES:
        raise ConfigValueError(f"adversarial: scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if max_ratio is not None and not max_ratio > 0:
        raise ConfigValueError(f"adversarial: max_ratio must be > 0, got {max_ratio}")


def token_mask(grads: Sequence[Any]) -> List[Any]:
    """Where the loss depends on the embedding output: ``[rows, positions, 1]`` booleans (gradient ≠ 0).

    grads (Sequence[torch.Tensor]): loss gradients w.r.t. the embedding outputs.
    RETURNS (List[torch.Tensor]): one mask per tensor (padding: False).
    """
    return [g.float().norm(dim=-1, keepdim=True) > TINY for g in grads]


def mean_token_norm(outputs: Sequence[Any], masks: Sequence[Any]) -> float:
    """Mean L2 norm of the embedding outputs over the masked tokens (0.0 when there are none).

    outputs (Sequence[torch.Tensor]): clean embedding outputs ``[rows, positions, hidden]``.
    masks (Sequence[torch.Tensor]): from :func:`token_mask`.
    RETURNS (float): ``n̄``.
    """
    total = sum(float((o.detach().float().norm(dim=-1, keepdim=True) * m).sum()) for o, m in zip(outputs, masks))
    count = sum(int(m.sum()) for m in masks)
    return total / count if count else 0.0


def radii(outputs: Sequence[Any], grads: Sequence[Any], *, epsilon: float, norm: str, per: str,
          scale: str) -> Union[float, List[Any]]:
    """The ball's radius for each scope (broadcastable per tensor), or ε itself for ``absolute``.

    outputs (Sequence[torch.Tensor]): the clean embedding outputs.
    grads (Sequence[torch.Tensor]): their loss gradients (which tokens count).
    epsilon (float): ε (or α: any length given on the same scale).
    norm (str): ``l2`` or ``linf`` (linf: per element, divided by √D).
    per (str): the scope of the L2 norm.
    scale (str): ``absolute`` or ``relative``.
    RETURNS (Union[float, List[torch.Tensor]]): ``epsilon`` unchanged (absolute), else one tensor per
        input: ``ε · n̄ · √T`` per scope (``[rows, positions, 1]``, ``[rows, 1, 1]`` or a scalar).
    """
    import torch

    if scale == "absolute":
        return float(epsilon)
    if scale != "relative":
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    masks = token_mask(grads)
    unit = float(epsilon) * mean_token_norm(outputs, masks)
    if norm == "linf":  # per element; never summed over a scope
        return [torch.full_like(m, unit / math.sqrt(g.shape[-1]), dtype=torch.float32) * m for g, m in zip(grads, masks)]
    if per == "token":
        return [m.float() * unit for m in masks]
    if per == "sequence":
        return [torch.sqrt(m.float().sum(dim=(1, 2), keepdim=True)) * unit for m in masks]
    if per == "batch":
        total = math.sqrt(sum(int(m.sum()) for m in masks))
        return [torch.tensor(total * unit) for _ in masks]
    raise ValueError(f"per must be one of {', '.join(SCOPES)}, got {per!r}")


def ratios(deltas: Sequence[Any], outputs: Sequence[Any], masks: Sequence[Any]) -> Tuple[float, float]:
    """Mean and max over the masked tokens of ``‖δ_t‖ / ‖e_t‖``: how far the attack moved each token.

    deltas (Sequence[torch.Tensor]): the perturbation.
    outputs (Sequence[torch.Tensor]): the clean embedding outputs it was added to.
    masks (Sequence[torch.Tensor]): from :func:`token_mask`.
    RETURNS (Tuple[float, float]): mean and max ratio (0.0, 0.0 without tokens).
    """
    import torch

    values = [(d.float().norm(dim=-1) / o.detach().float().norm(dim=-1).clamp_min(TINY))[m.squeeze(-1)]
              for d, o, m in zip(deltas, outputs, masks)]
    values = [v for v in values if v.numel()]
    if not values:
        return 0.0, 0.0
    flat = torch.cat(values)
    return float(flat.mean()), float(flat.max())


def random_start(grads: Sequence[Any], *, epsilon: Union[float, Sequence[Any]], norm: str, per: str,
                 generator: Optional[Any] = None) -> List[Any]:
    """A random point inside the ball (PGD's random start), zero where the gradient is (padding).

    ``linf``: uniform in ``[-ε, ε]`` per element. ``l2``: a uniformly random direction per scope,
    scaled to ``ε · u``, ``u ~ U(0, 1)`` per scope.

    grads (Sequence[torch.Tensor]): the clean gradients (shapes, devices, and which tokens count).
    epsilon (Union[float, Sequence[torch.Tensor]]): the radius, or radii from :func:`radii`.
    norm (str): ``linf`` or ``l2``.
    per (str): scope of the L2 norm.
    generator (Optional[torch.Generator]): random source (None: torch's global one).
    RETURNS (List[torch.Tensor]): the starting perturbation, inside the ball.
    """
    import torch

    masks = token_mask(grads)
    eps = _per_tensor(epsilon, len(grads))
    if norm == "linf":
        return [(torch.rand(g.shape, generator=generator) * 2 - 1).to(g.device) * e * m
                for g, e, m in zip(grads, eps, masks)]
    noise = [torch.randn(g.shape, generator=generator).to(g.device) * m for g, m in zip(grads, masks)]
    unit = direction(noise, norm="l2", per=per)
    norms = l2_norms(noise, per=per)
    out = []
    for u, n, e in zip(unit, norms, eps):
        shape = n.shape if torch.is_tensor(n) and n.dim() else ()
        out.append(u * e * torch.rand(shape, generator=generator).to(u.device))
    if per == "batch" and out:  # one draw for the whole batch
        r = float(torch.rand((), generator=generator))
        out = [u * e * r for u, e in zip(unit, eps)]
    return out


def _per_tensor(epsilon: Union[float, Sequence[Any]], n: int) -> List[Any]:
    return [epsilon] * n if isinstance(epsilon, (int, float)) else list(epsilon)


def l2_norms(tensors: Sequence[Any], *, per: str) -> List[Any]:
    """The L2 norm of each tensor per token, sequence or batch, broadcastable against it.

    tensors (Sequence[torch.Tensor]): ``[rows, positions, hidden]`` each.
    per (str): ``token`` (``[rows, positions, 1]``), ``sequence`` (``[rows, 1, 1]``) or
        ``batch`` (one scalar over all the tensors).
    RETURNS (List[torch.Tensor]): one norm tensor per input, in float32.
    """
    import torch

    if per == "token":
        return [t.float().norm(dim=-1, keepdim=True) for t in tensors]
    if per == "sequence":
        return [t.float().flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1))) for t in tensors]
    if per == "batch":
        total = torch.sqrt(sum((t.float() ** 2).sum() for t in tensors)) if tensors else None
        return [total for _ in tensors]
    raise ValueError(f"per must be one of {', '.join(SCOPES)}, got {per!r}")


def direction(grads: Sequence[Any], *, norm: str, per: str) -> List[Any]:
    """The ascent direction of a gradient: ``sign(g)`` (``linf``) or ``g / ‖g‖`` (``l2``, zero where ``g`` is).

    grads (Sequence[torch.Tensor]): loss gradients w.r.t. the embedding outputs.
    norm (str): ``linf`` or ``l2``.
    per (str): scope of the L2 norm (see :func:`l2_norms`).
    RETURNS (List[torch.Tensor]): unit steps, float32, shaped as ``grads``.
    """
    import torch

    if norm == "linf":
        return [torch.sign(g.float()) for g in grads]
    if norm != "l2":
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return [g.float() / n.clamp_min(TINY) * (n > TINY) for g, n in zip(grads, l2_norms(grads, per=per))]


def project(deltas: Sequence[Any], *, epsilon: Union[float, Sequence[Any]], norm: str, per: str) -> List[Any]:
    """Project perturbations back into the ε-ball: clamp (``linf``) or rescale to norm ε (``l2``).

    deltas (Sequence[torch.Tensor]): perturbations.
    epsilon (Union[float, Sequence[torch.Tensor]]): the ball's radius, or radii per tensor (:func:`radii`).
    norm (str): ``linf`` or ``l2``.
    per (str): scope of the L2 norm.
    RETURNS (List[torch.Tensor]): perturbations inside the ball (unchanged where they were).
    """
    import torch

    eps = _per_tensor(epsilon, len(deltas))
    if norm == "linf":
        return [d.clamp(-e, e) if isinstance(e, (int, float)) else torch.maximum(torch.minimum(d, e), -e)
                for d, e in zip(deltas, eps)]
    if norm != "l2":
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
    return [d * (e / n.clamp_min(TINY)).clamp(max=1.0) for d, n, e in zip(deltas, l2_norms(deltas, per=per), eps)]


def fgsm_delta(grads: Sequence[Any], *, epsilon: Union[float, Sequence[Any]], norm: str, per: str) -> List[Any]:
    """FGSM / FGM: ``ε · sign(g)`` or ``ε · g / ‖g‖``.

    grads (Sequence[torch.Tensor]): clean-loss gradients w.r.t. the embedding outputs (unscaled).
    epsilon (Union[float, Sequence[torch.Tensor]]): perturbation size, or sizes per tensor (:func:`radii`).
    norm (str): ``linf`` or ``l2``.
    per (str): scope of the L2 norm.
    RETURNS (List[torch.Tensor]): the perturbation.
    """
    return [e * d for e, d in zip(_per_tensor(epsilon, len(grads)), direction(grads, norm=norm, per=per))]


def pgd_step(deltas: Optional[Sequence[Any]], grads: Sequence[Any], *, alpha: Union[float, Sequence[Any]],
             epsilon: Union[float, Sequence[Any]], norm: str, per: str) -> List[Any]:
    """One projected ascent step: ``Π_ε(δ + α · direction(g))``.

    deltas (Optional[Sequence[torch.Tensor]]): the current perturbation (None: zero).
    grads (Sequence[torch.Tensor]): loss gradients at ``δ`` (unscaled).
    alpha (Union[float, Sequence[torch.Tensor]]): step size (or sizes per tensor).
    epsilon (Union[float, Sequence[torch.Tensor]]): radius of the ball (or radii per tensor).
    norm (str): ``linf`` or ``l2``.
    per (str): scope of the L2 norm (direction and ball).
    RETURNS (List[torch.Tensor]): the next perturbation.
    """
    moves = fgsm_delta(grads, epsilon=alpha, norm=norm, per=per)
    if deltas is None:
        moved = moves
    else:
        moved = [d.float() + m for d, m in zip(deltas, moves)]
    return project(moved, epsilon=epsilon, norm=norm, per=per)


def unscale(grads: Sequence[Any], scale: Optional[Any]) -> Optional[List[Any]]:
    """Gradients divided by a mixed-precision loss scale; None if any is not finite (overflow).

    grads (Sequence[torch.Tensor]): gradients as backpropagated (scaled when mixed precision is on).
    scale (Optional[torch.Tensor | float]): the scale (None or 1: not scaled).
    RETURNS (Optional[List[torch.Tensor]]): float32 gradients, or None.
    """
    import torch

    out = [g.float() / (scale.to(g.device).float() if torch.is_tensor(scale) else float(scale))
           if scale is not None else g.float() for g in grads]
    if not all(bool(torch.isfinite(g).all()) for g in out):
        return None
    return out


def grad_scale(shim: Any) -> Optional[Any]:
    """The loss scale a thinc PyTorch shim multiplies its gradients by (None when mixed precision is off)."""
    scaler = getattr(shim, "_grad_scaler", None)
    if scaler is None or not getattr(scaler, "_enabled", False):
        return None
    return scaler._scale


class EmbeddingHook:
    """Forward hooks that record a transformer's embedding outputs and add a perturbation to them.

    A forward pre-hook on the whole model starts each forward pass afresh; a
    forward hook on the embedding layer (``get_input_embeddings()`` for
    ``target = "word"``, the model's ``embeddings`` block for ``"embeddings"``)
    then, in training mode with autograd on (never at inference, unless ``always``):

    * adds ``deltas[i]`` to the output of its ``i``-th call when a perturbation is set;
    * keeps the (perturbed) output with ``retain_grad()``, so its gradient can be
      read (:meth:`grads`) once the loss has been backpropagated.

    module (torch.nn.Module): the Hugging Face transformer.
    target (str): ``word`` or ``embeddings``.
    always (bool): act in eval mode and without autograd too (a test-time attack).
    """

    def __init__(self, module: Any, *, target: str = "word", always: bool = False) -> None:
        self.module = module
        self.target = target
        self.always = always
        self.layer = embedding_layer(module, target=target)
        self.outputs: List[Any] = []
        self.deltas: Optional[List[Any]] = None
        self._handles = [module.register_forward_pre_hook(self._start),
                         self.layer.register_forward_hook(self._hook)]

    def _start(self, module: Any, args: Any) -> None:
        self.outputs = []

    def _hook(self, layer: Any, args: Any, output: Any) -> Any:
        import torch

        if not torch.is_tensor(output) or not (self.always or (layer.training and torch.is_grad_enabled())):
            return None
        changed = False
        if self.deltas is not None:
            i = len(self.outputs)
            if i >= len(self.deltas) or tuple(self.deltas[i].shape) != tuple(output.shape):
                raise RuntimeError("adversarial: the perturbed pass does not match the clean one "
                                   f"(embedding call {i}, output {tuple(output.shape)})")
            output = output + self.deltas[i].to(device=output.device, dtype=output.dtype)
            changed = True
        if output.requires_grad:
            output.retain_grad()
            self.outputs.append(output)
        elif self.deltas is not None:
            self.outputs.append(output)
        return output if changed else None

    def grads(self) -> Optional[List[Any]]:
        """Gradients of the last forward pass's embedding outputs (None if any is missing)."""
        if not self.outputs or any(getattr(o, "grad", None) is None for o in self.outputs):
            return None
        return [o.grad for o in self.outputs]

    def values(self) -> List[Any]:
        """The last forward pass's embedding outputs, detached."""
        return [o.detach() for o in self.outputs]

    def clear(self) -> None:
        """Forget the recorded outputs (their tensors and gradients)."""
        self.outputs = []

    def remove(self) -> None:
        """Take the hooks off the model."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.outputs, self.deltas = [], None


def embedding_layer(module: Any, *, target: str = "word") -> Any:
    """The layer whose output is perturbed: the word embeddings, or the whole embedding block.

    module (torch.nn.Module): a Hugging Face model.
    target (str): ``word`` (``get_input_embeddings()``; FreeLB's choice) or ``embeddings``
        (the ``embeddings`` block: word + position (+ type) embeddings, normalised).
    RETURNS (torch.nn.Module): the layer.
    """
    if target == "word":
        return module.get_input_embeddings()
    if target == "embeddings":
        block = getattr(module, "embeddings", None)
        if block is None:
            raise ConfigValueError(f"adversarial: {type(module).__name__} has no `embeddings` block; "
                             "use target = \"word\"")
        return block
    raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")


# ---------------------------------------------------------------------- gradients of a whole pipeline
GradKey = Tuple[str, int, str]


def take_grads(thinc_models: Iterable[Any], torch_params: Iterable[Any]) -> Dict[GradKey, Any]:
    """Move every gradient out of the models: returns copies and leaves zeros (thinc) or None (torch).

    thinc_models (Iterable[Model]): the components' thinc models (walked, shared nodes once).
    torch_params (Iterable[torch.nn.Parameter]): the transformer's parameters.
    RETURNS (Dict[GradKey, array]): the gradients taken, by ``("thinc", node id, name)`` or
        ``("torch", index, "")``.
    """
    taken: Dict[GradKey, Any] = {}
    for node in _thinc_nodes(thinc_models):
        for name in node.param_names:
            if node.has_grad(name):
                grad = node.get_grad(name)
                taken[("thinc", node.id, name)] = grad.copy()
                node.set_grad(name, node.ops.alloc(grad.shape, dtype=grad.dtype))
    for i, param in enumerate(torch_params):
        if param.grad is not None:
            taken[("torch", i, "")] = param.grad.detach().clone()
            param.grad = None
    return taken


def merge_grads(thinc_models: Iterable[Any], torch_params: Iterable[Any], taken: Dict[GradKey, Any], *,
                weight: float) -> None:
    """Set every gradient to ``taken + weight × current`` (the clean pass's plus the weighted adversarial one).

    thinc_models (Iterable[Model]): as given to :func:`take_grads`.
    torch_params (Iterable[torch.nn.Parameter]): as given to :func:`take_grads`, in the same order.
    taken (Dict[GradKey, array]): what :func:`take_grads` returned.
    weight (float): the adversarial loss weight.
    """
    for node in _thinc_nodes(thinc_models):
        for name in node.param_names:
            clean = taken.get(("thinc", node.id, name))
            current = node.get_grad(name) if node.has_grad(name) else None
            if current is None and clean is None:
                continue
            total = clean if current is None else (weight * current if clean is None else clean + weight * current)
            node.set_grad(name, total)
    for i, param in enumerate(torch_params):
        clean = taken.get(("torch", i, ""))
        current = param.grad
        if current is None:
            param.grad = clean
        elif clean is None:
            param.grad = current.mul_(weight) if weight != 1 else current
        else:
            param.grad = clean.add_(current, alpha=weight)


def drop_grads(thinc_models: Iterable[Any], torch_params: Iterable[Any]) -> None:
    """Zero every gradient (after a PGD ascent pass, whose gradients only serve to move δ)."""
    for node in _thinc_nodes(thinc_models):
        for name in node.param_names:
            if node.has_grad(name):
                grad = node.get_grad(name)
                node.set_grad(name, node.ops.alloc(grad.shape, dtype=grad.dtype))
    for param in torch_params:
        param.grad = None


def _thinc_nodes(models: Iterable[Any]) -> List[Any]:
    seen, nodes = set(), []
    for model in models:
        for node in model.walk():
            if node.id not in seen:
                seen.add(node.id)
                nodes.append(node)
    return nodes
