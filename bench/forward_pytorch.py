#!/usr/bin/env python3
"""Forward-pass throughput of transformers (PyTorch, CPU) on the SmolLM2-135M shape, random weights.

    forward_pytorch.py make MODEL_DIR          writes the random-init checkpoint (float32 safetensors)
    forward_pytorch.py run MODEL_DIR SEQ ITERS prints {"tokens_per_second_median": …}
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

SMOLLM2_135M = dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                    num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                    rms_norm_eps=1e-5, tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 100000.0})


def make(directory):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_135M))
    model.save_pretrained(directory)


def run(directory, sequence, iterations):
    threads = int(os.environ.get("BENCH_THREADS", "2"))
    torch.set_num_threads(threads)
    # BENCH_DTYPE=bfloat16: weights in bf16 and CPU autocast, the fastest setup a user picks.
    bf16 = os.environ.get("BENCH_DTYPE", "float32") == "bfloat16"
    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.bfloat16 if bf16 else torch.float32)
    model.eval()
    ids = torch.randint(0, SMOLLM2_135M["vocab_size"], (1, sequence))
    seconds = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        model(ids)
        for _ in range(iterations):
            start = time.perf_counter()
            model(ids, use_cache=False)
            seconds.append(time.perf_counter() - start)
    median = statistics.median(seconds)
    print(json.dumps({"tokens_per_second_median": sequence / median, "seconds": seconds, "threads": threads,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "torch": torch.__version__, "attention": model.config._attn_implementation}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        run(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
