"""Decoder taggers (GPT-2 full, Llama-class with LoRA) vs the MiniLM encoder, with ``bioner_tagger``, at equal steps.

Systems trained for the same ``--steps`` × ``--batch-size`` sentences
through ``spacy-bioner train transformer --head tagger``, then scored on the
test split with ``spacy-bioner evaluate`` (seqeval strict):

* ``minilm``: all-MiniLM-L6-v2 (6 layers × 384, pretrained), the encoder path
  (``transformer`` component + listener, first-subword vectors);
* ``gpt2``: a small **random-init** GPT-2 (``--gpt2-layers`` × ``--gpt2-width``,
  6 × 384 by default: MiniLM's shape) through ``spacy_bioner.DecoderTagger.v1``,
  forward only (last-subword vectors);
* ``gpt2-bi``: the same, bidirectional (a second pass over the reversed words,
  separate weights);
* ``llama-full``: a small **random-init** Llama (``--llama-layers`` × ``--llama-width``,
  SentencePiece-style BPE with ``<s>`` trained on the train split) through
  ``spacy_bioner.DecoderTagger.v2`` (``configs/backbones/llama-3.1-8b.cfg``), every weight trained;
* ``llama-lora``: the same base frozen, LoRA adapters (the config's rank 16 on every attention and
  MLP projection) and the head trained (``--lora-lr``);
* ``llama-lora-unmasked``: the same with the causal mask removed (``bidirectional = "unmasked"``).

No real GPT-2 or Llama weights are reachable offline, so the decoders' tokenizers
are trained with ``tokenizers`` on the training split's text and their weights
are random (trained at ``--decoder-lr``, 5e-4 by default: from scratch, not
fine-tuning): the table compares the architectures' training behaviour, cost and
speed, not pretrained decoders. LoRA over a *random* base cannot learn much (the
adapters steer features the base never learnt): its F1 says nothing about LoRA
on a pretrained 7B model, its trainable parameters, memory and speed do. Pass
``--gpt2``/``--llama`` (folders or hub names) for real ones. Columns: trainable
and total parameters, peak resident memory of the training process, test P/R/F1,
training words/s (``run.json``: the training loop alone) and prediction words/s
(``evaluate``).

    python benchmarks/bench_decoder.py --steps 200 --json benchmarks/results/bench_decoder.json
    python benchmarks/bench_decoder.py --steps 30 --systems gpt2 llama-lora     # a quick check
    # on a GPU, Mistral-7B with 4-bit QLoRA against MiniLM (the `qlora` extra; hub access or a folder):
    python benchmarks/bench_decoder.py --gpu-id 0 --steps 2000 --systems minilm llama-lora llama-lora-unmasked \
        --llama mistralai/Mistral-7B-v0.1 --qlora --lora-lr 2e-4 --batch-size 16
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
DEFAULT_CORPUS = PROJECT.parent / "shared" / "corpora" / "MTL-NCBI-disease-IOB"
SHARED_MINILM = PROJECT.parent / "shared" / "models" / "all-MiniLM-L6-v2"
SYSTEMS = ["minilm", "gpt2", "gpt2-bi", "llama-full", "llama-lora", "llama-lora-unmasked"]
#: A model trained from scratch takes a higher rate than fine-tuning (gpt2.cfg's 1e-4 is for pretrained GPT-2).
RANDOM_GPT2_LR = 5e-4
#: Adapters on a random base (the configs' 2e-4 is for a pretrained one).
RANDOM_LORA_LR = 2e-3
LLAMA_CFG = "llama-3.1-8b"
#: Runs the CLI after importing the decoder module, so its architecture is registered even where the
#: installed entry points predate it (an editable install made before spacy_bioner/models/decoder.py existed).
CLI = "import sys; import spacy_bioner.models.decoder; from spacy_bioner.cli import main; main(sys.argv[1:])"


def random_gpt2(train: Path, out: Path, *, layers: int, width: int, heads: int, vocab_size: int, seed: int) -> Path:
    """A random-init GPT-2 with a byte-level BPE trained on the training split, saved as a HF model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    from spacy_bioner.corpus.conll import read_docs

    texts = [doc.text for doc in read_docs(train)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=1024, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    torch.manual_seed(seed)
    model = GPT2Model(GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=1024, n_embd=width, n_layer=layers,
                                 n_head=heads, bos_token_id=0, eos_token_id=0))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def random_llama(train: Path, out: Path, *, layers: int, width: int, heads: int, vocab_size: int, seed: int) -> Path:
    """A random-init Llama with a SentencePiece-style BPE (``▁`` word marker, ``<s>`` start token, byte
    fallback) trained on the training split, saved as a HF model folder."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaModel, PreTrainedTokenizerFast

    from spacy_bioner.corpus.conll import read_docs

    texts = [doc.text for doc in read_docs(train)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    special = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=2048, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    torch.manual_seed(seed)
    model = LlamaModel(LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=width, intermediate_size=4 * width,
                                   num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                                   max_position_embeddings=2048, bos_token_id=tok.token_to_id("<s>"),
                                   eos_token_id=tok.token_to_id("</s>")))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    fast.save_pretrained(out)
    return out


def trained_parameters(model_dir: Path) -> Dict[str, int]:
    """Trainable and total parameters of a trained pipeline (frozen LoRA bases not trainable)."""
    import spacy

    from spacy_bioner.training.run import count_parameters

    return count_parameters(spacy.load(model_dir))


def cli(args: List[str], *, log: Path) -> float:
    """Run ``spacy-bioner ARGS``; RETURNS the process's peak resident memory in MiB."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PROJECT), os.environ.get("PYTHONPATH", "")]))
    with log.open("w", encoding="utf8") as out:
        proc = subprocess.Popen([sys.executable, "-c", CLI, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit(f"failed ({code}): spacy-bioner {' '.join(args)}\n" + log.read_text(encoding="utf8")[-3000:])
    return usage.ru_maxrss / 1024


def run_system(system: str, *, data: Path, work: Path, args, backbones: Dict[str, str]) -> Dict[str, Any]:
    out = work / system
    family = system.split("-")[0]  # minilm, gpt2, llama
    cfg = {"minilm": "minilm", "gpt2": "gpt2", "llama": LLAMA_CFG}[family]
    train = ["train", "transformer", "--backbone", cfg, "--head", "tagger",
             "-o", str(out), "--gpu-id", str(args.gpu_id),
             "--paths.backbone", backbones[family],
             "--paths.train", str(data / "train.spacy"), "--paths.dev", str(data / "dev.spacy"),
             "--training.max_steps", str(args.steps), "--training.eval_frequency", str(args.steps),
             "--training.patience", "0", "--training.batcher.size", str(args.batch_size),
             "--system.seed", str(args.seed), "--training.logger.progress_bar", "false"]
    tok2vec = "--components.bioner_tagger.model.tok2vec."
    rate = None
    if family == "gpt2":
        train += [tok2vec + "bidirectional", str(system == "gpt2-bi").lower()]
        rate = args.decoder_lr if args.decoder_lr is not None else (None if args.gpt2 else RANDOM_GPT2_LR)
    elif family == "llama":
        lora = "lora" in system
        train += [tok2vec + "bidirectional", "unmasked" if system.endswith("unmasked") else "none",
                  tok2vec + "lora.r", str(args.lora_r if lora else 0)]
        if args.qlora:
            train += [tok2vec + "quantization", "4bit", tok2vec + "dtype", "bfloat16",
                      tok2vec + "gradient_checkpointing", "true"]
        if lora:
            rate = args.lora_lr if args.lora_lr is not None else (None if args.llama else RANDOM_LORA_LR)
        else:
            rate = args.decoder_lr if args.decoder_lr is not None else (None if args.llama else RANDOM_GPT2_LR)
    if rate is not None:
        train += ["--training.optimizer.learn_rate.initial_rate", str(rate)]
    start = time.perf_counter()
    peak_rss = cli(train, log=work / f"{system}-train.log")
    wall = time.perf_counter() - start
    run = json.loads((out / "run.json").read_text(encoding="utf8"))
    cli(["evaluate", str(out / "model-last"), str(data / "test.spacy"), "-o", str(out / "test.json"),
         "--bootstrap", str(args.bootstrap), "--gpu-id", str(args.gpu_id)], log=work / f"{system}-evaluate.log")
    m = json.loads((out / "test.json").read_text(encoding="utf8"))
    params = trained_parameters(out / "model-last")
    row = {"system": system, "trainable_params_m": params["trainable"] / 1e6, "params_m": params["total"] / 1e6,
           "peak_rss_mib": peak_rss, "steps": run["steps"], "epochs": run["epochs"],
           "wall_s": wall, "p": m["seqeval"]["precision"], "r": m["seqeval"]["recall"], "f": m["seqeval"]["f1"],
           "train_words_per_s": run["train_words_per_second"], "predict_words_per_s": m["words_per_second"],
           "peak_gpu_mib": run.get("peak_gpu_mib")}
    if args.bootstrap:
        row["ci_low"], row["ci_high"] = m["bootstrap"]["low"], m["bootstrap"]["high"]
    print(f"{system}: F1 {100 * row['f']:.2f}, {row['train_words_per_s']:.0f} train words/s, "
          f"{row['predict_words_per_s']:.0f} predict words/s ({wall:.0f} s)", file=sys.stderr)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="IOB corpus folder (train/dev/test)")
    parser.add_argument("--steps", type=int, default=600, help="training steps, the same for every system")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per step")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=SYSTEMS)
    parser.add_argument("--minilm", default=str(SHARED_MINILM) if SHARED_MINILM.exists() else "minilm",
                        help="MiniLM folder or name (default: ../shared/models/all-MiniLM-L6-v2, else the PyPI copy)")
    parser.add_argument("--gpt2", default=None, help="a GPT-2 folder or name instead of the random one")
    parser.add_argument("--gpt2-layers", type=int, default=6)
    parser.add_argument("--gpt2-width", type=int, default=384)
    parser.add_argument("--gpt2-heads", type=int, default=6)
    parser.add_argument("--gpt2-vocab", type=int, default=16000, help="BPE vocabulary trained on the train split")
    parser.add_argument("--decoder-lr", type=float, default=None,
                        help=f"decoder learning rate (default: {RANDOM_GPT2_LR} for the random GPT-2, else gpt2.cfg's)")
    parser.add_argument("--llama", default=None, help="a Llama/Mistral/Qwen folder or name instead of the random one")
    parser.add_argument("--llama-layers", type=int, default=6)
    parser.add_argument("--llama-width", type=int, default=384)
    parser.add_argument("--llama-heads", type=int, default=6)
    parser.add_argument("--llama-vocab", type=int, default=16000, help="BPE vocabulary trained on the train split")
    parser.add_argument("--lora-r", type=int, default=16, help="LoRA rank of the llama-lora systems")
    parser.add_argument("--lora-lr", type=float, default=None,
                        help=f"learning rate with LoRA (default: {RANDOM_LORA_LR} on the random base, else the config's)")
    parser.add_argument("--qlora", action="store_true", help="load the Llama base in 4 bits (CUDA, bitsandbytes)")
    parser.add_argument("--bootstrap", type=int, default=0, help="resamples for the F1 interval (0: none)")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    sys.path.insert(0, str(PROJECT))
    if not args.corpus.exists():
        sys.exit(f"{args.corpus}: not found")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "corpus"
        cli(["convert", str(args.corpus), str(data)], log=work / "convert.log")
        backbones = {"minilm": args.minilm, "gpt2": args.gpt2, "llama": args.llama}
        if args.gpt2 is None and any(s.startswith("gpt2") for s in args.systems):
            train_file = next(p for p in args.corpus.iterdir() if p.stem == "train")
            backbones["gpt2"] = str(random_gpt2(train_file, work / "gpt2-random", layers=args.gpt2_layers,
                                                width=args.gpt2_width, heads=args.gpt2_heads,
                                                vocab_size=args.gpt2_vocab, seed=args.seed))
        if args.llama is None and any(s.startswith("llama") for s in args.systems):
            train_file = next(p for p in args.corpus.iterdir() if p.stem == "train")
            backbones["llama"] = str(random_llama(train_file, work / "llama-random", layers=args.llama_layers,
                                                  width=args.llama_width, heads=args.llama_heads,
                                                  vocab_size=args.llama_vocab, seed=args.seed))
        for system in args.systems:
            rows.append(run_system(system, data=data, work=work, args=args, backbones=backbones))
            if args.json:  # each row as it finishes
                write_json(args, rows)
    device = "CPU" if args.gpu_id < 0 else f"GPU {args.gpu_id}"
    gpt2 = args.gpt2 or (f"random GPT-2 {args.gpt2_layers} × {args.gpt2_width}, BPE {args.gpt2_vocab} trained on "
                         f"the train split")
    llama = args.llama or (f"random Llama {args.llama_layers} × {args.llama_width}, BPE {args.llama_vocab} trained "
                           f"on the train split")
    print(f"\n{args.corpus.name}, {args.steps} steps × {args.batch_size} sentences, seed {args.seed}, bioner_tagger; "
          f"MiniLM = {args.minilm}; GPT-2 = {gpt2}; Llama = {llama}, LoRA r {args.lora_r}"
          f"{' (4-bit)' if args.qlora else ''}; test split, seqeval strict; {device}\n")
    print("| system | trainable params (M) | params (M) | peak RSS (MiB) | epochs | test P | test R | test F1 | "
          "train words/s | predict words/s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"minilm": "MiniLM encoder (first subword)", "gpt2": "GPT-2 decoder, forward (last subword)",
             "gpt2-bi": "GPT-2 decoder, bidirectional", "llama-full": "Llama decoder, full fine-tuning",
             "llama-lora": "Llama decoder, LoRA", "llama-lora-unmasked": "Llama decoder, LoRA, causal mask removed"}
    for r in rows:
        f1 = f"{100 * r['f']:.2f}" + (f" ({100 * r['ci_low']:.1f}–{100 * r['ci_high']:.1f})" if "ci_low" in r else "")
        print(f"| {names[r['system']]} | {r['trainable_params_m']:.2f} | {r['params_m']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['epochs']:.2f} | {100 * r['p']:.2f} | {100 * r['r']:.2f} | {f1} | {r['train_words_per_s']:.0f} | "
              f"{r['predict_words_per_s']:.0f} |")


def write_json(args: argparse.Namespace, rows: List[Dict[str, Any]]) -> None:
    device = "CPU" if args.gpu_id < 0 else f"GPU {args.gpu_id}"
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "device": device,
                                     "rows": rows}, indent=2) + "\n", encoding="utf8")


if __name__ == "__main__":
    main()
