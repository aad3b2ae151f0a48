#!/usr/bin/env python3
"""A random-weight Llama checkpoint of any shape, written tensor by tensor (never whole in memory).

    make_random_llama.py OUT_DIR [SHAPE]

SHAPE llama3-8b (default): hidden 4096, 32 layers, 32 heads, 8 KV heads, intermediate 14336,
vocabulary 128256, untied head — Llama-3-8B's shape, 8.03 B parameters, 16 GB in bfloat16;
llama3.2-1b: hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate 8192, tied head — 1.24 B
parameters, 2.5 GB; tiny: a few MB.
Weights are N(0, 0.02) in bfloat16 (norms 1), seeded; config.json only (no tokenizer: the
benchmarks feed token ids).
"""
import json
import os
import struct
import sys

import numpy as np

SHAPES = {
    "llama3-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                      num_key_value_heads=8, vocab_size=128256),
    # Llama-3.2-1B's shape: 1.24 B parameters, the head tied to the embeddings.
    "llama3.2-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
                        num_key_value_heads=8, vocab_size=128256, tie_word_embeddings=True),
    "tiny": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=4096),
}


def tensors(shape):
    h, i, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    head_dim = h // shape["num_attention_heads"]
    kv = shape["num_key_value_heads"] * head_dim
    yield "model.embed_tokens.weight", (shape["vocab_size"], h), "normal"
    for layer in range(layers):
        p = f"model.layers.{layer}."
        yield p + "input_layernorm.weight", (h,), "ones"
        yield p + "self_attn.q_proj.weight", (h, h), "normal"
        yield p + "self_attn.k_proj.weight", (kv, h), "normal"
        yield p + "self_attn.v_proj.weight", (kv, h), "normal"
        yield p + "self_attn.o_proj.weight", (h, h), "normal"
        yield p + "post_attention_layernorm.weight", (h,), "ones"
        yield p + "mlp.gate_proj.weight", (i, h), "normal"
        yield p + "mlp.up_proj.weight", (i, h), "normal"
        yield p + "mlp.down_proj.weight", (h, i), "normal"
    yield "model.norm.weight", (h,), "ones"
    if not shape.get("tie_word_embeddings", False):
        yield "lm_head.weight", (shape["vocab_size"], h), "normal"


def main(out, name="llama3-8b"):
    shape = SHAPES[name]
    os.makedirs(out, exist_ok=True)
    config = dict(architectures=["LlamaForCausalLM"], model_type="llama", rms_norm_eps=1e-5, rope_theta=500000.0,
                  max_position_embeddings=8192, tie_word_embeddings=False, torch_dtype="bfloat16", bos_token_id=1,
                  eos_token_id=2, hidden_act="silu")
    config.update(shape)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    header, offset = {}, 0
    entries = list(tensors(shape))
    for tensor_name, dims, _ in entries:
        size = int(np.prod(dims)) * 2
        header[tensor_name] = dict(dtype="BF16", shape=list(dims), data_offsets=[offset, offset + size])
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    rng = np.random.default_rng(0)
    path = os.path.join(out, "model.safetensors")
    with open(path + ".partial", "wb") as f:
        f.write(struct.pack("<Q", len(header_bytes)))
        f.write(header_bytes)
        for index, (tensor_name, dims, kind) in enumerate(entries):
            count = int(np.prod(dims))
            for start in range(0, count, 1 << 26):
                n = min(1 << 26, count - start)
                values = np.ones(n, np.float32) if kind == "ones" else rng.standard_normal(n, dtype=np.float32) * np.float32(0.02)
                f.write((values.view(np.uint32) >> 16).astype("<u2").tobytes())
            if index % 20 == 0:
                print(f"\r{index + 1}/{len(entries)} tensors", end="", file=sys.stderr, flush=True)
    os.replace(path + ".partial", path)
    print(f"\nwrote {path}: {offset / 1e9:.1f} GB, {offset // 2 / 1e9:.2f} B parameters", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "llama3-8b")
