#!/usr/bin/env bash
# Forward-pass throughput, Refinery vs PyTorch (transformers), same machine, same thread count,
# same model shape (SmolLM2-135M: hidden 576, 30 layers, 9 heads, 3 KV heads, intermediate 1536,
# vocab 49152, tied embeddings), random weights, sequence 512. Prints both figures and the ratio.
#
# Needs the reference Python environment: python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt
# Environment: PYTHON (default .venv/bin/python), BENCH_THREADS (default 2), SEQ (512), ITERS (5),
# BENCH_DTYPE (bfloat16, the default: bf16 weights on both sides, PyTorch with CPU autocast; or float32).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
SEQ=${SEQ:-512}
ITERS=${ITERS:-5}
MODEL=${BENCH_MODEL:-bench/out/smollm2-135m-shape}
export BENCH_DTYPE=${BENCH_DTYPE:-bfloat16}
mkdir -p bench/out
if [ ! -f "$MODEL/config.json" ]; then "$PYTHON" bench/forward_pytorch.py make "$MODEL"; fi
swift build -c release --product refinery-bench >/dev/null
echo "threads=$THREADS seq=$SEQ iterations=$ITERS dtype=$BENCH_DTYPE OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset}"
# Alternate the two sides for ROUNDS rounds so drifting machine load hits both alike; report medians.
ROUNDS=${ROUNDS:-3}
: > bench/out/forward-refinery.jsonl
: > bench/out/forward-pytorch.jsonl
for round in $(seq "$ROUNDS"); do
  OPENBLAS_NUM_THREADS=$THREADS REFINERY_THREADS=$THREADS .build/release/refinery-bench forward "$MODEL" "$SEQ" "$ITERS" >> bench/out/forward-refinery.jsonl
  BENCH_THREADS=$THREADS OMP_NUM_THREADS=$THREADS "$PYTHON" bench/forward_pytorch.py run "$MODEL" "$SEQ" "$ITERS" 2>/dev/null >> bench/out/forward-pytorch.jsonl
done
"$PYTHON" - "$SEQ" <<'PY'
import json, statistics, sys
seq = int(sys.argv[1])
def load(path):
    rows = [json.loads(line) for line in open(path)]
    seconds = [s for row in rows for s in row["seconds"]]
    return seq / statistics.median(seconds), len(seconds), max(row.get("peak_rss_mb", 0) for row in rows)
r, rn, rm = load("bench/out/forward-refinery.jsonl")
p, pn, pm = load("bench/out/forward-pytorch.jsonl")
print(f"forward pass, sequence {seq}, median of {rn} / {pn} runs")
print(f"  refinery {r:8.1f} tokens/s")
print(f"  pytorch  {p:8.1f} tokens/s")
print(f"  ratio    {r / p:8.2f}x")
print(f"  peak RSS refinery {rm:.0f} MB  pytorch {pm:.0f} MB")
PY
