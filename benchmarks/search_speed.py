"""Search speed: evolutionary search of population 100 x 500 iterations with the shipped predictor.

python -m benchmarks.search_speed [--predictor PATH] [--budget-mb 8]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import torch

from tinytl.search.evolution import SearchSettings, search_subnets
from tinytl.search.predictor import load_predictor


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--predictor", default=None)
    parser.add_argument("--budget-mb", type=float, default=8.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    predictor = load_predictor(args.predictor)
    runs = []
    for seed in range(args.repeat):
        start = time.perf_counter()
        out = search_subnets(args.budget_mb, predictor, settings=SearchSettings(100, 500, seed=seed))
        runs.append(time.perf_counter() - start)
        print(f"seed {seed}: {runs[-1]:.2f} s, {out['search']['evaluated']} distinct candidates, "
              f"{len(out['front'])} front points, best {out['best']['predicted_accuracy']:.4f} at "
              f"{out['best']['memory_mb']:.2f} MB")
    print(f"search 100 x 500 (in process): median {statistics.median(runs):.2f} s, max {max(runs):.2f} s")
    argv = [sys.executable, "-m", "tinytl", "search", "--budget-mb", str(args.budget_mb), "--json"]
    if args.predictor:
        argv += ["--predictor", args.predictor]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    print(f"`python -m tinytl search --budget-mb {args.budget_mb:g} --json` whole process: "
          f"{time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
