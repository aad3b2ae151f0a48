#!/usr/bin/env python3
"""Cluster benchmark (run through bench/cluster.sh, which builds the release binary).

Generation: `refinery coordinator` + N `refinery worker` processes (4 slots each) against
`refinery mock-llm` at LATENCY_MS, for N in WORKERS; throughput from the first request's start
to the last one's end (from the state file), against the ideal 4 × N / latency; the
coordinator's CPU time (user + system, from wait4) per task.

Training: LoRA r=16 on all linear modules of the SmolLM2-135M shape (random weights), sequences
of 512 tokens, 2 workers, 2 micro-batches per step (one each): per step, the share of wall time
not spent computing gradients = 1 − (the longest worker's gradient compute in the step) / (step wall time).
"""
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time

BIN = os.environ.get("BIN", ".build/release/refinery")
OUT = os.environ.get("OUT", "bench/out/cluster")
LATENCY_MS = float(os.environ.get("LATENCY_MS", "500"))
WORKERS = [int(w) for w in os.environ.get("WORKERS", "1 2 4 8").split()]
CHUNKS_PER_WORKER = int(os.environ.get("CHUNKS_PER_WORKER", "80"))
MODEL = os.environ.get("BENCH_MODEL", "bench/out/smollm2-135m-shape")
TRAIN_STEPS = int(os.environ.get("TRAIN_STEPS", "6"))


def start_mock():
    log = open(f"{OUT}/mock.log", "w")
    process = subprocess.Popen([BIN, "mock-llm", "--port", "0", "--latency-ms", str(LATENCY_MS)], stdout=subprocess.PIPE, stderr=log, text=True)
    line = process.stdout.readline()
    base = re.search(r"http://127\.0\.0\.1:\d+/v1", line).group(0)
    return process, base


def articles(path, count):
    rows = []
    for i in range(count):
        text = " ".join(f"Sentence {k} of article {i} discusses measurement {i * 97 + k} with care and some detail." for k in range(22))
        rows.append({"id": f"a{i}", "content": text})
    json.dump({"artifact_data": rows}, open(path, "w"))


def generation(workers):
    name = f"gen{workers}"
    for suffix in [".db", ".db-wal", ".db-shm", ".jsonl", ".test.jsonl"]:
        if os.path.exists(f"{OUT}/{name}{suffix}"):
            os.remove(f"{OUT}/{name}{suffix}")
    articles(f"{OUT}/{name}.json", CHUNKS_PER_WORKER * workers)
    mock, base = start_mock()
    config = f"{OUT}/{name}.yaml"
    with open(config, "w") as f:
        f.write(f"data:\n  articles: {OUT}/{name}.json\n  state: {OUT}/{name}.db\n  out: {OUT}/{name}.jsonl\n"
                f"generate:\n  base_url: {base}\n  model: mock-model\n")
    port = 31000 + workers
    coordinator = subprocess.Popen([BIN, "coordinator", "--config", config, "--listen", f"tcp://127.0.0.1:{port}"],
                                   stdout=subprocess.DEVNULL, stderr=open(f"{OUT}/{name}.coordinator.log", "w"))
    procs = [subprocess.Popen([BIN, "worker", "--coordinator", f"tcp://127.0.0.1:{port}", "--slots", "4", "--name", f"{name}-w{i}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(workers)]
    _, status, usage = os.wait4(coordinator.pid, 0)
    for p in procs:
        p.wait(timeout=30)
    mock.terminate()
    mock.wait()
    assert os.waitstatus_to_exitcode(status) == 0, open(f"{OUT}/{name}.coordinator.log").read()
    db = sqlite3.connect(f"{OUT}/{name}.db")
    chunks, done = db.execute("SELECT count(*), sum(status = 'done') FROM chunk").fetchone()
    first, last, requests = db.execute("SELECT min(created_at), max(finished_at), count(*) FROM request").fetchone()
    seconds = last - first
    rate = requests / seconds
    # Worker processes start at different times (8 processes on 2 cores take ~1 s to come up): also
    # measure from the moment the last one said hello.
    joined = db.execute("SELECT max(first_seen) FROM worker").fetchone()[0]
    after = db.execute("SELECT count(*) FROM request WHERE created_at >= ?", (joined,)).fetchone()[0]
    steady = after / (last - joined)
    ideal = 4 * workers / (LATENCY_MS / 1000)
    cpu = usage.ru_utime + usage.ru_stime
    return {"workers": workers, "chunks": chunks, "done": done, "requests": requests, "seconds": seconds, "rate": rate,
            "ideal": ideal, "share": rate / ideal, "steady": steady, "steady_share": steady / ideal,
            "cpu_ms_per_task": 1000 * cpu / max(chunks, 1), "coordinator_cpu_s": cpu}


def training():
    model = f"{OUT}/smollm2-135m-shape-chat"
    if not os.path.exists(f"{model}/config.json"):
        os.makedirs(model, exist_ok=True)
        for name in os.listdir(MODEL):
            shutil.copy(f"{MODEL}/{name}", model)
        # The shape's random weights with a small chat tokenizer (ids < 49152) so that datasets render.
        for name in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]:
            shutil.copy(f"examples/tiny-llama/{name}", model)
    rows = []
    for i in range(16):
        # Long answers (cut to 512 tokens) first; two short ones last, so the dataset trains its end-of-turn token.
        answer = " ".join(f"word{(i * 31 + k) % 97} number {k}" for k in range(400 if i < 14 else 5))
        rows.append(json.dumps({"messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": answer}]}))
    open(f"{OUT}/train.jsonl", "w").write("\n".join(rows) + "\n")
    for leftover in ["train.db", "train.db-wal", "train.db-shm"]:
        if os.path.exists(f"{OUT}/{leftover}"):
            os.remove(f"{OUT}/{leftover}")
    config = f"{OUT}/train.yaml"
    with open(config, "w") as f:
        f.write(f"train:\n  model: {model}\n  data: {OUT}/train.jsonl\n  output: {OUT}/train-adapter\n  method: lora\n  lora_r: 16\n"
                f"  lora_alpha: 32\n  targets: all-linear\n  lr: 0.0002\n  steps: {TRAIN_STEPS}\n  micro_batch_size: 1\n  grad_accum: 2\n"
                f"  max_length: 512\n  checkpoint_every: 100\n  no_shuffle: true\n")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", REFINERY_THREADS="1")
    log = f"{OUT}/train.coordinator.log"
    coordinator = subprocess.Popen([BIN, "coordinator", "--config", config, "--state", f"{OUT}/train.db", "--listen", "tcp://127.0.0.1:31100"],
                                   stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env)
    procs = [subprocess.Popen([BIN, "worker", "--coordinator", "tcp://127.0.0.1:31100", "--model", model, "--name", f"train-w{i}"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env) for i in range(2)]
    assert coordinator.wait() == 0, open(log).read()
    for p in procs:
        p.wait(timeout=30)
    timing = json.load(open(f"{OUT}/train-adapter/step_timing.json"))
    # Step 1 includes the workers' first parameter transfer and warm-up; the last writes the final checkpoint.
    steps = list(zip(timing["step_seconds"], timing["critical_compute_seconds"]))[1:-1]
    shares = [1 - compute / wall for wall, compute in steps]
    return {"steps": len(steps), "step_s": statistics.median(w for w, _ in steps), "compute_per_micro_s": statistics.median(c for _, c in steps),
            "outside_share": statistics.median(shares), "tokens_per_s": 2 * 511 / statistics.median(w for w, _ in steps)}


def main():
    os.makedirs(OUT, exist_ok=True)
    print(f"generation against mock-llm at {LATENCY_MS:.0f} ms latency, 4 slots per worker, {CHUNKS_PER_WORKER} chunks per worker")
    for workers in WORKERS:
        r = generation(workers)
        print(f"  {r['workers']} worker(s): {r['rate']:6.2f} requests/s of ideal {r['ideal']:5.1f} = {r['share']:.0%} over the whole run, "
              f"{r['steady_share']:.0%} once all workers were up ({r['done']}/{r['chunks']} chunks done in {r['seconds']:.1f} s); "
              f"coordinator CPU {r['cpu_ms_per_task']:.2f} ms per task")
        sys.stdout.flush()
    if "--no-train" in sys.argv:
        return
    t = training()
    print(f"training: LoRA r=16 all-linear, SmolLM2-135M shape, sequence 512, 2 workers x 1 micro-batch per step, OpenBLAS 1 thread each")
    print(f"  median step {t['step_s']:.2f} s, slowest worker's gradient compute {t['compute_per_micro_s']:.2f} s, "
          f"share of a step outside gradient computation {t['outside_share']:.1%} (median of {t['steps']} steps), {t['tokens_per_s']:.0f} tokens/s")


if __name__ == "__main__":
    main()
