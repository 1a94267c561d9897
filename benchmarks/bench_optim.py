"""Milliseconds per optimizer step for a transformer's weights, one table:

* thinc's per-parameter loop (spaCy's default for a PyTorch model: each tensor
  converted, clipped alone and updated by thinc's Adam, then converted back);
* ``torch.optim.AdamW`` as Hugging Face's Trainer builds it by default
  (``optim="adamw_torch"``: no ``foreach``/``fused`` argument, so torch picks);
* ``AdamW(foreach=True)`` (spacy-bioner's step before 0.2.0 on CPU);
* ``AdamW(fused=True)``, spacy-bioner's step (``spacy_bioner.models.optim``).

Every row updates the same random-init weights (the shapes are all that matter)
with the same gradients; global-norm clipping at 1.0 is included where the
system does it (HF and spacy-bioner clip the global norm, thinc clips each tensor).
Medians over ``--repeats`` steps after ``--warmup``; setting the gradients is not timed. Nothing is downloaded.

    python benchmarks/bench_optim.py                      # MiniLM-L6 and BERT-base shapes
    python benchmarks/bench_optim.py --json benchmarks/results/bench_optim.json
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

PROJECT = Path(__file__).resolve().parent.parent

#: Model shapes: (label, hidden size, layers, heads, intermediate size).
SHAPES = [("all-MiniLM-L6-v2 shape (22.7M weights)", 384, 6, 12, 1536),
          ("BERT-base shape (109M weights)", 768, 12, 12, 3072)]


def median_ms(step: Callable[[], None], *, prepare: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median milliseconds of ``step`` (``prepare``, untimed, runs before each call)."""
    for _ in range(warmup):
        prepare()
        step()
    times = []
    for _ in range(repeats):
        prepare()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def rows_for(label: str, hidden: int, layers: int, heads: int, intermediate: int, *, warmup: int,
             repeats: int) -> List[Dict]:
    import torch
    from thinc.api import Adam, PyTorchWrapper
    from transformers import BertConfig, BertModel

    sys.path.insert(0, str(PROJECT))
    from spacy_bioner.models.optim import adamw_optimizer, torch_finish_update

    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                 intermediate_size=intermediate))
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [torch.randn_like(p) * 1e-2 for p in params]
    n_weights = sum(p.numel() for p in params)
    settings = dict(lr=1e-4, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)

    def set_grads() -> None:
        for p, g in zip(params, grads):
            p.grad = g.clone()

    def torch_step(optimizer: "torch.optim.Optimizer") -> Callable[[], None]:
        def step() -> None:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        return step

    def thinc_config() -> Adam:
        # as [training.optimizer] in spaCy's and spacy-bioner's configs (use_averages = false)
        return Adam(1e-4, beta1=0.9, beta2=0.999, eps=1e-8, L2=0.01, L2_is_weight_decay=True, grad_clip=1.0,
                    use_averages=False)

    wrapper = PyTorchWrapper(model)
    shim = wrapper.shims[0]
    thinc_adam = thinc_config()

    def thinc_step() -> None:
        type(shim).finish_update(shim, thinc_adam)

    ours_adam = thinc_config()

    def ours_step() -> None:
        torch_finish_update(shim, ours_adam)

    systems = [
        ("thinc per-parameter Adam (spaCy's default)", thinc_step),
        ("torch AdamW, HF Trainer's default (adamw_torch)", torch_step(torch.optim.AdamW(params, **settings))),
        ("torch AdamW foreach=True (spacy-bioner's earlier CPU step)",
         torch_step(torch.optim.AdamW(params, foreach=True, **settings))),
        ("torch AdamW fused=True (`adamw_optimizer`)", torch_step(adamw_optimizer(params, **settings))),
        ("spacy-bioner's `torch_finish_update` (fused, global clip)", ours_step),
    ]
    out = []
    for system, step in systems:
        out.append({"shape": label, "weights": n_weights, "system": system,
                    "ms_median": median_ms(step, prepare=set_grads, warmup=warmup, repeats=repeats)})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    import torch

    rows: List[Dict] = []
    for shape in SHAPES:
        rows.extend(rows_for(*shape, warmup=args.warmup, repeats=args.repeats))
    print(f"\nOne optimizer step over a transformer's weights (lr 1e-4, weight decay 0.01, clip 1.0), "
          f"median of {args.repeats} steps, CPU, {torch.get_num_threads()} torch threads\n")
    print("| shape | system | ms / step | × HF default |")
    print("|---|---|---:|---:|")
    for r in rows:
        hf = next(x for x in rows if x["shape"] == r["shape"] and "HF Trainer" in x["system"])
        print(f"| {r['shape']} | {r['system']} | {r['ms_median']:.1f} | {hf['ms_median'] / r['ms_median']:.2f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                         "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
