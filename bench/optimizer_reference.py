#!/usr/bin/env python3
"""One optimizer step over every weight of a Llama model (full fine-tuning's parameters), PyTorch on CPU.

    optimizer_reference.py MODEL_DIR adamw|adamw-8bit ITERS   prints {"seconds_median": …, "state_mb": …}

adamw: torch.optim.AdamW with fused=True (the fastest CPU setting; foreach and the single-tensor
loop are slower); adamw-8bit: bitsandbytes.optim.AdamW8bit (its CPU backend). Random gradients,
lr 1e-4, weight decay 0.01 — the work `refinery-bench optimizer` does.
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
    directory, kind, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3])
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32)
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = (torch.rand_like(p) - 0.5) * 2e-3
    if kind == "adamw-8bit":
        import bitsandbytes
        optimizer = bitsandbytes.optim.AdamW8bit(params, lr=1e-4, weight_decay=0.01)
    else:
        optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01, fused=True)
    optimizer.step()  # warm-up: allocates the state
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    print(json.dumps({"seconds_median": statistics.median(seconds), "seconds": seconds, "state_mb": state / 1e6,
                      "values": sum(p.numel() for p in params),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
