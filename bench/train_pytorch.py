#!/usr/bin/env python3
"""One training step of transformers + PEFT (PyTorch, CPU) on the SmolLM2-135M shape.

    train_pytorch.py MODEL_DIR lora|full SEQ ITERS   prints {"tokens_per_second_median": …, "peak_rss_mb": …}

LoRA: r=16, alpha=32, all linear modules, no dropout. A step is forward, backward (mean loss over
all tokens), clip_grad_norm_(1.0) and AdamW — the same work refinery-bench train does.
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM


def main():
    directory, method, sequence, iterations = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    torch.manual_seed(0)
    # BENCH_DTYPE=bfloat16 is the fastest setup a PyTorch user picks on a bf16 CPU: autocast to bf16;
    # LoRA on a base loaded in bf16 (PEFT keeps the adapter in fp32), full fine-tuning with fp32
    # master weights (a bf16 model would update bf16 weights, which loses the small updates).
    bf16 = os.environ.get("BENCH_DTYPE", "float32") == "bfloat16"
    load_dtype = torch.bfloat16 if bf16 and method == "lora" else torch.float32
    model = LlamaForCausalLM.from_pretrained(directory, dtype=load_dtype)
    if method == "lora":
        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0,
                                                 task_type="CAUSAL_LM"))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, model.config.vocab_size, (1, sequence))

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - start)
    print(json.dumps({"tokens_per_second_median": sequence / statistics.median(seconds), "seconds": seconds,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "trainable": sum(p.numel() for p in params)}))


if __name__ == "__main__":
    main()
