#!/usr/bin/env python3
"""Classifier-throughput benchmark: a fineweb-edu-classifier-shaped model, a corpus, and
transformers as the reference.

    classify_reference.py model OUT_DIR TOKENIZER_DIR [SHAPE]
        A BertForSequenceClassification with one regression output, random weights (seed 0), and
        the bert-base-uncased WordPiece tokenizer from TOKENIZER_DIR. SHAPE base (default): the
        shape of fineweb-edu-classifier (BERT-base: 768 hidden, 12 layers, 12 heads, 3072
        intermediate); minilm: the shape of the MiniLM-L6 cross-encoders and classifiers (384
        hidden, 6 layers, 12 heads, 1536 intermediate).
    classify_reference.py make OUT.jsonl COUNT SEED
        COUNT texts of 2–12 sentences of real English (the Python documentation's topic pages
        shipped with CPython), as samples to score; one {"text"} per line.
    classify_reference.py run MODEL_DIR IN.jsonl OUT.f32 MODE BATCH
        AutoModelForSequenceClassification on the CPU with torch.set_num_threads($REFINERY_THREADS),
        texts sorted by length and batched (least padding, as a careful user does), inference mode;
        MODE fp32, fp32-compile (torch.compile), bf16-autocast (torch.autocast("cpu",
        dtype=torch.bfloat16)), bf16 (weights in bfloat16), bf16-compile, or int8-dynamic
        (torch.ao.quantization.quantize_dynamic: every Linear's weights in int8, activations
        quantized per batch — PyTorch's own recipe for BERT on CPU; it changes the scores, see
        classify.sh). Writes the logits as
        float32 rows in input order and prints
        {"seconds", "texts_per_second"}.
    classify_reference.py compare A.f32 B.f32
        Prints the largest absolute difference between two logit files.
"""
import json
import os
import random
import re
import shutil
import sys
import time


SHAPES = {"base": dict(hidden_size=768, num_hidden_layers=12, intermediate_size=3072),
          "minilm": dict(hidden_size=384, num_hidden_layers=6, intermediate_size=1536)}


def model(out, tokenizer_dir, shape="base"):
    import torch
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, num_attention_heads=12, max_position_embeddings=512, num_labels=1, problem_type="regression",
                        **SHAPES[shape])
    net = BertForSequenceClassification(config)
    net.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        source = os.path.join(tokenizer_dir, name)
        if os.path.exists(source):
            shutil.copy(source, os.path.join(out, name))


def make(path, count, seed):
    import pydoc_data.topics as topics
    text = "\n".join(topics.topics.values())
    sentences = [" ".join(p.split()) for p in re.split(r"(?<=[.!?])\s+", text)]
    sentences = [s for s in sentences if 20 <= len(s) <= 400]
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(count):
            start = rng.randrange(len(sentences) - 12)
            f.write(json.dumps({"text": " ".join(sentences[start:start + rng.randint(2, 12)])}) + "\n")


def run(model_dir, path, out, mode, batch):
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    torch.set_num_threads(int(os.environ.get("REFINERY_THREADS", "2")))
    texts = [json.loads(line)["text"] for line in open(path)]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    net = AutoModelForSequenceClassification.from_pretrained(model_dir)
    if mode in ("bf16", "bf16-compile"):
        net = net.to(torch.bfloat16)
    net.eval()
    if mode == "int8-dynamic":
        net = torch.ao.quantization.quantize_dynamic(net, {torch.nn.Linear}, dtype=torch.qint8)
    # torch.compile (inductor, dynamic shapes): the fastest eager-free setting on CPU; compiled
    # during a first, untimed pass over every text so no recompilation lands in the timed one.
    compiled = mode in ("bf16-compile", "fp32-compile")
    forward = torch.compile(net, dynamic=True) if compiled else net

    def score(items):
        lengths = [len(ids) for ids in tokenizer(items, truncation=True, max_length=512)["input_ids"]]
        order = sorted(range(len(items)), key=lambda i: lengths[i])
        results = [None] * len(items)
        with torch.inference_mode():
            for start in range(0, len(order), batch):
                chunk = order[start:start + batch]
                encoded = tokenizer([items[i] for i in chunk], truncation=True, max_length=512, padding=True, return_tensors="pt")
                if mode == "bf16-autocast":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        logits = forward(**encoded).logits
                else:
                    logits = forward(**encoded).logits
                for i, row in zip(chunk, logits.float().numpy()):
                    results[i] = row
        return np.stack(results)

    score(texts if compiled else texts[:16])
    start = time.perf_counter()
    logits = score(texts)
    seconds = time.perf_counter() - start
    np.asarray(logits, dtype="<f4").tofile(out)
    print(json.dumps({"seconds": seconds, "texts_per_second": len(texts) / seconds}))


def compare(a_path, b_path):
    import numpy as np
    a = np.fromfile(a_path, dtype="<f4").astype("f8")
    b = np.fromfile(b_path, dtype="<f4").astype("f8")
    print(json.dumps({"max_abs_difference": float(np.abs(a - b).max()), "values": int(len(a))}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "model":
        model(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "base")
    elif command == "make":
        make(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif command == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif command == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {command}")
