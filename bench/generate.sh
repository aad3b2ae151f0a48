#!/usr/bin/env bash
# Generation throughput: Refinery (`data generate --slots 4`) vs the reference approach (Python,
# ThreadPoolExecutor(4) + openai client), against the same `refinery mock-llm` at 200 ms latency,
# over the same chunks. Then the same with 20% of requests answered 429.
# Needs the reference environment (.venv with scripts/requirements.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
LATENCY_MS=${LATENCY_MS:-200}
ARTICLES=${ARTICLES:-40}
OUT=bench/out/generate
rm -rf "$OUT"; mkdir -p "$OUT"
swift build -c release --product refinery >/dev/null
BIN=.build/release/refinery
"$PYTHON" - "$OUT" "$ARTICLES" <<'PY'
import json, sys
out, count = sys.argv[1], int(sys.argv[2])
rows = []
for i in range(count):
    paragraphs = [" ".join(f"Sentence {k} of part {j} of article {i} discusses measurement {i * 97 + j * 13 + k} with care." for k in range(16)) for j in range(5)]
    rows.append({"id": f"a{i}", "content": "\n\n".join(paragraphs)})
json.dump({"artifact_data": rows}, open(f"{out}/articles.json", "w"))
PY
run_side_by_side() {
  local label=$1; shift
  local port_file="$OUT/port-$label"
  $BIN mock-llm --port 0 --latency-ms "$LATENCY_MS" "$@" > "$port_file" 2>/dev/null &
  local mock=$!
  for _ in $(seq 50); do grep -q "/v1" "$port_file" 2>/dev/null && break; sleep 0.1; done
  local base; base=$(grep -o "http://127.0.0.1:[0-9]*/v1" "$port_file")
  local start end
  start=$(date +%s.%N)
  $BIN data generate --articles "$OUT/articles.json" --state "$OUT/$label.db" --out "$OUT/$label.jsonl" --base-url "$base" --model mock-model --slots 4 2> "$OUT/$label.log" > "$OUT/$label.summary"
  end=$(date +%s.%N)
  "$PYTHON" - "$OUT/$label.db" "$OUT/chunks-$label.jsonl" <<'PY'
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
with open(sys.argv[2], "w") as f:
    for (text,) in db.execute("SELECT text FROM chunk ORDER BY id"):
        f.write(json.dumps({"text": text}) + "\n")
PY
  local refinery_stats; refinery_stats=$(curl -s "${base%/v1}/stats")
  kill $mock; wait $mock 2>/dev/null || true
  $BIN mock-llm --port 0 --latency-ms "$LATENCY_MS" "$@" > "$port_file" 2>/dev/null &
  mock=$!
  for _ in $(seq 50); do grep -q "/v1" "$port_file" 2>/dev/null && break; sleep 0.1; done
  base=$(grep -o "http://127.0.0.1:[0-9]*/v1" "$port_file")
  local reference; reference=$("$PYTHON" bench/generate_reference.py "$base" "$OUT/chunks-$label.jsonl")
  kill $mock; wait $mock 2>/dev/null || true
  "$PYTHON" - "$label" "$start" "$end" "$OUT/$label.db" "$reference" "$LATENCY_MS" <<'PY'
import json, sqlite3, sys
label, start, end, db, reference, latency = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], json.loads(sys.argv[5]), float(sys.argv[6])
con = sqlite3.connect(db)
chunks = con.execute("SELECT count(*) FROM chunk").fetchone()[0]
done = con.execute("SELECT count(*) FROM chunk WHERE status = 'done'").fetchone()[0]
import re
log = open(db.replace(".db", ".log")).read()
match = re.search(r"chunks settled \(done or failed\) in ([0-9.]+) s", log)
seconds = float(match.group(1)) if match else end - start
rate = chunks / seconds
ideal = 4 / (latency / 1000)
print(f"{label}: {chunks} chunks at {latency:.0f} ms latency (ideal {ideal:.1f} chunks/s with 4 in flight)")
print(f"  refinery  {rate:5.1f} chunks/s ({rate / ideal:.0%} of ideal), {done}/{chunks} done, generation phase {seconds:.1f} s (whole command {end - start:.1f} s)")
print(f"  reference {reference['requests_per_second']:5.1f} chunks/s ({reference['requests_per_second'] / ideal:.0%} of ideal), {reference['done']}/{chunks} done, {reference['lost']} lost")
print(f"  ratio     {rate / reference['requests_per_second']:.2f}x")
PY
}
run_side_by_side clean
run_side_by_side faults --rate-429 0.2
