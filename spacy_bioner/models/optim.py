"""A torch-native optimizer step for a transformer's weights.

thinc updates a PyTorch model one parameter at a time: for each of MiniLM's
~100 tensors it converts torch → NumPy/CuPy, clips that tensor's gradient
alone, runs Adam and converts back. Here the transformer's weights take one
``torch.optim.AdamW`` step instead, with the global gradient norm clipped as
Hugging Face's Trainer does. The step uses torch's ``fused`` kernel, on CPU (torch
≥ 2.4) as on CUDA, and ``foreach`` on a device or dtype without a fused kernel
(``benchmarks/bench_optim.py``, MiniLM's weights on a 2-core CPU, clipping
included: 40 ms per step, against 118 ms with ``foreach`` and 139 ms for the
AdamW HF's Trainer builds by default). The
learning rate, betas, eps and weight decay still come from the thinc optimizer
of the training config, so the schedule (warm-up, decay) is the config's own.
"""
from functools import partial
from typing import TYPE_CHECKING, Any, List

from thinc.api import Model, Optimizer

if TYPE_CHECKING:
    import torch

#: Attribute under which a shim keeps its torch optimizer.
STATE = "_spacy_bioner_adamw"


def use_torch_optimizer(model: Model) -> Model:
    """Make every PyTorch shim in ``model`` update with :func:`torch_finish_update`.

    model (Model): e.g. a ``spacy_bioner.TransformerModel.v2`` after initialisation.
    RETURNS (Model): the same model.
    """
    from thinc.shims.pytorch import PyTorchShim

    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, PyTorchShim) and not isinstance(getattr(shim, "finish_update", None), partial):
                shim.finish_update = partial(torch_finish_update, shim)
    return model


def torch_finish_update(shim, optimizer: Optimizer) -> None:
    """One AdamW step over all of the shim's parameters, driven by the thinc optimizer's settings.

    shim (PyTorchShim): holds the torch model (``shim._model``) and its gradients.
    optimizer (Optimizer): the training config's thinc optimizer (its current
        ``learn_rate``, ``b1``, ``b2``, ``eps``, ``L2``, ``grad_clip``).
    """
    import torch

    adam = getattr(optimizer, "b1", 0) > 0 and getattr(optimizer, "b2", 0) > 0
    coupled_l2 = bool(optimizer.L2) and not optimizer.L2_is_weight_decay
    if getattr(optimizer, "averages", None) is not None or getattr(optimizer, "use_radam", False) \
            or not adam or coupled_l2:
        # parameter averaging, RAdam, SGD and L2 added to the gradient are thinc's own: keep its per-parameter path
        type(shim).finish_update(shim, optimizer)
        return
    named = [(name, p) for name, p in shim._model.named_parameters() if p.requires_grad]
    params: List[torch.nn.Parameter] = [p for _, p in named]
    state = getattr(shim, STATE, None)
    if state is None or len(state[1]) != len(params) or any(q.data_ptr() != p.data_ptr()
                                                            for q, p in zip(state[1], params)):
        # The optimizer works on `.data` views of the weights: the same memory, but updating them
        # does not bump the autograd version of the parameters, so a graph built before this step
        # (spaCy's `nlp.update(..., sgd=optimizer)` steps before the listeners' backward) stays valid.
        views = [p.data for p in params]
        decay_names = set(decay_parameter_names(shim._model))
        # Two groups, as HF's Trainer: no weight decay on biases and normalisation weights.
        groups = [{"params": [v for (name, _), v in zip(named, views) if name in decay_names], "decay": True},
                  {"params": [v for (name, _), v in zip(named, views) if name not in decay_names], "decay": False}]
        adamw = adamw_optimizer([g for g in groups if g["params"]], lr=float(optimizer.learn_rate),
                                betas=(optimizer.b1, optimizer.b2), eps=optimizer.eps, weight_decay=0.0)
        state = (adamw, views)
        setattr(shim, STATE, state)
    adamw, views = state
    for view, param in zip(views, params):
        view.grad = param.grad
    if not shim._grad_scaler.found_inf:  # skip the step when a mixed-precision gradient overflowed
        rate = float(optimizer.learn_rate)
        for group in adamw.param_groups:  # follow the config's (possibly scheduled) settings every step
            group["lr"] = rate
            group["betas"] = (float(optimizer.b1), float(optimizer.b2))
            group["eps"] = float(optimizer.eps)
            group["weight_decay"] = float(optimizer.L2) if group["decay"] else 0.0
        if optimizer.grad_clip:
            torch.nn.utils.clip_grad_norm_([p for p in params if p.grad is not None], optimizer.grad_clip)
        adamw.step()
    for view, param in zip(views, params):
        view.grad = None
        if param.grad is not None:
            param.grad.zero_()
    shim._grad_scaler.update()


#: Parameter-name patterns HF's Trainer keeps out of weight decay (``Trainer.get_decay_parameter_names``).
NO_DECAY_PATTERNS = [r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)"]


def decay_parameter_names(module: "torch.nn.Module") -> List[str]:
    """Names of the parameters that take weight decay: all but biases and LayerNorm/RMSNorm weights.

    The selection of Hugging Face's ``Trainer.get_decay_parameter_names`` (parameters of
    ``torch.nn.LayerNorm`` modules and names matching :data:`NO_DECAY_PATTERNS` excluded), written
    here because ``get_parameter_names`` only takes name patterns in recent transformers.
    module (torch.nn.Module): the model.
    RETURNS (List[str]): parameter names as ``named_parameters`` gives them.
    """
    import re

    import torch

    patterns = [re.compile(p) for p in NO_DECAY_PATTERNS]
    in_norm = {f"{prefix}.{name}" if prefix else name
               for prefix, sub in module.named_modules() if isinstance(sub, torch.nn.LayerNorm)
               for name, _ in sub.named_parameters(recurse=False)}
    return [name for name, _ in module.named_parameters()
            if name not in in_norm and not any(p.search(name.lower()) for p in patterns)]


def adamw_optimizer(params: List[Any], **settings: Any) -> "torch.optim.AdamW":
    """``torch.optim.AdamW`` with the fused kernel where torch has one for these tensors, else ``foreach``.

    params (List[Any]): the tensors to update, or parameter groups (dicts with ``params``).
    settings: ``lr``, ``betas``, ``eps``, ``weight_decay``.
    RETURNS (torch.optim.AdamW): the optimizer.
    """
    import torch

    fused = has_fused_kernel([t for p in params for t in (p["params"] if isinstance(p, dict) else [p])])
    return torch.optim.AdamW(params, **({"fused": True} if fused else {"foreach": True}), **settings)


def has_fused_kernel(params: List["torch.Tensor"]) -> bool:
    """Whether torch's fused AdamW covers every tensor (floating point, on a device with the kernel).

    torch ≥ 2.4 only checks at the first ``step()``, so this decides before the optimizer is built.
    params (List[torch.Tensor]): the tensors to update.
    """
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:  # older torch: the fused kernel is CUDA's only
        devices = {"cuda"}
    else:
        devices = set(_get_fused_kernels_supported_devices())
    return all(p.is_floating_point() and p.device.type in devices for p in params)
