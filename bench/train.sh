#!/usr/bin/env bash
# One training step (sequence 512, batch 1): Refinery vs PyTorch + PEFT on the SmolLM2-135M shape,
# random weights, same machine and thread count, alternating sides over ROUNDS rounds.
# LoRA r=16 on all linear modules, and full fine-tuning. Reports tokens/s medians, the ratio,
# peak resident memory of each process, the share of this machine's product peak reached (peaks
# measured in the same run by `refinery-bench shapes`), and the share of the step spent in the
# weight products. BENCH_DTYPE=bfloat16 (default) or float32 on both sides.
# Needs the reference environment (.venv, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
SEQ=${SEQ:-512}
ITERS=${ITERS:-3}
ROUNDS=${ROUNDS:-3}
MODEL=${BENCH_MODEL:-bench/out/smollm2-135m-shape}
export BENCH_DTYPE=${BENCH_DTYPE:-bfloat16}
mkdir -p bench/out
if [ ! -f "$MODEL/config.json" ]; then "$PYTHON" bench/forward_pytorch.py make "$MODEL"; fi
swift build -c release --product refinery-bench >/dev/null
echo "threads=$THREADS seq=$SEQ iterations=$ITERS rounds=$ROUNDS dtype=$BENCH_DTYPE OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
export OPENBLAS_NUM_THREADS=$THREADS REFINERY_THREADS=$THREADS OMP_NUM_THREADS=$THREADS BENCH_THREADS=$THREADS
.build/release/refinery-bench shapes "$MODEL" "$SEQ" 5 > bench/out/shapes.txt
shapes=$(tail -1 bench/out/shapes.txt)
for method in ${METHODS:-lora full}; do
  : > "bench/out/train-$method-refinery.jsonl"
  : > "bench/out/train-$method-pytorch.jsonl"
  for round in $(seq "$ROUNDS"); do
    .build/release/refinery-bench train "$MODEL" "$method" "$SEQ" "$ITERS" >> "bench/out/train-$method-refinery.jsonl"
    "$PYTHON" bench/train_pytorch.py "$MODEL" "$method" "$SEQ" "$ITERS" 2>/dev/null >> "bench/out/train-$method-pytorch.jsonl"
  done
done
METHODS=${METHODS:-lora full} "$PYTHON" - "$SEQ" "$shapes" "$MODEL" <<'PY'
import json, os, statistics, sys
seq, shapes, model_dir = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
dtype = os.environ["BENCH_DTYPE"]
peak = shapes[f"peak_{dtype}_gflops"]
config = json.load(open(f"{model_dir}/config.json"))
h, i, layers, vocab = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"], config["vocab_size"]
heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
d = h // heads
linear = layers * (h * h * 2 + 2 * h * kv * d + 3 * h * i) + vocab * h       # weights that multiply activations
attention = layers * heads * 2 * 2 * seq * seq * d / 2                        # QKᵀ and PV, causal half
forward = 2 * seq * linear + attention
flops = {"lora": forward + 2 * seq * linear + 2 * attention,                   # + dx through every weight, attention backward
         "full": forward + 4 * seq * linear + 2 * attention}                   # + dW as well
print(f"{dtype} product peak measured in this run ({shapes['backend']}): {peak:.0f} GFLOP/s "
      f"(float32 {shapes['peak_float32_gflops']:.0f}, bfloat16 {shapes['peak_bfloat16_gflops']:.0f}); per shape: bench/out/shapes.txt")
def product_seconds(method):
    """Seconds of the weight products of one step at the rates `refinery-bench shapes` measured."""
    total = 0.0
    for shape in shapes["shapes"]:
        if method == "lora" and shape["shape"].endswith("weight grad"):
            continue
        name = shape["shape"]
        count = 1 if name.startswith("lm_head") else (2 if "+" in name else 1) * layers
        total += count * 2 * shape["m"] * shape["n"] * shape["k"] / (shape[f"{dtype}_gflops"] * 1e9)
    return total
for method in os.environ.get("METHODS", "lora full").split():
    def load(side):
        rows = [json.loads(line) for line in open(f"bench/out/train-{method}-{side}.jsonl")]
        seconds = [s for row in rows for s in row["seconds"]]
        return seq / statistics.median(seconds), max(row["peak_rss_mb"] for row in rows), statistics.median(seconds)
    r, r_mem, r_s = load("refinery")
    p, p_mem, p_s = load("pytorch")
    fraction = flops[method] / r_s / 1e9 / peak
    products = product_seconds(method)
    # Each round runs the two sides back to back, so a round's ratio shows how the machine's load moves it.
    rounds = [statistics.median(json.loads(b)["seconds"]) / statistics.median(json.loads(a)["seconds"])
              for a, b in zip(open(f"bench/out/train-{method}-refinery.jsonl"), open(f"bench/out/train-{method}-pytorch.jsonl"))]
    print(f"{method:4}: refinery {r:6.1f} tok/s  pytorch {p:6.1f} tok/s  ratio {r / p:.2f}x (rounds {min(rounds):.2f}–{max(rounds):.2f}x) | "
          f"peak RSS refinery {r_mem:.0f} MB  pytorch {p_mem:.0f} MB | refinery reaches {fraction:.0%} of the {dtype} product peak "
          f"({flops[method] / 1e9:.0f} GFLOP/step); the weight products take {products * 1e3:.0f} ms of the {r_s * 1e3:.0f} ms step "
          f"({products / r_s:.0%}); the rest is attention, {'LoRA' + chr(39) + 's thin products, ' if method == 'lora' else 'the optimizer, '}norms, activations, the loss and conversions")
PY
