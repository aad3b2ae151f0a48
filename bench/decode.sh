#!/usr/bin/env bash
# Greedy decoding, batch BATCH (default 1; prompt 32 tokens, 128 new tokens each): Refinery vs transformers `generate`,
# same machine and thread count, alternating sides over ROUNDS rounds; medians, ratio, peak RSS.
# BENCH_DTYPE=bfloat16 (default): bf16 weights on both sides (PyTorch with CPU autocast).
# Needs the reference environment (.venv, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${ROUNDS:-3}
NEW=${NEW_TOKENS:-128}
BATCH=${BATCH:-1}
export BENCH_DTYPE=${BENCH_DTYPE:-bfloat16}
MODEL=${BENCH_MODEL:-bench/out/smollm2-135m-shape}
mkdir -p bench/out
if [ ! -f "$MODEL/config.json" ]; then "$PYTHON" bench/forward_pytorch.py make "$MODEL"; fi
swift build -c release --product refinery-bench >/dev/null
export OPENBLAS_NUM_THREADS=$THREADS REFINERY_THREADS=$THREADS OMP_NUM_THREADS=$THREADS BENCH_THREADS=$THREADS
echo "threads=$THREADS dtype=$BENCH_DTYPE batch=$BATCH new_tokens=$NEW rounds=$ROUNDS"
: > bench/out/decode-refinery.jsonl; : > bench/out/decode-pytorch.jsonl
for round in $(seq "$ROUNDS"); do
  .build/release/refinery-bench decode "$MODEL" 32 "$NEW" 3 "$BATCH" >> bench/out/decode-refinery.jsonl
  "$PYTHON" bench/decode_pytorch.py "$MODEL" 32 "$NEW" 3 "$BATCH" 2>/dev/null >> bench/out/decode-pytorch.jsonl
done
"$PYTHON" - "$NEW" "$BATCH" <<'PY'
import json, statistics, sys
new, batch = int(sys.argv[1]), int(sys.argv[2])
def load(side):
    rows = [json.loads(line) for line in open(f"bench/out/decode-{side}.jsonl")]
    seconds = [s for row in rows for s in row["seconds"]]
    return batch * new / statistics.median(seconds), max(row["peak_rss_mb"] for row in rows)
r, rm = load("refinery"); p, pm = load("pytorch")
print(f"greedy decoding, batch {batch}: refinery {r:.1f} tok/s  pytorch {p:.1f} tok/s  ratio {r / p:.2f}x | peak RSS refinery {rm:.0f} MB  pytorch {pm:.0f} MB")
PY
