#!/usr/bin/env python3
"""The reference pipeline's approach to generation: ThreadPoolExecutor(max_workers=4) over the chunks,
the `openai` client (default retries), JSON mode; a chunk whose call raises is lost.

    generate_reference.py BASE_URL CHUNKS.jsonl   prints {"requests_per_second": …, "done": …, "lost": …, "seconds": …}
"""
import concurrent.futures
import json
import sys
import time

from openai import OpenAI

PROMPT = ("Read the extract below and write 5 instruction-answer pairs from it. Reply with a JSON object "
          '{{"instruction_answer_pairs": [{{"instruction": "...", "answer": "..."}}]}}.\n\nExtract:\n{extract}')


def generate(client, extract):
    completion = client.chat.completions.create(
        model="mock-model",
        messages=[{"role": "system", "content": "You write training data and reply with JSON only."},
                  {"role": "user", "content": PROMPT.format(extract=extract)}],
        response_format={"type": "json_object"}, max_tokens=1200, temperature=0.7)
    pairs = json.loads(completion.choices[0].message.content)["instruction_answer_pairs"]
    if len(pairs) != 5:
        raise ValueError("wrong number of pairs")
    return pairs


def main():
    base_url, path = sys.argv[1], sys.argv[2]
    extracts = [json.loads(line)["text"] for line in open(path, encoding="utf-8") if line.strip()]
    client = OpenAI(base_url=base_url, api_key="not-needed")
    done = lost = 0
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as executor:
        futures = [executor.submit(generate, client, extract) for extract in extracts]
        for future in concurrent.futures.as_completed(futures):
            try:
                future.result()
                done += 1
            except Exception:
                lost += 1
    seconds = time.perf_counter() - start
    print(json.dumps({"requests_per_second": len(extracts) / seconds, "done": done, "lost": lost, "seconds": seconds}))


if __name__ == "__main__":
    main()
