#!/usr/bin/env bash
# refinery serve under load on the SmolLM2-135M shape (random bf16 weights): 1, 4 and 16
# concurrent streaming clients (prompt 32 tokens, 64 new each, greedy, ignore_eos) — aggregate
# tokens/s, time to first token, latency percentiles — against transformers' bf16 `generate` at
# batch 1 (decode_pytorch.py, the same prompt and length), alternating rounds, same threads.
# Needs the reference environment (.venv, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${ROUNDS:-3}
MODEL=${BENCH_MODEL:-bench/out/smollm2-135m-shape}
SERVED=bench/out/smollm2-135m-served
mkdir -p bench/out
if [ ! -f "$MODEL/config.json" ]; then "$PYTHON" bench/forward_pytorch.py make "$MODEL"; fi
[ -f "$SERVED/tokenizer.json" ] || "$PYTHON" bench/serve_client.py tokenizer "$MODEL" "$SERVED"
swift build -c release --product refinery >/dev/null
export OPENBLAS_NUM_THREADS=$THREADS REFINERY_THREADS=$THREADS OMP_NUM_THREADS=$THREADS BENCH_THREADS=$THREADS BENCH_DTYPE=bfloat16
PORT=${PORT:-18731}
.build/release/refinery serve --model "$SERVED" --name bench --dtype bfloat16 --listen 127.0.0.1:$PORT --max-batch 16 > bench/out/serve.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "serving" bench/out/serve.log && break; sleep 0.2; done
echo "threads=$THREADS rounds=$ROUNDS prompt=32 new=64"
: > bench/out/serve-load.jsonl; : > bench/out/serve-pytorch.jsonl
for round in $(seq "$ROUNDS"); do
  for clients in 1 4 16; do
    "$PYTHON" bench/serve_client.py load "http://127.0.0.1:$PORT/v1" bench "$clients" $((clients * 2 > 4 ? clients * 2 : 4)) 32 64 >> bench/out/serve-load.jsonl
  done
  # The server idles (no requests) while the reference runs.
  "$PYTHON" bench/decode_pytorch.py "$MODEL" 32 64 3 1 2>/dev/null >> bench/out/serve-pytorch.jsonl
done
"$PYTHON" - <<'PY'
import json, statistics
rows = [json.loads(line) for line in open("bench/out/serve-load.jsonl")]
reference = [json.loads(line) for line in open("bench/out/serve-pytorch.jsonl")]
pytorch = statistics.median(64 / statistics.median(r["seconds"]) for r in reference)
single = None
for clients in (1, 4, 16):
    mine = [r for r in rows if r["clients"] == clients]
    rate = statistics.median(r["tokens_per_second"] for r in mine)
    if clients == 1:
        single = rate
    med = lambda key: statistics.median(r[key] for r in mine)
    print(f"{clients:2d} clients: {rate:7.1f} tokens/s ({rate / single:.2f}x one client, {rate / pytorch:.2f}x PyTorch batch 1) "
          f"TTFT p50 {med('ttft_p50') * 1000:.0f} ms p90 {med('ttft_p90') * 1000:.0f} ms, latency p50 {med('latency_p50'):.2f} s "
          f"p90 {med('latency_p90'):.2f} s p99 {med('latency_p99'):.2f} s")
print(f"PyTorch bf16 generate, batch 1: {pytorch:.1f} tokens/s")
PY
