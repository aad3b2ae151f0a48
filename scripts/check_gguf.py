#!/usr/bin/env python3
"""Checks Refinery's GGUF export with llama.cpp itself (llama-cpp-python, pinned) and the `gguf` package.

    check_gguf.py MODEL_DIR REFINERY_BINARY OUT_DIR [QUANT ...] [adapter=ADAPTER_DIR]

For each type (default: f32 f16 bf16 q8_0 q4_0), `refinery export --format gguf` writes
OUT_DIR/model-QUANT.gguf, then:
  - the `gguf` package reads every tensor back: for f32/f16/bf16 bit for bit the model's weights
    (query/key rows permuted as llama.cpp's converter does), the metadata llama.cpp needs present;
  - llama.cpp loads the file and runs the prompt of the fixture's greedy case: the logits of every
    position against transformers' float32 logits (largest difference printed; f32 must be
    within 1e-3), and 16 greedy tokens against the fixture's (transformers' = refinery generate's).
"""
import json
import os
import subprocess
import sys

import numpy as np
import torch
from gguf import GGUFReader
from llama_cpp import Llama
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM


def permute(w, heads):
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def rope_factors(config):
    scaling = config.get("rope_scaling") or config.get("rope_parameters")
    base = (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta", 10000.0))
    dim = config.get("head_dim", config["hidden_size"] // config["num_attention_heads"])
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old = scaling["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / low, old / high
    factors = []
    for freq in freqs:
        wavelen = 2 * np.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(factors, dtype=np.float32)


def hf_weights(model_dir, config):
    weights = {}
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors") and name.startswith("model"):
            weights.update({k: v.float() for k, v in load_file(os.path.join(model_dir, name)).items()})
    mapping = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight", "lm_head.weight": "output.weight"}
    out = {}
    for name, tensor in weights.items():
        if name in mapping:
            out[mapping[name]] = tensor
            continue
        parts = name.split(".")
        layer, rest = parts[2], ".".join(parts[3:])
        target = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                  "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                  "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                  "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight", "mlp.down_proj.weight": "ffn_down.weight",
                  "self_attn.q_proj.bias": "attn_q.bias", "self_attn.k_proj.bias": "attn_k.bias", "self_attn.v_proj.bias": "attn_v.bias"}[rest]
        if config["model_type"] in ("llama", "mistral"):
            if rest in ("self_attn.q_proj.weight", "self_attn.q_proj.bias"):
                tensor = permute(tensor, config["num_attention_heads"])
            if rest in ("self_attn.k_proj.weight", "self_attn.k_proj.bias"):
                tensor = permute(tensor, config.get("num_key_value_heads", config["num_attention_heads"]))
        out[f"blk.{layer}.{target}"] = tensor
    return out


def check_adapter(model_dir, binary, out_dir, adapter, prompt):
    paths = {kind: os.path.join(out_dir, f"{kind}.gguf") for kind in ("base", "merged", "lora")}
    run = lambda *args: subprocess.run([binary, "export", "--model", model_dir, *args, "--overwrite"], check=True, capture_output=True)
    run("--format", "gguf", "--quant", "f32", "--output", paths["base"])
    run("--adapter", adapter, "--format", "gguf", "--quant", "f32", "--output", paths["merged"])
    run("--adapter", adapter, "--format", "gguf-lora", "--output", paths["lora"])

    def logits(**kw):
        llm = Llama(n_ctx=256, logits_all=True, verbose=False, n_threads=2, type_k=0, type_v=0, **kw)
        llm.eval(prompt)
        return np.array(llm.scores[: len(prompt)])
    base, merged = logits(model_path=paths["base"]), logits(model_path=paths["merged"])
    applied = logits(model_path=paths["base"], lora_path=paths["lora"])
    difference = float(np.abs(applied - merged).max())
    print(f"gguf-lora: llama.cpp with the adapter within {difference:.2e} of the merged file (the adapter moves logits by {float(np.abs(merged - base).max()):.2f})")
    return difference <= 1e-4


def main(model_dir, binary, out_dir, *rest):
    adapter = next((a.split("=", 1)[1] for a in rest if a.startswith("adapter=")), None)
    quants = tuple(a for a in rest if not a.startswith("adapter=")) or ("f32", "f16", "bf16", "q8_0", "q4_0")
    os.makedirs(out_dir, exist_ok=True)
    config = json.load(open(os.path.join(model_dir, "config.json")))
    greedy = json.load(open(os.path.join(model_dir, "expected.json")))["greedy"]
    prompt = greedy["prompt_ids"]
    reference = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        expected_logits = reference(torch.tensor([prompt])).logits[0].numpy()
    weights = hf_weights(model_dir, config)
    failed = False
    for quant in quants:
        path = os.path.join(out_dir, f"model-{quant}.gguf")
        subprocess.run([binary, "export", "--model", model_dir, "--format", "gguf", "--quant", quant, "--output", path, "--overwrite"],
                       check=True, capture_output=True)
        reader = GGUFReader(path)
        fields = {name: field for name, field in reader.fields.items()}
        arch = bytes(fields["general.architecture"].parts[-1]).decode()
        for key in ["context_length", "embedding_length", "block_count", "attention.head_count", "attention.head_count_kv",
                    "attention.layer_norm_rms_epsilon", "rope.freq_base"]:
            assert f"{arch}.{key}" in fields, f"{quant}: metadata {arch}.{key} missing"
        for key in ["tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                    "tokenizer.ggml.eos_token_id", "tokenizer.chat_template"]:
            assert key in fields, f"{quant}: metadata {key} missing"
        if quant in ("f32", "f16", "bf16"):
            for tensor in reader.tensors:
                if tensor.name == "rope_freqs.weight":
                    # llama3 RoPE scaling: convert_hf_to_gguf's factors, to float32 rounding.
                    want = rope_factors(config)
                    assert np.allclose(np.asarray(tensor.data), want, rtol=1e-6), f"{quant}: rope_freqs differ"
                    continue
                want = weights[tensor.name].numpy()
                if quant == "f16" and want.ndim == 2:
                    want_bytes = want.astype(np.float16).tobytes()
                elif quant == "bf16" and want.ndim == 2:
                    want_bytes = torch.from_numpy(want).to(torch.bfloat16).view(torch.int16).numpy().tobytes()
                else:
                    want_bytes = want.astype(np.float32).tobytes()
                got = np.asarray(tensor.data).tobytes()
                assert got == want_bytes, f"{quant}: tensor {tensor.name} differs"
            print(f"{quant}: {len(reader.tensors)} tensors read back bit for bit by gguf {reader.tensors[0].tensor_type.name}…")
        # A float32 KV cache (llama.cpp's default is f16, which alone moves logits by ~3e-3 here).
        llm = Llama(model_path=path, n_ctx=256, logits_all=True, verbose=False, n_threads=2, type_k=0, type_v=0)
        llm.reset()
        llm.eval(prompt)
        logits = np.array(llm.scores[: len(prompt)])
        difference = float(np.abs(logits - expected_logits).max())
        tokens = list(prompt)
        generated = []
        for _ in range(len(greedy["ids"])):
            llm.reset()
            llm.eval(tokens)
            token = int(np.argmax(llm.scores[len(tokens) - 1]))
            generated.append(token)
            tokens.append(token)
        same = generated == greedy["ids"]
        if quant == quants[0]:
            # llama.cpp's tokenizer from the file's vocabulary, merges and pre-tokenizer name.
            from transformers import AutoTokenizer
            hf = AutoTokenizer.from_pretrained(model_dir)
            for text in ["The assistant answers quickly.", "Numbers 12345 and  spaces\n\nnew lines", "naïve café, 数据 🙂"]:
                theirs = hf.encode(text, add_special_tokens=False)
                ours = llm.tokenize(text.encode(), add_bos=False, special=False)
                print(f"  tokenize {text!r}: llama.cpp {'equals' if ours == theirs else 'differs from'} tokenizers"
                      + ("" if ours == theirs else f" ({ours} vs {theirs})"))
        print(f"{quant}: llama.cpp logits within {difference:.2e} of transformers' over {len(prompt)} positions; "
              f"greedy tokens {'equal' if same else 'differ: ' + str(generated)} ({len(generated)} tokens)")
        if quant == "f32" and (difference > 1e-3 or not same):
            failed = True
    if adapter and not check_adapter(model_dir, binary, out_dir, adapter, prompt):
        failed = True
    if failed:
        sys.exit("f32 GGUF is not within 1e-3 of transformers, its greedy tokens differ, or the GGUF adapter is not the merged model")
    print("OK")


if __name__ == "__main__":
    main(*sys.argv[1:])
