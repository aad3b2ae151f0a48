#!/usr/bin/env python3
"""Reference scores for Refinery's local classifiers and reward models.

    .venv/bin/python scripts/make_classifier_fixtures.py

Writes (small, committed) Tests/RefineryModelTests/Fixtures/bert-classifier-{regression,classes}/:
random-init BertForSequenceClassification checkpoints on the uncased WordPiece fixture tokenizer
(pooler on [CLS], then the classifier), one with one output and problem_type regression (the
fineweb-edu-classifier layout), one with three classes; expected.json holds transformers'
AutoModelForSequenceClassification logits for the texts (truncated to 32 tokens).
Pinned versions: scripts/requirements.txt.
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


def main():
    build("bert-classifier-regression", 1, "regression", 11)
    build("bert-classifier-classes", 3, "single_label_classification", 12)


if __name__ == "__main__":
    main()
