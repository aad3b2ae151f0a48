#!/usr/bin/env python3
"""Load generator and reference for bench/serve.sh.

    serve_client.py tokenizer MODEL_DIR OUT_DIR
        A copy of MODEL_DIR (weights linked) with a byte-level BPE tokenizer covering its whole
        vocabulary (trained on CPython's topic pages, padded with plain tokens), for serving.
    serve_client.py load BASE_URL MODEL CLIENTS REQUESTS PROMPT NEW
        CLIENTS concurrent clients send REQUESTS streamed /v1/completions in all (PROMPT random
        token ids, NEW tokens each, greedy, ignore_eos); prints aggregate tokens/s, time to first
        token and latency percentiles as one JSON object.
"""
import json
import os
import random
import shutil
import statistics
import sys
import time


def tokenizer(model_dir, out_dir):
    import pydoc_data.topics as topics
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    config = json.load(open(os.path.join(model_dir, "config.json")))
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(model_dir):
        target = os.path.join(out_dir, name)
        if not os.path.exists(target):
            os.symlink(os.path.abspath(os.path.join(model_dir, name)), target)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=config["vocab_size"], min_frequency=1, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(topics.topics.values()), trainer)
    data = json.loads(tok.to_str())
    vocab = data["model"]["vocab"]
    for id in range(len(vocab) + len(data["added_tokens"]), config["vocab_size"]):
        vocab[f"\u0120tok{id}"] = id
    json.dump(data, open(os.path.join(out_dir, "tokenizer.json"), "w"))
    json.dump({"eos_token": "<|endoftext|>", "bos_token": None}, open(os.path.join(out_dir, "tokenizer_config.json"), "w"))


def one(base, model, prompt, new):
    """One streamed completion over a connection of its own (http.client): (time to first token, latency, tokens)."""
    import http.client
    from urllib.parse import urlparse
    url = urlparse(base)
    body = json.dumps({"model": model, "prompt": prompt, "max_tokens": new, "temperature": 0, "stream": True, "ignore_eos": True,
                       "stream_options": {"include_usage": True}})
    started = time.perf_counter()
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=600)
    connection.request("POST", url.path + "/completions", body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    first, tokens = None, 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        elif first is None and chunk["choices"] and chunk["choices"][0]["text"]:
            first = time.perf_counter() - started
    connection.close()
    return first, time.perf_counter() - started, tokens


def load(base, model, clients, requests, prompt, new):
    from concurrent.futures import ThreadPoolExecutor
    rng = random.Random(0)
    prompts = [[rng.randrange(1000, 9000) for _ in range(prompt)] for _ in range(requests)]
    one(base, model, prompts[0], 4)  # warm-up
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        results = list(pool.map(lambda p: one(base, model, p, new), prompts))
    wall = time.perf_counter() - started
    ttft = sorted(r[0] for r in results if r[0] is not None)
    latency = sorted(r[1] for r in results)
    tokens = sum(r[2] for r in results)

    def pct(values, q):
        return values[min(len(values) - 1, int(q * len(values)))]
    print(json.dumps({"clients": clients, "requests": requests, "tokens": tokens, "seconds": wall, "tokens_per_second": tokens / wall,
                      "ttft_p50": pct(ttft, 0.5), "ttft_p90": pct(ttft, 0.9), "latency_p50": pct(latency, 0.5),
                      "latency_p90": pct(latency, 0.9), "latency_p99": pct(latency, 0.99)}))


if __name__ == "__main__":
    if sys.argv[1] == "tokenizer":
        tokenizer(sys.argv[2], sys.argv[3])
    else:
        load(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7]))
