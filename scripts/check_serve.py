#!/usr/bin/env python3
"""Checks a running `refinery serve` with the official `openai` client (pinned in requirements.txt).

    check_serve.py BASE_URL MODEL [REFINERY_BINARY MODEL_DIR]

1. Streams a greedy chat completion and asks for the same answer whole: the streamed text equals
   the whole text, and the usage (stream_options.include_usage) equals the whole answer's.
2. With REFINERY_BINARY and MODEL_DIR: `refinery generate --input` on the same conversation gives
   the same text.
3. `response_format` json_schema (strict) at temperature 1.0: 200 sampled completions all parse
   and validate against the schema with the `jsonschema` package.
"""
import json
import os
import subprocess
import sys
import tempfile

import jsonschema
from openai import OpenAI

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["title", "tags", "rating", "published"],
    "properties": {
        "title": {"type": "string", "pattern": "\\S"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 4},
        "rating": {"type": "integer"},
        "published": {"type": ["boolean", "null"]},
    },
}


def main(base, model, binary=None, model_dir=None):
    client = OpenAI(base_url=base, api_key=os.environ.get("REFINERY_SERVE_TOKEN", "unused"))
    messages = [{"role": "user", "content": "Write a short poem about the sea."}]
    whole = client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0)
    text = whole.choices[0].message.content
    pieces, usage = [], None
    for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=16, temperature=0, stream=True,
                                                stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    streamed = "".join(pieces)
    if streamed != text:
        sys.exit(f"streamed {streamed!r} differs from whole {text!r}")
    if usage is None or usage.model_dump() != whole.usage.model_dump():
        sys.exit(f"usage streamed {usage} vs whole {whole.usage}")
    if whole.usage.total_tokens != whole.usage.prompt_tokens + whole.usage.completion_tokens:
        sys.exit(f"usage does not add up: {whole.usage}")
    print(f"stream = whole: {len(streamed)} characters, usage {whole.usage.model_dump()}")

    if binary and model_dir:
        with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
            f.write(json.dumps({"messages": messages}) + "\n")
        out = subprocess.run([binary, "generate", "--model", model_dir, "--input", f.name, "--max-new-tokens", "16"],
                             check=True, capture_output=True, text=True).stdout
        generated = json.loads(out)["completion"]
        if generated != text:
            sys.exit(f"refinery generate {generated!r} differs from serve {text!r}")
        print("refinery generate gives the same text")

    valid = 0
    for round in range(20):
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": f"Describe item {round}."}], max_tokens=80, temperature=1.0, n=10,
            seed=round, response_format={"type": "json_schema", "json_schema": {"name": "item", "strict": True, "schema": SCHEMA}})
        for choice in reply.choices:
            document = json.loads(choice.message.content)
            jsonschema.validate(document, SCHEMA)
            valid += 1
    print(f"OK: {valid} of 200 sampled json_schema completions parse and validate with jsonschema")


if __name__ == "__main__":
    main(*sys.argv[1:])
