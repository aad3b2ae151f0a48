#!/usr/bin/env python3
"""Checks that what `refinery train` / `refinery export` wrote loads in PEFT / transformers and gives
the numbers Refinery predicts.

    check_export.py --refinery .build/debug/refinery --model BASE --adapter ADAPTER_DIR --merged MERGED_DIR --data EVAL.jsonl

Compares, on every sample of the dataset (openai format, loss on assistant tokens per DESIGN §3.2):
  * PEFT (base + adapter) masked loss  vs  `refinery eval --adapter`
  * transformers (merged folder) loss  vs  `refinery eval --model MERGED`
  * greedy continuations of a prompt   vs  `refinery generate --json` (adapter and merged)
Exits non-zero on a mismatch.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402
import make_training_fixtures as mtf  # noqa: E402


def torch_loss(model, encoded):
    total, count = 0.0, 0
    with torch.no_grad():
        for ids, trained in encoded:
            loss_sum, n = mtf.micro_batch_loss(model, ids, trained)
            total += loss_sum.item()
            count += n
    return total / count


def refinery(binary, *args):
    out = subprocess.run([binary, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--refinery", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", required=True)
    parser.add_argument("--merged", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--prompt", default="The assistant answers")
    args = parser.parse_args()
    rows = [json.loads(line) for line in open(args.data, encoding="utf-8") if line.strip()]
    rows = [{"messages": mf.to_messages(row)} for row in rows]
    encoded = mtf.encode_rows(args.model, rows)
    failures = 0

    peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32), args.adapter)
    peft_model.eval()
    want = torch_loss(peft_model, encoded)
    got = refinery(args.refinery, "eval", "--model", args.model, "--adapter", args.adapter, "--data", args.data)["loss"]
    rel = abs(got - want) / want
    print(f"adapter: PEFT loss {want:.8f}  refinery {got:.8f}  relative error {rel:.2e}")
    failures += rel > 1e-5

    merged = AutoModelForCausalLM.from_pretrained(args.merged, dtype=torch.float32)
    merged.eval()
    want = torch_loss(merged, encoded)
    got = refinery(args.refinery, "eval", "--model", args.merged, "--data", args.data)["loss"]
    rel = abs(got - want) / want
    print(f"merged:  transformers loss {want:.8f}  refinery {got:.8f}  relative error {rel:.2e}")
    failures += rel > 1e-5

    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(args.model, "tokenizer.json"))
    prompt = tok.encode(args.prompt).ids
    for label, model, extra in [("adapter", peft_model, ["--model", args.model, "--adapter", args.adapter]),
                                ("merged", merged, ["--model", args.merged])]:
        with torch.no_grad():
            # An explicit mask: without it transformers infers one from pad_token_id, which masks
            # out a BOS that shares the id (tiny-llama's BOS is 0).
            ids = torch.tensor([prompt])
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12,
                                 eos_token_id=None, pad_token_id=0)
        want_ids = out[0, len(prompt):].tolist()
        got_ids = refinery(args.refinery, "generate", *extra, "--prompt", args.prompt, "--max-new-tokens", "12", "--json")["ids"]
        same = want_ids[:len(got_ids)] == got_ids
        print(f"{label} greedy: {'identical' if same else 'DIFFERENT'} refinery {got_ids}" + ("" if same else f" reference {want_ids}"))
        failures += not same
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
