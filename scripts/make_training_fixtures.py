#!/usr/bin/env python3
"""Reference training runs (PyTorch + PEFT, CPU, float32) on the fixture checkpoints.

Run after make_fixtures.py. For each of llama-gqa and qwen2-tied it writes, under
Tests/RefineryModelTests/Fixtures/<model>/training/:

    train.jsonl                      the training samples (openai format, very different lengths)
    init_adapter/                    a PEFT LoRA adapter (r=8, alpha=16, all-linear) with non-zero B
    lora_expected.json               6 steps: loss, grad_norm, lr, tokens per step
    lora_final/adapter_model.safetensors
    full_expected.json               3 steps of full fine-tuning
    full_final.safetensors           every parameter after those 3 steps

Conventions (DESIGN §3): loss of a step = Σ CE over trained tokens of all its micro-batches ÷ their
count; AdamW as torch (weight decay 0.01 on all but biases and norms); linear schedule with warmup
(lr 0 at step 0); clip_grad_norm_ 1.0, grad_norm logged before clipping; no shuffle: micro-batch j
of step s takes sample (s·accum + j) mod n.
"""
import json
import os
import shutil
import sys

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, get_linear_schedule_with_warmup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402

TRAIN_ROWS = [
    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
    {"messages": [{"role": "system", "content": "You are terse."},
                  {"role": "user", "content": "Explain gradient accumulation in one paragraph, please."},
                  {"role": "assistant", "content": "Gradient accumulation adds the gradients of several micro-batches "
                                                   "before one optimizer step, so a large batch fits in small memory. "
                                                   "The loss must be weighted by tokens, not averaged per micro-batch."},
                  {"role": "user", "content": "And packing?"},
                  {"role": "assistant", "content": "Packing lays samples end to end with a block-diagonal mask."}]},
    {"messages": [{"role": "user", "content": "数据是什么？"}, {"role": "assistant", "content": "数据是信息。🙂"}]},
    {"messages": [{"role": "user", "content": "Write code."},
                  {"role": "assistant", "content": "def f(x):\n    return x * 2\n"}]},
    {"messages": [{"role": "user", "content": "Count to five."}, {"role": "assistant", "content": "1, 2, 3, 4, 5."}]},
]

LR = 1e-3
WARMUP = 2
MAX_GRAD_NORM = 1.0
WEIGHT_DECAY = 0.01


def encode_rows(directory, rows):
    tok = Tokenizer.from_file(os.path.join(directory, "tokenizer.json"))
    hf_tok = PreTrainedTokenizerFast.from_pretrained(directory)
    template = open(os.path.join(directory, "chat_template.jinja")).read()
    specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
    encoded = []
    for row in rows:
        messages = row["messages"]
        text = hf_tok.apply_chat_template(messages, chat_template=template, tokenize=False)
        encoding = tok.encode(text, add_special_tokens=False)
        spans = mf.trained_spans(text, messages, specials)
        trained = [any(s <= o[0] < e for s, e in spans) for o in encoding.offsets]
        encoded.append((encoding.ids, trained))
    return encoded


def micro_batch_loss(model, ids, trained):
    logits = model(torch.tensor([ids])).logits[0]
    rows = [t - 1 for t in range(1, len(ids)) if trained[t]]
    targets = [ids[t] for t in range(1, len(ids)) if trained[t]]
    return F.cross_entropy(logits[rows], torch.tensor(targets), reduction="sum"), len(rows)


def train(model, encoded, steps, accum):
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not (n.endswith("bias") or "norm" in n)]
    no_decay = [p for n, p in named if n.endswith("bias") or "norm" in n]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=LR, betas=(0.9, 0.999), eps=1e-8)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=WARMUP, num_training_steps=steps)
    params = [p for _, p in named]
    log = []
    for step in range(steps):
        batch = [encoded[(step * accum + j) % len(encoded)] for j in range(accum)]
        count = sum(sum(1 for t in range(1, len(ids)) if trained[t]) for ids, trained in batch)
        total = 0.0
        for ids, trained in batch:
            loss_sum, _ = micro_batch_loss(model, ids, trained)
            (loss_sum / count).backward()
            total += loss_sum.item()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, MAX_GRAD_NORM).item()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        log.append({"step": step + 1, "loss": total / count, "grad_norm": grad_norm, "lr": lr, "tokens": count})
    return log


def lora_fixture(name):
    directory = os.path.join(mf.MODEL_FIXTURES, name)
    out = os.path.join(directory, "training")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with open(os.path.join(out, "train.jsonl"), "w", encoding="utf-8") as f:
        for row in TRAIN_ROWS:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    encoded = encode_rows(directory, TRAIN_ROWS)

    torch.manual_seed(11)
    base = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", lora_dropout=0.0, bias="none",
                        task_type="CAUSAL_LM")
    model = get_peft_model(base, config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.05 * torch.randn_like(p))
    model.save_pretrained(os.path.join(out, "init_adapter"))
    model.train()
    log = train(model, encoded, steps=6, accum=2)
    model.save_pretrained(os.path.join(out, "lora_final"))
    for folder in ("init_adapter", "lora_final"):
        readme = os.path.join(out, folder, "README.md")
        if os.path.exists(readme):
            os.remove(readme)
    mf.write_json(os.path.join(out, "lora_expected.json"), {
        "method": "lora", "r": 8, "alpha": 16, "targets": "all-linear", "lr": LR, "warmup_steps": WARMUP,
        "steps": 6, "micro_batch_size": 1, "grad_accum": 2, "max_grad_norm": MAX_GRAD_NORM,
        "weight_decay": WEIGHT_DECAY, "log": log})

    # The merged model's logits, for the export test (transformers loads the merged folder).
    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32),
                                         os.path.join(out, "lora_final"))
    ids = encoded[0][0]
    with torch.no_grad():
        logits = reloaded(torch.tensor([ids])).logits[0].contiguous()
    save_file({"logits": logits, "ids": torch.tensor(ids, dtype=torch.float32)},
              os.path.join(out, "lora_final_logits.safetensors"))

    torch.manual_seed(12)
    full = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32)
    full.train()
    log = train(full, encoded, steps=3, accum=2)
    state = {n: p.detach().contiguous() for n, p in full.named_parameters()}
    save_file(state, os.path.join(out, "full_final.safetensors"))
    mf.write_json(os.path.join(out, "full_expected.json"), {
        "method": "full", "lr": LR, "warmup_steps": WARMUP, "steps": 3, "micro_batch_size": 1, "grad_accum": 2,
        "max_grad_norm": MAX_GRAD_NORM, "weight_decay": WEIGHT_DECAY, "log": log})


def main():
    torch.set_num_threads(1)
    for name in ["llama-gqa", "qwen2-tied"]:
        lora_fixture(name)
    print("training fixtures written")


if __name__ == "__main__":
    main()
