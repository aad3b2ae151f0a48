#!/usr/bin/env python3
"""Reference cleaning and chunking (the approach of the reference pipeline, re-implemented here)
applied to texts written by the Refinery team; writes Tests/RefineryDataTests/Fixtures/chunking.json.

Cleaning keeps word characters, whitespace and .,!?' and collapses whitespace; chunking splits
sentences with the reference regex and packs them into 1,000–2,000 characters, dropping shorter
remainders. (Refinery additionally cuts sentences longer than the maximum at word boundaries; the
texts here have none, so both must agree exactly.)
"""
import json
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "RefineryDataTests", "Fixtures", "chunking.json")


def clean_text(text):
    text = re.sub(r"[^\w\s.,!?']", " ", text)
    text = re.sub(r"\s+", " ", text)
    return text.strip()


def extract_substrings(text, min_length=1000, max_length=2000):
    sentences = re.split(r"(?<!\w\.\w.)(?<![A-Z][a-z]\.)(?<=\.|\?|\!)\s", text)
    extracts, current = [], ""
    for sentence in sentences:
        sentence = sentence.strip()
        if not sentence:
            continue
        if len(current) + len(sentence) <= max_length:
            current += sentence + " "
        else:
            if len(current) >= min_length:
                extracts.append(current.strip())
            current = sentence + " "
    if len(current) >= min_length:
        extracts.append(current.strip())
    return extracts


PARAGRAPHS = [
    "Data quality decides what a fine-tuned model learns. Dr. Rivera's team found that removing near-duplicates "
    "cut training time by a third, e.g. on support tickets, while the evaluation loss did not move. Why does that work? "
    "Because repeated samples add gradient without adding information! The same holds for boilerplate footers, "
    "cookie banners and navigation menus that scrapers pick up along with the article body.",
    "A tokenizer splits text into pieces the model knows. Byte-level tokenizers never fail on unseen characters; "
    "SentencePiece-style ones fall back to bytes for them. Both must agree exactly with the library the model was "
    "trained with, or the model sees text it never saw in training. Numbers such as 3.14, 2,048 and 1e-5 are "
    "especially tricky, as are names like U.S.A. and abbreviations such as Mr. Smith or Mrs. Jones.",
    "Low-rank adaptation trains two small matrices per weight instead of the weight itself. With rank 16 on all "
    "linear layers, a 135-million-parameter model trains about five million parameters. The optimizer state shrinks "
    "accordingly, which is what lets a laptop fine-tune a model that would otherwise need a workstation. Is that the "
    "whole story? Not quite: activations still dominate memory for long sequences, which is where gradient "
    "checkpointing helps.",
    "Résumé writing, café culture and naïve questions all appear in real articles. Chinese text such as 数据清洗很重要 "
    "and emoji like 🚀 must survive cleaning when the mode keeps them, or be replaced by spaces when it does not. "
    "Code like `x = y * 2` and markdown headings like ## Results are noise for back-translation prompts in the reference "
    "mode, but valuable in the mode that keeps markup.",
]


def article_text(seed):
    parts = []
    for i in range(12):
        parts.append(PARAGRAPHS[(seed + i) % len(PARAGRAPHS)])
    return "\n\n".join(parts)


def main():
    cases = []
    for seed in range(4):
        raw = article_text(seed)
        cleaned = clean_text(raw)
        cases.append({"raw": raw, "cleaned": cleaned, "chunks": extract_substrings(cleaned)})
    short = clean_text(PARAGRAPHS[0])
    cases.append({"raw": PARAGRAPHS[0], "cleaned": short, "chunks": extract_substrings(short)})
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump({"min": 1000, "max": 2000, "cases": cases}, f, ensure_ascii=False, indent=1)
    print("wrote", OUT, sum(len(c["chunks"]) for c in cases), "chunks")


if __name__ == "__main__":
    main()
