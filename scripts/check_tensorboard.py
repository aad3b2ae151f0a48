#!/usr/bin/env python3
"""Reads a Refinery run's TensorBoard event files with the `tensorboard` package's own event reader
and checks they hold the same values as its train_log.jsonl.

    check_tensorboard.py RUN_OUTPUT_DIR      (made by `refinery train ... --report-to tensorboard`)

Every train row's loss, grad_norm, lr and tokens must appear as train/loss, train/grad_norm,
train/learning_rate and train/tokens at its step, and every eval row's eval_loss as eval/loss,
equal after rounding to float32 (TensorBoard stores float32 scalars). Exits non-zero on a mismatch.
"""
import json
import os
import sys

import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run):
    accumulator = EventAccumulator(os.path.join(run, "runs"), size_guidance={"scalars": 0})
    accumulator.Reload()
    scalars = {tag: {e.step: e.value for e in accumulator.Scalars(tag)} for tag in accumulator.Tags()["scalars"]}
    rows = [json.loads(line) for line in open(os.path.join(run, "train_log.jsonl")) if line.strip()]
    checked = 0
    for row in rows:
        pairs = [("eval_loss", "eval/loss")] if "eval_loss" in row else \
            [("loss", "train/loss"), ("grad_norm", "train/grad_norm"), ("lr", "train/learning_rate"), ("tokens", "train/tokens")]
        for key, tag in pairs:
            got = scalars.get(tag, {}).get(row["step"])
            want = float(np.float32(row[key]))
            if got is None or float(np.float32(got)) != want:
                sys.exit(f"step {row['step']}: {tag} is {got} in the event files, {want} in train_log.jsonl")
            checked += 1
    rates = scalars.get("train/tokens_per_second", {})
    print(f"OK: {checked} values of {len(rows)} train_log.jsonl rows equal TensorBoard's reading; "
          f"tags {sorted(scalars)}; tokens/s at {len(rates)} steps")


if __name__ == "__main__":
    main(sys.argv[1])
