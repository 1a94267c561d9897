"""Length buckets: run a padded transformer batch as a few sub-batches of similar length.

spacy-transformers pads every window of a batch to the longest one. With
sentences of 5 to 100 words in one batch, over 40 % of the positions the
transformer computes on CPU are padding (NCBI-disease test, 64 sentences per
batch sorted by words: 47,820 positions for 33,408 subwords). Splitting the rows
into groups whose lengths are within ``ratio`` of the group's longest, and
trimming each group's padding, removes most of that work; the outputs are padded
back and put in the original row order, so everything downstream (alignment,
listeners, backprop) sees the same shapes.

On a GPU a small batch is bound by kernel launches, not arithmetic, so extra
sub-batches cost more than the padding they save: buckets are off there unless
asked for. The patch is an instance ``forward`` on the Hugging Face module: its
``state_dict`` (and so serialisation) is unchanged.

:func:`padded_size_groups` is the other way of bucketing by length: rows sorted
by length and grouped under a budget of padded positions (the decoder's
prediction batches, ``spacy_bioner.DecoderTagger.v1``).
"""
from typing import Any, List, Sequence

from ..errors import ConfigValueError

#: Attribute on the patched Hugging Face module holding its bucket settings.
PATCH_ATTR = "_bioner_length_buckets"


def length_groups(lengths: Sequence[int], *, ratio: float) -> List[List[int]]:
    """Rows grouped longest first; a row starts a new group when it is shorter than
    ``ratio`` × the current group's longest row.

    lengths (Sequence[int]): real (unpadded) length of each row.
    ratio (float): in (0, 1]; 1 groups only equal lengths, values near 0 make one group.
    RETURNS (List[List[int]]): row indices per group, every row exactly once.
    """
    check_ratio(ratio, allow_off=False)
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: List[List[int]] = []
    for i in order:
        if not groups or lengths[i] < ratio * lengths[groups[-1][0]]:
            groups.append([])
        groups[-1].append(i)
    return groups


def padded_size_groups(lengths: Sequence[int], *, max_items: int) -> List[List[int]]:
    """Rows sorted shortest first, cut into groups whose padded size (rows × longest) stays within ``max_items``.

    lengths (Sequence[int]): real (unpadded) length of each row.
    max_items (int): padded positions a group may hold; a row longer than that is a group of its own.
    RETURNS (List[List[int]]): row indices per group, every row exactly once.
    """
    groups: List[List[int]] = []
    current: List[int] = []
    longest = 0
    for i in sorted(range(len(lengths)), key=lambda k: lengths[k]):
        size = max(longest, lengths[i])
        if current and size * (len(current) + 1) > max_items:
            groups.append(current)
            current, size = [], lengths[i]
        current.append(i)
        longest = size
    if current:
        groups.append(current)
    return groups


def check_ratio(ratio: float, *, allow_off: bool = True) -> None:
    """A bucket ratio in (0, 1], or 0 (off) where ``allow_off``; anything else is a ValueError."""
    if (allow_off and ratio == 0) or 0 < ratio <= 1:
        return
    raise ConfigValueError(f"length_buckets must be {'0 (off) or ' if allow_off else ''}in (0, 1], got {ratio}")


def padded_cost(lengths: Sequence[int], groups: Sequence[Sequence[int]]) -> int:
    """Positions computed when each group is padded to its longest row."""
    return sum(len(g) * max((lengths[i] for i in g), default=0) for g in groups)


def enable_length_buckets(module: Any, *, ratio: float, on_gpu: bool = False) -> None:
    """Make a Hugging Face encoder/decoder run padded batches in length buckets.

    module (torch.nn.Module): the transformer (called with ``input_ids``,
        ``attention_mask`` and optionally ``token_type_ids`` / ``position_ids``).
    ratio (float): bucket ratio (see :func:`length_groups`); 0 turns buckets off.
    on_gpu (bool): also bucket when the module is on a CUDA device.
    """
    import types

    check_ratio(ratio)
    setattr(module, PATCH_ATTR, (float(ratio), bool(on_gpu)))
    if "forward" not in vars(module):
        module.forward = types.MethodType(forward, module)


def forward(self: Any, *args: Any, **kwargs: Any) -> Any:
    """The module's own forward, per length bucket when that saves positions."""
    plain = type(self).forward
    ratio, on_gpu = getattr(self, PATCH_ATTR, (0.0, False))
    mask = kwargs.get("attention_mask")
    if args or not ratio or mask is None or mask.dim() != 2 or mask.shape[0] < 2:
        return plain(self, *args, **kwargs)
    if mask.device.type != "cpu" and not on_gpu:
        return plain(self, *args, **kwargs)
    config = getattr(self, "config", None)
    if kwargs.get("output_attentions") or getattr(config, "output_attentions", False):
        return plain(self, *args, **kwargs)  # [rows, heads, positions, positions]: not merged across buckets
    lengths = mask.sum(dim=1).tolist()
    groups = length_groups(lengths, ratio=ratio)
    if len(groups) < 2 or padded_cost(lengths, groups) >= 0.95 * mask.numel():
        return plain(self, *args, **kwargs)
    return _bucketed(self, plain, kwargs, groups)


def _bucketed(self: Any, plain: Any, kwargs: dict, groups: List[List[int]]) -> Any:
    import torch
    import torch.nn.functional as F

    mask = kwargs["attention_mask"]
    n_rows, width = mask.shape
    if "use_cache" not in kwargs and getattr(getattr(self, "config", None), "use_cache", False):
        kwargs = {**kwargs, "use_cache": False}  # decoders' key/value caches differ in width per bucket
    outputs = []
    spans = []
    for group in groups:
        idx = torch.as_tensor(group, device=mask.device)
        cols = mask.index_select(0, idx).any(dim=0).nonzero().flatten()
        start, end = (int(cols[0]), int(cols[-1]) + 1) if len(cols) else (0, 1)
        sub = {k: (v.index_select(0, idx)[:, start:end].contiguous()
                   if torch.is_tensor(v) and v.dim() == 2 and tuple(v.shape) == (n_rows, width) else v)
               for k, v in kwargs.items()}
        outputs.append(plain(self, **sub))
        spans.append((start, end))
    order = [i for group in groups for i in group]
    inverse = torch.empty(n_rows, dtype=torch.long, device=mask.device)
    inverse[torch.as_tensor(order, device=mask.device)] = torch.arange(n_rows, device=mask.device)

    def merge(values: List[Any]) -> Any:
        first = values[0]
        if torch.is_tensor(first):
            parts = []
            for value, (start, end) in zip(values, spans):
                if value.dim() == 3 and value.shape[1] == end - start:  # [rows, positions, hidden]: pad back
                    value = F.pad(value, [0, 0, start, width - end])
                parts.append(value)
            return torch.cat(parts, dim=0).index_select(0, inverse)
        if isinstance(first, tuple):
            return tuple(merge([v[i] for v in values]) for i in range(len(first)))
        return first

    merged = type(outputs[0])()
    for key in outputs[0].keys():
        if key == "past_key_values":
            continue
        value = merge([out[key] for out in outputs])
        if value is not None:
            merged[key] = value
    return merged
