#!/usr/bin/env python3
"""Checks that a preference dataset written by `refinery data feedback --preferences` (or the
`feedback` curate stage) is what TRL's DPO trainer reads.

    check_preferences_trl.py --preferences PREFS.jsonl --model MODEL_DIR

1. Loads the JSONL with `datasets` and checks every row with TRL's data utilities: it is
   conversational (`is_conversational`), has exactly the prompt/chosen/rejected keys TRL's
   templates accept, and `maybe_apply_chat_template` renders prompt, chosen and rejected with the
   model's chat template (non-empty, the chosen differs from the rejected).
2. Builds a `DPOTrainer` on the small model in MODEL_DIR (a test fixture), which tokenizes the
   dataset through TRL's own preparation, and runs two optimizer steps on CPU: the loss must be
   finite.
Exits non-zero on any failure. Needs trl==1.16.0 (scripts/requirements.txt).
"""
import argparse
import math
import sys
import tempfile

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import DPOConfig, DPOTrainer
from trl.data_utils import is_conversational, maybe_apply_chat_template


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preferences", required=True)
    parser.add_argument("--model", required=True)
    args = parser.parse_args()

    dataset = load_dataset("json", data_files=args.preferences, split="train")
    if len(dataset) == 0:
        sys.exit("the preference file is empty")
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    for index, row in enumerate(dataset):
        example = {key: row[key] for key in ("prompt", "chosen", "rejected")}
        if not is_conversational(example):
            sys.exit(f"row {index}: not conversational in TRL's sense: {example}")
        rendered = maybe_apply_chat_template(example, tokenizer)
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(rendered.get(key), str) or not rendered[key]:
                sys.exit(f"row {index}: the chat template rendered no {key}")
        if rendered["chosen"] == rendered["rejected"]:
            sys.exit(f"row {index}: chosen and rejected are the same")
    print(f"{len(dataset)} rows: conversational prompt/chosen/rejected, rendered by the chat template")

    model = AutoModelForCausalLM.from_pretrained(args.model)
    with tempfile.TemporaryDirectory() as output:
        config = DPOConfig(output_dir=output, max_steps=2, per_device_train_batch_size=2, learning_rate=1e-4,
                           logging_steps=1, report_to=[], use_cpu=True, max_length=256, save_strategy="no")
        trainer = DPOTrainer(model=model, args=config, train_dataset=dataset.select_columns(["prompt", "chosen", "rejected"]),
                             processing_class=tokenizer)
        tokenized = trainer.train_dataset
        for column in ("prompt_ids", "chosen_ids", "rejected_ids"):
            if column not in tokenized.column_names:
                sys.exit(f"TRL's preparation did not produce {column}: {tokenized.column_names}")
        result = trainer.train()
        if not math.isfinite(result.training_loss):
            sys.exit(f"DPO loss is not finite: {result.training_loss}")
        print(f"DPOTrainer tokenized {len(tokenized)} rows and trained 2 steps: loss {result.training_loss:.4f}")


if __name__ == "__main__":
    main()
