#!/usr/bin/env python3
"""Parses a running `refinery dashboard`'s /metrics with the prometheus-client package's text-format
parser and checks its figures against `refinery status --json` of the same state file.

    check_metrics.py http://127.0.0.1:8080 STATE_DB [REFINERY_BINARY]
"""
import json
import subprocess
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main(base, state, binary="refinery"):
    text = urllib.request.urlopen(base + "/metrics").read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    status = json.loads(subprocess.run([binary, "status", "--state", state, "--json"], check=True, capture_output=True, text=True).stdout)
    checks = [
        (("refinery_chunks", (("state", "done"),)), status["chunks"]["done"]),
        (("refinery_chunks", (("state", "failed"),)), status["chunks"]["failed"]),
        (("refinery_chunks", (("state", "pending"),)), status["chunks"]["pending"]),
        (("refinery_llm_requests_total", ()), status["requests"]),
        (("refinery_llm_tokens_total", (("kind", "prompt"),)), status["prompt_tokens"]),
        (("refinery_llm_tokens_total", (("kind", "completion"),)), status["completion_tokens"]),
    ]
    checks += [(("refinery_llm_errors_total", (("class", name),)), count) for name, count in status["errors_by_class"].items()]
    if status["training"]["step_seconds"] is not None:
        checks.append((("refinery_train_step_seconds", ()), status["training"]["step_seconds"]))
    if status["training"]["last"]:
        checks += [(("refinery_train_step", ()), status["training"]["last"]["step"]),
                   (("refinery_train_loss", ()), status["training"]["last"]["loss"])]
    for key, want in checks:
        got = samples.get(key)
        if got is None or abs(got - want) > 1e-9 * max(1, abs(want)):
            sys.exit(f"{key}: /metrics says {got}, status --json {want}")
    print(f"OK: {len(samples)} samples parsed by prometheus_client; {len(checks)} figures equal status --json")


if __name__ == "__main__":
    main(*sys.argv[1:])
