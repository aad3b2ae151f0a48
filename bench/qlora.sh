#!/usr/bin/env bash
# QLoRA vs LoRA on a Llama-3-8B-shaped model (random bf16 weights, made on the fly by
# bench/make_random_llama.py: 16 GB on disk under bench/out): one micro-batch of SEQUENCES × SEQ
# tokens per optimizer step, gradient checkpointing, LoRA r=16 on all linear modules, bf16 products.
# Prints per method the load time, each step's seconds, tokens/s, the peak RSS and the memory
# plan's prediction (`refinery train --dry-run` computes the same plan), and the share of the
# machine's bf16 peak a step reaches (FLOPs counted below).
# METHODS="qlora" runs one side (the summary reads the other from bench/out).
# Needs ~24 GB of RAM for the LoRA run (16 GB of bf16 weights) and the reference environment (.venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
SEQ=${SEQ:-512}
SEQUENCES=${SEQUENCES:-8}
STEPS=${STEPS:-2}
PEAK_GFLOPS=${PEAK_GFLOPS:-840}   # oneDNN bf16 on these 2 cores (README)
MODEL=bench/out/llama3-8b
[ -f "$MODEL/model.safetensors" ] || "$PYTHON" bench/make_random_llama.py "$MODEL"
swift build -c release --product refinery-bench >/dev/null
export REFINERY_THREADS=${BENCH_THREADS:-2} OPENBLAS_NUM_THREADS=${BENCH_THREADS:-2}
for method in ${METHODS:-qlora lora}; do
  .build/release/refinery-bench memory "$MODEL" "$method" "$SEQ" "$SEQUENCES" "$STEPS" | tee "bench/out/qlora-$method.json"
done
SEQ=$SEQ SEQUENCES=$SEQUENCES PEAK_GFLOPS=$PEAK_GFLOPS "$PYTHON" - <<'PY'
import json, os
seq, sequences, peak = int(os.environ["SEQ"]), int(os.environ["SEQUENCES"]), float(os.environ["PEAK_GFLOPS"])
h, inner, layers, vocab, heads, kv = 4096, 14336, 32, 128256, 32, 8
projections = layers * (2 * h * h + 2 * h * (h // heads * kv) + 3 * h * inner)
tokens = seq * sequences
# A frozen base with checkpointing: forward, the recomputed forward and the input gradients through
# every projection (3 × 2 FLOP per weight per token); the lm head forward and both its gradients'
# products (the head is frozen: forward + input gradient, 2 × 2); causal attention's four products
# per layer, three times (forward, recompute, backward's two at twice the cost counted as two).
flops = 6 * projections * tokens + 4 * vocab * h * tokens + 3 * layers * sequences * 2 * 2 * seq * seq * h
for method in ("qlora", "lora"):
    row = json.load(open(f"bench/out/qlora-{method}.json"))
    step = row["step_seconds"][-1]
    gflops = flops / step / 1e9
    print(f"{method:6} load {row['load_seconds']:6.1f} s  step {step:7.1f} s  {row['tokens_per_second']:6.1f} tokens/s  "
          f"~{gflops:.0f} GFLOP/s ({100 * gflops / peak:.0f}% of the {peak:.0f} GFLOP/s bf16 peak)  "
          f"peak RSS {row['peak_rss_mb'] / 1024:.2f} GiB  planned {row['planned_mb'] / 1024:.2f} GiB "
          f"({100 * (row['planned_mb'] / row['peak_rss_mb'] - 1):+.1f}%)")
PY
