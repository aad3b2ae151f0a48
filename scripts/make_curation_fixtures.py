#!/usr/bin/env python3
"""Reference values for Refinery's curation tests.

    .venv/bin/python scripts/make_curation_fixtures.py

Writes Tests/RefineryCurationTests/Fixtures/lsh_bands.json: datasketch's MinHashLSH band layout
(its _optimal_param: bands × rows minimising the weighted false-positive and false-negative areas
under the S-curve) for a grid of thresholds, permutation counts and weights. Pinned versions:
scripts/requirements.txt.
"""
import json
import os

import datasketch
from datasketch.lsh import _optimal_param

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "RefineryCurationTests", "Fixtures")


def main():
    os.makedirs(OUT, exist_ok=True)
    cases = []
    for num_perm in (64, 128, 256):
        for threshold in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
            for weights in ((0.5, 0.5), (0.3, 0.7), (0.7, 0.3)):
                bands, rows = _optimal_param(threshold, num_perm, weights[0], weights[1])
                cases.append({"threshold": threshold, "num_perm": num_perm, "false_positive_weight": weights[0],
                              "false_negative_weight": weights[1], "bands": bands, "rows": rows})
    with open(os.path.join(OUT, "lsh_bands.json"), "w") as f:
        json.dump({"datasketch": datasketch.__version__, "cases": cases}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
