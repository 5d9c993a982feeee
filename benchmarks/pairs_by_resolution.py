"""Accuracy pairs per resolution (count, mean and its standard error, spread) and the predictor's metrics, as markdown.

`--paired N` also scores the first N pairs' sub-nets at every resolution of the file (the pairs' protocol,
inherited weights, `--jobs` processes of one thread): the same sub-nets at each resolution, so the step from one
resolution to the next is a paired difference, free of which sub-nets each resolution happened to draw.
Run: python -m benchmarks.pairs_by_resolution [--pairs data/supernet_pairs.json] \
     [--predictor data/supernet_predictor.pt] [--paired 300 --adapted data/supernet_digits_fa.pt --jobs 2]
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import torch

from tinytl.models.supernet import parse_subnet
from tinytl.search.collect import PairSpec, Protocol, collect_pairs
from tinytl.search.predictor import DEFAULT_PREDICTOR, load_predictor
from tinytl.train.adapt import load_adapted


def _score(adapted: str | None, protocol: Protocol, specs: list[PairSpec]) -> list[dict]:
    torch.set_num_threads(1)
    return collect_pairs(load_adapted(adapted), specs, protocol)


def paired_steps(made: dict, count: int, adapted: str | None, jobs: int) -> None:
    """Score the first `count` pairs' sub-nets at every resolution; print each resolution's mean over those same
    sub-nets and the paired step from the resolution below with its standard error."""
    first = made["pairs"][:count]
    resolutions = made["provenance"]["resolutions"]
    todo = [PairSpec(p["index"], parse_subnet(p["subnet"]), r) for p in first for r in resolutions
            if r != p["resolution"]]
    protocol = Protocol(**made["provenance"]["protocol"])
    with ProcessPoolExecutor(jobs) as pool:
        parts = pool.map(_score, [adapted] * jobs, [protocol] * jobs, [todo[k::jobs] for k in range(jobs)])
        scored = [*first, *(pair for part in parts for pair in part)]
    acc = pd.DataFrame(scored).pivot(index="index", columns="resolution", values="accuracy")[resolutions]
    print(f"\nThe same {len(acc)} sub-nets at every resolution (paired):\n")
    print("| resolution | mean accuracy | step from the resolution below | its standard error |")
    print("|---|---|---|---|")
    for k, res in enumerate(resolutions):
        step = acc[res] - acc[resolutions[k - 1]] if k else None
        shown = f"{step.mean():+.4f} | {step.sem():.4f}" if k else "— | —"
        print(f"| {res} | {acc[res].mean():.4f} | {shown} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", default=str(DEFAULT_PREDICTOR.with_name("supernet_pairs.json")))
    parser.add_argument("--predictor", default=None)
    parser.add_argument("--paired", type=int, default=0, metavar="N", help="score N pairs' sub-nets everywhere")
    parser.add_argument("--adapted", default=None, help="the pairs' adapted super-net (default: the shipped one)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    made = json.loads(Path(args.pairs).read_text())
    pairs = pd.DataFrame(made["pairs"])
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
    if args.paired:
        paired_steps(made, args.paired, args.adapted, args.jobs)


if __name__ == "__main__":
    main()
