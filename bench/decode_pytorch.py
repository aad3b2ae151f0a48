#!/usr/bin/env python3
"""Greedy decoding of transformers (PyTorch, CPU) on the SmolLM2-135M shape.

    decode_pytorch.py MODEL_DIR PROMPT NEW_TOKENS ITERS [BATCH]   prints {"tokens_per_second_median": …, "peak_rss_mb": …}

BENCH_DTYPE=bfloat16 (the fastest setup a user picks on this CPU): weights in bf16 and autocast.
Times model.generate(do_sample=False) with its KV cache; every run produces exactly NEW_TOKENS
(no EOS stop), as refinery-bench decode does. BATCH random prompts of the same length are decoded
together (no padding needed).
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import LlamaForCausalLM


def main():
    directory, prompt, new_tokens, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    batch = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    bf16 = os.environ.get("BENCH_DTYPE", "float32") == "bfloat16"
    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.bfloat16 if bf16 else torch.float32)
    model.eval()
    torch.manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (batch, prompt))

    def run():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model.generate(ids, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                 eos_token_id=None, pad_token_id=0)
        assert out.shape[1] == prompt + new_tokens

    run()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"tokens_per_second_median": batch * new_tokens / statistics.median(seconds), "batch": batch, "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
