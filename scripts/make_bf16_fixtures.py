#!/usr/bin/env python3
"""Expected eval losses of the model fixtures with transformers loading them in bfloat16.

    .venv/bin/python scripts/make_bf16_fixtures.py

For each fixture under Tests/RefineryModelTests/Fixtures (written by make_fixtures.py), loads the
model with dtype=torch.bfloat16 (every weight and activation in bf16, as a user who loads a model in
bf16 runs it), computes the masked token-weighted loss of the same token ids and loss masks as
expected.json's "eval" entry (log-softmax in float64 of the bf16 logits), and writes
expected_bf16.json next to it. Pinned versions: scripts/requirements.txt.
"""
import json
import os
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = os.path.join(os.path.dirname(__file__), "..", "Tests", "RefineryModelTests", "Fixtures")


def main():
    torch.set_num_threads(1)
    for name in sorted(os.listdir(ROOT)):
        folder = os.path.join(ROOT, name)
        if not os.path.isfile(os.path.join(folder, "expected.json")):
            continue
        expected = json.load(open(os.path.join(folder, "expected.json")))
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
        model.eval()
        total, count = 0.0, 0
        for sample in expected["eval"]["per_sample"]:
            ids, trained = sample["ids"], set(sample["trained"])
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].double()
            logp = torch.log_softmax(logits, dim=-1)
            for t in range(1, len(ids)):
                if t in trained:
                    total += -logp[t - 1, ids[t]].item()
                    count += 1
        result = {"eval_loss_bf16": total / count, "tokens": count, "float32_eval_loss": expected["eval"]["loss"],
                  "torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
        with open(os.path.join(folder, "expected_bf16.json"), "w") as f:
            json.dump(result, f, indent=1)
            f.write("\n")
        print(name, result, file=sys.stderr)


if __name__ == "__main__":
    main()
