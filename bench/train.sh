#!/usr/bin/env bash
# One training step (sequence 512, batch 1): Refinery vs PyTorch + PEFT on the SmolLM2-135M shape,
# random weights, same machine and thread count, alternating sides over ROUNDS rounds.
# LoRA r=16 on all linear modules, and full fine-tuning. Reports tokens/s medians, the ratio,
# peak resident memory of each process, and the fraction of this machine's sgemm peak reached.
# Needs the reference environment (.venv, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
SEQ=${SEQ:-512}
ITERS=${ITERS:-3}
ROUNDS=${ROUNDS:-3}
MODEL=${BENCH_MODEL:-bench/out/smollm2-135m-shape}
mkdir -p bench/out
if [ ! -f "$MODEL/config.json" ]; then "$PYTHON" bench/forward_pytorch.py make "$MODEL"; fi
swift build -c release --product refinery-bench >/dev/null
echo "threads=$THREADS seq=$SEQ iterations=$ITERS rounds=$ROUNDS dtype=${BENCH_DTYPE:-float32} OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
export OPENBLAS_NUM_THREADS=$THREADS REFINERY_THREADS=$THREADS OMP_NUM_THREADS=$THREADS BENCH_THREADS=$THREADS
sgemm=$(.build/release/refinery-bench sgemm 2048 7)
for method in ${METHODS:-lora full}; do
  : > "bench/out/train-$method-refinery.jsonl"
  : > "bench/out/train-$method-pytorch.jsonl"
  for round in $(seq "$ROUNDS"); do
    .build/release/refinery-bench train "$MODEL" "$method" "$SEQ" "$ITERS" >> "bench/out/train-$method-refinery.jsonl"
    "$PYTHON" bench/train_pytorch.py "$MODEL" "$method" "$SEQ" "$ITERS" 2>/dev/null >> "bench/out/train-$method-pytorch.jsonl"
  done
done
METHODS=${METHODS:-lora full} "$PYTHON" - "$SEQ" "$sgemm" "$MODEL" <<'PY'
import json, os, statistics, sys
seq, sgemm, model_dir = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
config = json.load(open(f"{model_dir}/config.json"))
h, i, layers, vocab = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], config["vocab_size"]
heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
d = h // heads
linear = layers * (h * h * 2 + 2 * h * kv * d + 3 * h * i) + vocab * h       # weights that multiply activations
attention = layers * heads * 2 * 2 * seq * seq * d / 2                        # QKᵀ and PV, causal half
forward = 2 * seq * linear + attention
flops = {"lora": forward + 2 * seq * linear + 2 * attention,                   # + dx through every weight, attention backward
         "full": forward + 4 * seq * linear + 2 * attention}                   # + dW as well
print(f"float32 product peak on this machine: {sgemm['gflops_median']:.0f} GFLOP/s ({sgemm['blas_threads']} threads)"
      + ("; bf16's is about twice that (oneDNN, 840 GFLOP/s on these shapes)" if os.environ.get("BENCH_DTYPE") == "bfloat16" else ""))
import os
for method in os.environ.get("METHODS", "lora full").split():
    def load(side):
        rows = [json.loads(line) for line in open(f"bench/out/train-{method}-{side}.jsonl")]
        seconds = [s for row in rows for s in row["seconds"]]
        return seq / statistics.median(seconds), max(row["peak_rss_mb"] for row in rows), statistics.median(seconds)
    r, r_mem, r_s = load("refinery")
    p, p_mem, p_s = load("pytorch")
    fraction = flops[method] / r_s / 1e9 / sgemm["gflops_median"]
    # Each round runs the two sides back to back, so a round's ratio shows how the machine's load moves it.
    rounds = [statistics.median(json.loads(b)["seconds"]) / statistics.median(json.loads(a)["seconds"])
              for a, b in zip(open(f"bench/out/train-{method}-refinery.jsonl"), open(f"bench/out/train-{method}-pytorch.jsonl"))]
    print(f"{method:4}: refinery {r:6.1f} tok/s  pytorch {p:6.1f} tok/s  ratio {r / p:.2f}x (rounds {min(rounds):.2f}–{max(rounds):.2f}x) | "
          f"peak RSS refinery {r_mem:.0f} MB  pytorch {p_mem:.0f} MB | refinery reaches {fraction:.0%} of the float32 product peak "
          f"({flops[method] / 1e9:.0f} GFLOP/step)")
PY
