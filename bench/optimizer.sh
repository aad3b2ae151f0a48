#!/usr/bin/env bash
# One AdamW step over all 135M weights of the SmolLM2-135M shape (full fine-tuning's optimizer work):
# Refinery's float32 and 8-bit moments vs torch.optim.AdamW(fused=True) and bitsandbytes' AdamW8bit
# on the CPU, same thread count, alternating sides over ROUNDS rounds. Prints medians, ratios, the
# moments' bytes and how close each is to this machine's memory bandwidth (an AdamW step is
# memory-bound: float32 moves 28 bytes per value — p, g, m, v read, p, m, v written; 8-bit 16).
# Needs the reference environment (.venv, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
ITERS=${ITERS:-5}
ROUNDS=${ROUNDS:-3}
MODEL=${BENCH_MODEL:-bench/out/smollm2-135m-shape}
mkdir -p bench/out
if [ ! -f "$MODEL/config.json" ]; then "$PYTHON" bench/forward_pytorch.py make "$MODEL"; fi
swift build -c release --product refinery-bench >/dev/null
export OPENBLAS_NUM_THREADS=$THREADS REFINERY_THREADS=$THREADS OMP_NUM_THREADS=$THREADS BENCH_THREADS=$THREADS
echo "threads=$THREADS iterations=$ITERS rounds=$ROUNDS"
for kind in adamw adamw-8bit; do
  : > "bench/out/optimizer-$kind-refinery.jsonl"
  : > "bench/out/optimizer-$kind-reference.jsonl"
done
for round in $(seq "$ROUNDS"); do
  for kind in adamw adamw-8bit; do
    .build/release/refinery-bench optimizer "$MODEL" "$kind" "$ITERS" >> "bench/out/optimizer-$kind-refinery.jsonl"
    "$PYTHON" bench/optimizer_reference.py "$MODEL" "$kind" "$ITERS" 2>/dev/null >> "bench/out/optimizer-$kind-reference.jsonl"
  done
done
"$PYTHON" - <<'PY'
import json, statistics
def load(name):
    rows = [json.loads(l) for l in open(f"bench/out/{name}.jsonl") if l.strip()]
    return statistics.median(r["seconds_median"] for r in rows), rows[-1]
for kind, bytes_per_value in (("adamw", 28), ("adamw-8bit", 16)):
    ours, a = load(f"optimizer-{kind}-refinery")
    theirs, b = load(f"optimizer-{kind}-reference")
    values = a["values"]
    print(f"{kind:11s} Refinery {ours*1e3:7.1f} ms/step ({bytes_per_value*values/ours/1e9:5.1f} GB/s moved), state {a['state_mb']:7.1f} MB | "
          f"reference {theirs*1e3:7.1f} ms/step, state {b['state_mb']:7.1f} MB | ratio {theirs/ours:4.2f}x  ({values/1e6:.1f} M values)")
PY
