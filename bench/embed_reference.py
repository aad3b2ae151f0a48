#!/usr/bin/env python3
"""Sentence-embedding benchmark: a corpus of sentences and sentence-transformers as the reference.

    embed_reference.py make OUT.jsonl [COUNT] [SEED]
        COUNT sentences of real English text (the Python documentation's topic pages shipped with
        CPython as pydoc_data), 20–400 characters, drawn at random; one {"text"} per line.
    embed_reference.py run MODEL_DIR IN.jsonl OUT.f32 MODE BATCH
        SentenceTransformer(MODEL_DIR).encode(texts, batch_size=BATCH) on the CPU with
        torch.set_num_threads($REFINERY_THREADS); MODE fp32, or bf16 (torch.autocast("cpu",
        dtype=torch.bfloat16), PyTorch's fastest CPU setting for this model). Writes the vectors as
        float32 rows to OUT.f32 and prints {"seconds", "sentences_per_second"}.
    embed_reference.py compare A.f32 B.f32 DIM
        Prints the minimum and mean cosine between the rows of two vector files.
"""
import json
import os
import random
import re
import sys
import time


def make(path, count, seed):
    import pydoc_data.topics as topics
    text = "\n".join(topics.topics.values())
    parts = [" ".join(p.split()) for p in re.split(r"(?<=[.!?])\s+", text)]
    pool = [p for p in parts if 20 <= len(p) <= 400]
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(count):
            f.write(json.dumps({"text": rng.choice(pool)}) + "\n")


def run(model_dir, path, out, mode, batch):
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer
    torch.set_num_threads(int(os.environ.get("REFINERY_THREADS", "2")))
    texts = [json.loads(line)["text"] for line in open(path)]
    model = SentenceTransformer(model_dir, device="cpu")
    model.eval()

    def encode(items):
        with torch.inference_mode():
            if mode == "bf16":
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model.encode(items, batch_size=batch, convert_to_numpy=True)
            return model.encode(items, batch_size=batch, convert_to_numpy=True)

    encode(texts[:64])
    start = time.perf_counter()
    vectors = encode(texts)
    seconds = time.perf_counter() - start
    np.asarray(vectors, dtype="<f4").tofile(out)
    print(json.dumps({"seconds": seconds, "sentences_per_second": len(texts) / seconds}))


def compare(a_path, b_path, dim):
    import numpy as np
    a = np.fromfile(a_path, dtype="<f4").reshape(-1, dim).astype("f8")
    b = np.fromfile(b_path, dtype="<f4").reshape(-1, dim).astype("f8")
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
    print(json.dumps({"min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()), "rows": int(len(cos))}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "make":
        make(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 10000, int(sys.argv[4]) if len(sys.argv) > 4 else 7)
    elif command == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]))
    elif command == "compare":
        compare(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(f"unknown command {command}")
