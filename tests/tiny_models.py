"""Tiny random-init transformer backbones with tokenizers trained offline.

Each family mirrors a real backbone's tokenizer type: WordPiece (BERT, BioBERT,
BiomedBERT, Bioformer, mBERT, MiniLM), byte-level BPE (RoBERTa, GPT-2) and
Unigram/Metaspace (DeBERTa-v3); and the causal LMs ``DecoderTagger.v2`` serves:
SentencePiece-style BPE with a start token (Llama-2, Mistral) and byte-level BPE
without one (Qwen2). No network is used.
"""
from pathlib import Path

CORPUS = [
    "BRCA1 mutations cause hereditary breast cancer .",
    "TP53 is mutated in many tumours , including ovarian carcinoma .",
    "Patients with Parkinson ' s disease received selegiline - induced therapy .",
    "The IL - 2 gene ( human ) regulates T - cell proliferation .",
    "Los hallazgos analíticos mostraron calcitonina elevada en el niño .",
    "Methanoregula formicica sp . nov . is a methane - producing archaeon .",
]
FAMILIES = ("bert", "roberta", "gpt2", "deberta", "llama", "mistral", "qwen2")
DECODER_FAMILIES = ("gpt2", "llama", "mistral", "qwen2")


def _train_tokenizer(family: str):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

    corpus = CORPUS * 20 + [c for line in CORPUS for c in line]
    if family == "bert":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=False)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=300, special_tokens=special))
        cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
        )
        tok.decoder = decoders.WordPiece()
        return tok, dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    if family in ("roberta", "gpt2"):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        special = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if family == "roberta" else ["<|endoftext|>"]
        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        if family == "roberta":
            tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")))
            return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                             cls_token="<s>", sep_token="</s>", mask_token="<mask>")
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return tok, dict(bos_token="<|endoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    if family in ("llama", "mistral"):  # SentencePiece BPE as Llama-2/Mistral: "▁" before words, <s> before a text
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
        special = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=600, special_tokens=special))
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", tok.token_to_id("<s>"))])
        return tok, dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    if family == "qwen2":  # byte-level BPE, no start token, <|endoftext|> pads
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        return tok, dict(eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token=None)
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    special = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"]
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=300, special_tokens=special, unk_token="[UNK]"))
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok, dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def build_tiny_backbone(family: str, path: Path, *, max_length: int = 512) -> Path:
    """Write a tiny random-init model + tokenizer of ``family`` to ``path``."""
    import torch
    from transformers import (BertConfig, BertModel, DebertaV2Config, DebertaV2Model, GPT2Config, GPT2Model,
                              LlamaConfig, LlamaModel, MistralConfig, MistralModel, PreTrainedTokenizerFast,
                              Qwen2Config, Qwen2Model, RobertaConfig, RobertaModel)

    torch.manual_seed(0)
    tok, special = _train_tokenizer(family)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=max_length, **special)
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    vocab = tok.get_vocab_size()
    if family == "bert":
        model = BertModel(BertConfig(vocab_size=vocab, max_position_embeddings=max_length, **size))
    elif family == "roberta":
        model = RobertaModel(RobertaConfig(vocab_size=vocab, max_position_embeddings=max_length + 2,
                                           pad_token_id=tok.token_to_id("<pad>"), **size))
    elif family == "gpt2":
        model = GPT2Model(GPT2Config(vocab_size=vocab, n_positions=max_length, n_embd=32, n_layer=2, n_head=2))
    elif family in ("llama", "mistral", "qwen2"):
        config_cls, model_cls = {"llama": (LlamaConfig, LlamaModel), "mistral": (MistralConfig, MistralModel),
                                 "qwen2": (Qwen2Config, Qwen2Model)}[family]
        model = model_cls(config_cls(vocab_size=vocab, max_position_embeddings=max_length, num_key_value_heads=1,
                                     **size))
    else:
        model = DebertaV2Model(DebertaV2Config(vocab_size=vocab, max_position_embeddings=max_length,
                                               pad_token_id=tok.token_to_id("[PAD]"), **size))
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path
