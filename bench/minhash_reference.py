#!/usr/bin/env python3
"""MinHash deduplication benchmark: a planted-duplicate corpus and datasketch as the reference.

    minhash_reference.py make OUT.jsonl [DOCS] [SEED]
        Real English text (the Python documentation's topic pages, shipped with CPython as
        pydoc_data) cut into sentences; each distinct document is 4–9 sentences drawn at random, or
        (every tenth) an earlier one with one sentence replaced: related, not a copy.
        After the distinct documents come planted copies of earlier ones: exact copies, near copies
        (1–3 words replaced, or a word inserted and one dropped), case-flipped copies, copies with
        doubled whitespace and re-spaced punctuation. Each line: {"id", "text", "copy_of"} (copy_of
        is the id of the original, or null).
    minhash_reference.py run IN.jsonl THRESHOLD NUM_PERM NGRAM
        datasketch's MinHash (MinHash.generator, its fastest bulk path) + MinHashLSH (threshold,
        num_perm; its default weights), the usual
        keep-first loop: a document is dropped when the index already holds a candidate for it,
        else inserted. Word n-gram shingles of the text normalised as Refinery's fuzzy default does
        (lower case, punctuation turned into spaces, whitespace collapsed). Prints {"seconds", "docs_per_second",
        "dropped": [ids]}; scoring is done by the caller.
"""
import json
import random
import re
import sys
import time
import unicodedata


def sentences():
    import pydoc_data.topics as topics
    text = "\n".join(topics.topics.values())
    parts = re.split(r"(?<=[.!?])\s+", text)
    return [" ".join(p.split()) for p in parts if 40 <= len(p) <= 400]


def make(path, count, seed):
    rng = random.Random(seed)
    pool = sentences()
    vocabulary = sorted({w for s in pool for w in s.split() if w.isalpha()})
    distinct = int(count * 0.8)
    docs = []
    for i in range(distinct):
        if i >= 100 and i % 10 == 0:
            # A related document, not a copy: an earlier one with one of its sentences replaced
            # (Jaccard ~0.5-0.75 with it) - what a precise detector keeps at threshold 0.8.
            parts = list(docs[rng.randrange(i)]["sentences"])
            parts[rng.randrange(len(parts))] = rng.choice(pool)
        else:
            parts = rng.sample(pool, rng.randint(4, 9))
        docs.append({"id": i, "text": " ".join(parts), "copy_of": None, "sentences": parts})
    for doc in docs:
        del doc["sentences"]
    kinds = ["exact", "words", "insert", "case", "spacing"]
    for i in range(distinct, count):
        original = docs[rng.randrange(distinct)]
        words = original["text"].split()
        kind = kinds[(i - distinct) % len(kinds)]
        if kind == "words":
            for _ in range(rng.randint(1, 3)):
                words[rng.randrange(len(words))] = rng.choice(vocabulary)
            text = " ".join(words)
        elif kind == "insert":
            words.insert(rng.randrange(len(words)), rng.choice(vocabulary))
            del words[rng.randrange(len(words))]
            text = " ".join(words)
        elif kind == "case":
            text = " ".join(w.upper() if rng.random() < 0.5 else w.swapcase() for w in words)
        elif kind == "spacing":
            text = "  ".join(words).replace(",", " ,").replace(".", " .")
        else:
            text = original["text"]
        docs.append({"id": i, "text": text, "copy_of": original["id"]})
    with open(path, "w") as f:
        for doc in docs:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")


def normalise(text):
    """Refinery's fuzzy normalisation: lower case, punctuation (Unicode P*, ASCII symbols) turned
    into spaces, whitespace collapsed; returns the words."""
    def punctuation(ch):
        if ch.isascii():
            return not ch.isalnum() and not ch.isspace()
        return unicodedata.category(ch).startswith("P")
    return "".join(" " if punctuation(ch) else ch for ch in text.lower()).split()


def run(path, threshold, num_perm, ngram):
    from datasketch import MinHash, MinHashLSH
    docs = [json.loads(line) for line in open(path)]
    start = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    shingle_sets = []
    for doc in docs:
        words = normalise(doc["text"])
        n = min(ngram, len(words))
        shingle_sets.append([s.encode() for s in {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}] if words else [])
    # MinHash.generator: datasketch's fastest way to hash many documents (one initialisation).
    dropped = []
    for doc, shingles, m in zip(docs, shingle_sets, MinHash.generator(shingle_sets, num_perm=num_perm)):
        if shingles and lsh.query(m):
            dropped.append(doc["id"])
        elif shingles:
            lsh.insert(doc["id"], m)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "docs_per_second": len(docs) / seconds, "dropped": dropped}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 20000, int(sys.argv[4]) if len(sys.argv) > 4 else 7)
    else:
        run(sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
