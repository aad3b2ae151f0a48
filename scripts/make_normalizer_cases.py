#!/usr/bin/env python3
"""Expected encodings of Unicode edge cases for the normalizers, from Hugging Face `tokenizers`.

Refinery's normalizers split into characters only the stretches around non-ASCII scalars; these
cases put accents, combining marks, prepended marks, keycaps, CR LF and case mappings right next
to ASCII. For the two BERT fixture tokenizers as committed, and for the byte-level fixture
tokenizer with each Unicode normalizer in place of its own (none).

    .venv/bin/python scripts/make_normalizer_cases.py   (tokenizers==0.23.3, scripts/requirements.txt)

Writes Tests/RefineryTextTests/Fixtures/normalizer-cases.json.
"""
import json
import os

from tokenizers import Tokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "RefineryTextTests", "Fixtures")

TEXTS = [
    "cafe\u0301 and CAFE\u0301 then re\u0301sume\u0301",      # decomposed accents after ASCII bases
    "café É Ö ø ß İstanbul ǅ",                           # composed, case mappings beyond ASCII
    "e\u0301e\u0301x\u0300yz\u0308 ab\u0327c",                 # marks one and two ASCII scalars apart
    "\u0600123 and \u06DD45 sign",                             # prepended marks join the digit after
    "keycap 1\ufe0f\u20e3 #\ufe0f\u20e3 done",                 # keycap sequences
    "line\r\nnext\u0301\r\nmore é\r\n",                        # CR LF beside non-ASCII
    "ﬁne ﬂow Ⅻ ① ＡＢＣ ｶﾞ",                                   # compatibility forms
    "한국어 텍스트 and 가나다",                                 # Hangul syllables
    "Ελληνικά ΣΊΣΥΦΟΣ and русский ТЕКСТ",
    "a\u0301\u0302\u0303 stacked marks, o\u0328\u0304 ogonek",
    "ASCII only, Nothing Else: 42!",
    "é",
    "\u0301 leading mark",
]

NORMALIZERS = {
    "NFC": {"type": "NFC"},
    "NFKC": {"type": "NFKC"},
    "NFD": {"type": "NFD"},
    "NFKD": {"type": "NFKD"},
    "Lowercase": {"type": "Lowercase"},
    "NFKC+Lowercase": {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Lowercase"}]},
}


def encodings(tokenizer):
    rows = []
    for text in TEXTS:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        rows.append({"text": text, "ids": encoded.ids, "offsets": [list(o) for o in encoded.offsets]})
    return rows


def main():
    variants = []
    for name in ("bert-wordpiece-uncased", "bert-wordpiece-cased"):
        path = os.path.join(ROOT, "tokenizers", name, "tokenizer.json")
        variants.append({"tokenizer": name, "normalizer": None, "cases": encodings(Tokenizer.from_file(path))})
    base = json.load(open(os.path.join(ROOT, "tokenizers", "llama3-bytelevel", "tokenizer.json"), encoding="utf-8"))
    for label, normalizer in NORMALIZERS.items():
        base["normalizer"] = normalizer
        tokenizer = Tokenizer.from_str(json.dumps(base))
        variants.append({"tokenizer": "llama3-bytelevel", "normalizer": normalizer, "label": label, "cases": encodings(tokenizer)})
    # One case a line: small, and a changed expectation shows as one line of the diff.
    lines = []
    for variant in variants:
        head = {key: value for key, value in variant.items() if key != "cases"}
        cases = ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in variant["cases"])
        lines.append(json.dumps(head, ensure_ascii=False)[:-1] + ', "cases": [\n' + cases + "\n ]}")
    with open(os.path.join(ROOT, "normalizer-cases.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(lines) + "\n]\n")


if __name__ == "__main__":
    main()
