#!/usr/bin/env bash
# MinHash deduplication, Refinery vs datasketch, on a planted-duplicate corpus of DOCS documents
# (bench/minhash_reference.py make: real English text, exact / near / case / spacing copies, and
# related-but-distinct documents). Same threshold, num_perm and word n-gram; same normalisation;
# alternating rounds; medians. Prints docs/s and the ratio, and for each side recall and precision
# against the planted copies, and recall of the planted copies whose true Jaccard similarity with
# their original is at least the threshold.
# Needs the reference environment (.venv with datasketch, see scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
THREADS=${BENCH_THREADS:-2}
ROUNDS=${ROUNDS:-3}
DOCS=${DOCS:-20000}
THRESHOLD=${THRESHOLD:-0.8}
NUM_PERM=${NUM_PERM:-128}
NGRAM=${NGRAM:-5}
CORPUS=bench/out/minhash-$DOCS.jsonl
mkdir -p bench/out
"$PYTHON" bench/minhash_reference.py make "$CORPUS" "$DOCS" 7
swift build -c release --product refinery-bench >/dev/null
export REFINERY_THREADS=$THREADS OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
echo "docs=$DOCS threshold=$THRESHOLD num_perm=$NUM_PERM ngram=$NGRAM threads=$THREADS rounds=$ROUNDS"
: > bench/out/minhash-refinery.jsonl; : > bench/out/minhash-datasketch.jsonl
for round in $(seq "$ROUNDS"); do
  .build/release/refinery-bench minhash "$CORPUS" "$THRESHOLD" "$NUM_PERM" "$NGRAM" >> bench/out/minhash-refinery.jsonl
  "$PYTHON" bench/minhash_reference.py run "$CORPUS" "$THRESHOLD" "$NUM_PERM" "$NGRAM" >> bench/out/minhash-datasketch.jsonl
done
"$PYTHON" - "$CORPUS" "$THRESHOLD" "$NGRAM" <<'PY'
import json, statistics, sys
sys.path.insert(0, "bench")
from minhash_reference import normalise
corpus, threshold, ngram = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
docs = [json.loads(line) for line in open(corpus)]
copies = {d["id"] for d in docs if d["copy_of"] is not None}
def shingles(text):
    words = normalise(text); n = min(ngram, len(words))
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}
def jaccard(a, b):
    return len(a & b) / len(a | b) if a | b else 1.0
near = {d["id"] for d in docs if d["copy_of"] is not None and jaccard(shingles(d["text"]), shingles(docs[d["copy_of"]]["text"])) >= threshold}
rates = {}
for side in ("refinery", "datasketch"):
    rows = [json.loads(line) for line in open(f"bench/out/minhash-{side}.jsonl")]
    rates[side] = statistics.median(row["docs_per_second"] for row in rows)
    dropped = set(rows[-1]["dropped"])
    hits = len(dropped & copies)
    layout = f" ({rows[-1]['bands']} bands x {rows[-1]['rows']} rows, verified)" if "bands" in rows[-1] else ""
    print(f"{side:10} {rates[side]:9.0f} docs/s | planted copies: recall {hits / len(copies):.4f} precision {hits / max(1, len(dropped)):.4f} "
          f"| copies with Jaccard >= {threshold}: recall {len(dropped & near) / len(near):.4f} ({len(near)} of {len(copies)}){layout}")
print(f"speed ratio {rates['refinery'] / rates['datasketch']:.1f}x")
PY
