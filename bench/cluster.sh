#!/usr/bin/env bash
# The cluster: generation throughput with 1, 2, 4 and 8 worker processes against mock-llm at
# 500 ms latency (target ≥ 90% of 4 × workers / latency), the coordinator's CPU time per task,
# and the share of a training step spent outside gradient computation with 2 workers on the
# SmolLM2-135M shape (target ≤ 5%). See bench/cluster.py for how each is measured.
# Needs the reference environment for the model shape (python3 -m venv .venv && .venv/bin/pip install -r scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
MODEL=${BENCH_MODEL:-bench/out/smollm2-135m-shape}
mkdir -p bench/out/cluster
if [ ! -f "$MODEL/config.json" ]; then "$PYTHON" bench/forward_pytorch.py make "$MODEL"; fi
swift build -c release --product refinery >/dev/null
echo "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-unset} cores=$(nproc)"
BIN=.build/release/refinery BENCH_MODEL="$MODEL" "$PYTHON" bench/cluster.py "$@"
