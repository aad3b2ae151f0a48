#!/usr/bin/env python3
"""Writes Tests/RefineryCurationTests/Fixtures/rouge_l.json: ROUGE-L precision, recall and F1 of
instruction pairs as Google's rouge-score (the scorer self-instruct's novelty filter uses, no
stemmer) computes them, for `refinery data synthesize`'s filter to be checked against.

    python scripts/make_rouge_fixture.py        (rouge-score==0.1.2, scripts/requirements.txt)
"""
import json
import os
import random

from rouge_score import rouge_scorer

PAIRS = [
    ("Write a poem about the sea.", "Write a short poem about the deep sea!"),
    ("Explain how vaccines work.", "Describe the way vaccines train the immune system."),
    ("List three uses of copper.", "List three uses of copper."),
    ("Translate 'good morning' into French.", "What is the capital of France?"),
    ("Café au lait: how is it made?", "How is a café au lait made?"),
    ("Sort [3, 1, 2] in ascending order", "sort the list 3,1,2 ascending"),
    ("", "Anything at all."),
    ("!!!", "???"),
    ("The the the the", "the"),
    ("Summarize the article in two sentences, then give it a title.",
     "Give the article a title, then summarize it in two sentences."),
]


def main():
    rng = random.Random(7)
    words = "the a of to explain write list describe compare water energy river city history poem code data model".split()
    pairs = list(PAIRS)
    for _ in range(40):
        a = " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        b = " ".join(rng.choice(words) for _ in range(rng.randint(1, 14)))
        pairs.append((a, b))
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    cases = []
    for target, prediction in pairs:
        score = scorer.score(target, prediction)["rougeL"]
        cases.append({"target": target, "prediction": prediction, "precision": score.precision,
                      "recall": score.recall, "f": score.fmeasure})
    path = os.path.join(os.path.dirname(__file__), "..", "Tests", "RefineryCurationTests", "Fixtures", "rouge_l.json")
    with open(path, "w") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
