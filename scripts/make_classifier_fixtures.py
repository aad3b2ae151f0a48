#!/usr/bin/env python3
"""Reference scores for Refinery's local classifiers and reward models.

    .venv/bin/python scripts/make_classifier_fixtures.py

Writes (small, committed) Tests/RefineryModelTests/Fixtures/bert-classifier-{regression,classes}/:
random-init BertForSequenceClassification checkpoints on the uncased WordPiece fixture tokenizer
(pooler on [CLS], then the classifier), one with one output and problem_type regression (the
fineweb-edu-classifier layout), one with three classes; expected.json holds transformers'
AutoModelForSequenceClassification logits for the texts (truncated to 32 tokens).
Tests/RefineryModelTests/Fixtures/llama-reward/: a random-init LlamaForSequenceClassification
(the llama-gqa shape and tokenizer, two outputs, pad_token_id = <|eot_id|> so the score is read at
the token before the closing end-of-turn marker, as transformers does); expected.json holds the
conversations, their token ids (rendered through the chat template) and transformers' logits for
the padded batch.
Pinned versions: scripts/requirements.txt. `tokenizers`' WordPiece trainer does not order its
vocabulary the same way on every run, so regenerating rewrites the BERT fixtures (each run's files
agree with each other; the tests only need that).
"""
import json
import os
import shutil
import sys

import torch
import transformers
from transformers import AutoModelForSequenceClassification, BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_embedding_fixtures import wordpiece_tokenizer  # noqa: E402
from make_fixtures import write_json  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "Tests", "RefineryModelTests", "Fixtures")

TEXTS = [
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "lol check out my new shoes!!!",
    "The quick brown fox jumps over the lazy dog.",
    "Gradient accumulation, packing, LoRA adapters and learning-rate schedules are common in fine-tuning. " * 3,
    "数据清洗是训练语言模型的重要步骤。",
    "",
]


def build(name, num_labels, problem_type, seed):
    tok = wordpiece_tokenizer(False)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64, layer_norm_eps=1e-12, hidden_act="gelu",
                        initializer_range=0.3, pad_token_id=0, num_labels=num_labels, problem_type=problem_type)
    if num_labels > 1:
        config.id2label = {i: label for i, label in enumerate(["low", "medium", "high"][:num_labels])}
        config.label2id = {v: k for k, v in config.id2label.items()}
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "LayerNorm" in pname or pname.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.2)
    directory = os.path.join(FIXTURES, name)
    shutil.rmtree(directory, ignore_errors=True)
    model.save_pretrained(directory, safe_serialization=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]", model_max_length=32)
    fast.save_pretrained(directory)
    loaded = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    encoded = fast(TEXTS, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.no_grad():
        logits = loaded(**encoded).logits
    write_json(os.path.join(directory, "expected.json"), {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "max_length": 32, "texts": TEXTS, "logits": logits.tolist(),
        "token_ids": [fast(t, truncation=True, max_length=32)["input_ids"] for t in TEXTS],
    })


CONVERSATIONS = [
    [{"role": "user", "content": "What is LoRA?"},
     {"role": "assistant", "content": "LoRA adds small low-rank matrices to frozen weights."}],
    [{"role": "user", "content": "Name a prime number."}, {"role": "assistant", "content": "Seven."}],
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "数据是什么？"},
     {"role": "assistant", "content": "数据是信息。"}],
]


def build_llama_reward():
    from transformers import LlamaConfig, LlamaForSequenceClassification
    source = os.path.join(FIXTURES, "llama-gqa")
    directory = os.path.join(FIXTURES, "llama-reward")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    with open(os.path.join(source, "config.json")) as f:
        raw = json.load(f)
    for key in ("architectures", "transformers_version", "dtype"):
        raw.pop(key, None)
    config = LlamaConfig(**raw)
    config.num_labels = 2
    config.pad_token_id = 4
    config.initializer_range = 0.2
    config.id2label = {0: "helpfulness", 1: "harmlessness"}
    config.label2id = {"helpfulness": 0, "harmlessness": 1}
    torch.manual_seed(13)
    model = LlamaForSequenceClassification(config).eval()
    model.save_pretrained(directory, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(os.path.join(source, name), os.path.join(directory, name))
    tok = PreTrainedTokenizerFast.from_pretrained(directory)
    loaded = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    ids = [tok(tok.apply_chat_template(c, tokenize=False), add_special_tokens=False)["input_ids"] for c in CONVERSATIONS]
    width = max(len(x) for x in ids)
    batch = torch.tensor([x + [config.pad_token_id] * (width - len(x)) for x in ids])
    with torch.no_grad():
        logits = loaded(input_ids=batch, attention_mask=(batch != -1).long()).logits
    write_json(os.path.join(directory, "expected.json"), {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "conversations": CONVERSATIONS, "token_ids": ids, "logits": logits.tolist(),
    })


def main():
    build_llama_reward()
    build("bert-classifier-regression", 1, "regression", 11)
    build("bert-classifier-classes", 3, "single_label_classification", 12)


if __name__ == "__main__":
    main()
