"""The predictor fitted to accuracy vs to p(correct), on one or more pair files: held-out split and 5-fold CV.

Run: python -m benchmarks.predictor_targets [--pairs data/supernet_pairs.json,OTHER.json] [--folds 5]
Prints markdown: per file, pair means by resolution, then per target the split's RMSE against both baselines
and within-resolution Kendall tau (against held-out accuracy, and against the target itself), and the fold means.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch

from tinytl.search.predictor import DEFAULT_PREDICTOR, TARGETS, train_predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default=str(DEFAULT_PREDICTOR.with_name("supernet_pairs.json")))
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| pairs | target | split RMSE / mean / each resolution's mean | split within-res tau (on the target) "
          f"| {args.folds}-fold RMSE / each resolution's mean | {args.folds}-fold within-res tau (on the target) |")
    print("|---|---|---|---|---|---|")
    means = {}
    for path in args.pairs.split(","):
        pairs = json.loads(Path(path).read_text())["pairs"]
        frame = pd.DataFrame(pairs)
        targets = [t for t in TARGETS if t in frame]
        means[path] = frame.groupby("resolution")[targets].mean()
        for target in targets:
            m = train_predictor(pairs, target=target, cv_folds=args.folds).metrics
            cv = m["cross_validated"]
            on_target = m.get("on_target", m)["within_resolution_kendall_tau"]
            cv_target = cv.get("on_target_within_resolution_kendall_tau", cv["within_resolution_kendall_tau"])
            print(f"| {path} | {target} | {m['rmse']:.4f} / {m['mean_rmse']:.4f} / {m['resolution_mean_rmse']:.4f} "
                  f"| {m['within_resolution_kendall_tau']:.3f} ({on_target:.3f}) "
                  f"| {cv['rmse']:.4f} / {cv['resolution_mean_rmse']:.4f} "
                  f"| {cv['within_resolution_kendall_tau']:.3f} ({cv_target:.3f}) |")
    for path, table in means.items():
        print(f"\nmean scores by resolution, {path}:\n\n{table.round(4).to_markdown()}")


if __name__ == "__main__":
    main()
