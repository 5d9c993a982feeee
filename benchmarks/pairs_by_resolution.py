"""Accuracy pairs per resolution (count, mean and its standard error, spread) and the predictor's metrics, as markdown.

Run: python -m benchmarks.pairs_by_resolution [--pairs data/supernet_pairs.json] \
     [--predictor data/supernet_predictor.pt]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from tinytl.search.predictor import DEFAULT_PREDICTOR, load_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", default=str(DEFAULT_PREDICTOR.with_name("supernet_pairs.json")))
    parser.add_argument("--predictor", default=None)
    args = parser.parse_args()
    pairs = pd.DataFrame(json.loads(Path(args.pairs).read_text())["pairs"])
    table = pairs.groupby("resolution")["accuracy"].agg(["count", "mean", "sem", "std", "min", "max"])
    print("| resolution | pairs | mean accuracy | standard error | std | min | max |")
    print("|---|---|---|---|---|---|---|")
    for res, row in table.iterrows():
        print(f"| {res} | {row['count']:.0f} | {row['mean']:.4f} | {row['sem']:.4f} | {row['std']:.4f} "
              f"| {row['min']:.4f} | {row['max']:.4f} |")
    m = load_predictor(args.predictor).metrics
    print("\n| predictor (held-out pairs) | value |")
    print("|---|---|")
    for key in ("train_pairs", "test_pairs", "rmse", "mean_rmse", "resolution_mean_rmse", "kendall_tau",
                "resolution_mean_kendall_tau", "within_resolution_kendall_tau", "kendall_tau_by_resolution",
                "cross_validated"):
        value = m.get(key)
        shown = json.dumps(value) if isinstance(value, dict) else f"{value:.4f}" if isinstance(value, float) else value
        print(f"| {key} | {shown} |")


if __name__ == "__main__":
    main()
