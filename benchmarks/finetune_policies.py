"""Short fine-tunes of every policy on digits from the shipped checkpoint, plus random-init rows.

Prints markdown tables for docs/BENCHMARKS.md: per run (policy, weights, held-out accuracy, measured peak,
saved activations, predicted memory, times) for the first seed, and, with several seeds, accuracy per seed
with its mean and each policy's paired gain over `last`. Runs go to `--jobs` worker processes of
`--threads` torch threads each. Run: python -m benchmarks.finetune_policies [--seeds 0,1,2 --jobs 2 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import torch

from tinytl.policies import POLICIES
from tinytl.train.recipe import ENGINES, FinetuneSettings, realised_view
from tinytl.train.runner import execute_run, prepare_run

RANDOM_INIT_POLICIES = ("lite+bias", "full")


def measure(settings: FinetuneSettings, threads: int) -> dict:
    """One run without the store: its summary plus the wall time from settings to result."""
    torch.set_num_threads(threads)
    started = time.perf_counter()
    summary = execute_run(prepare_run(settings))
    summary["wall_seconds"] = time.perf_counter() - started
    return summary


def _label(weights: str) -> str:
    return "shipped checkpoint" if weights == "shipped" else "random init"


def print_runs(runs: dict[tuple[str, str, int], dict], seed: int, engine: str) -> None:
    realised = realised_view(engine)
    print("| policy | weights | test accuracy | measured peak MB | saved activations MB | predicted MB (paper) "
          "| predicted MB (view of the engine that ran) | train s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (policy, weights, s_), s in runs.items():
        if s_ != seed:
            continue
        by_view = s["predicted_memory_mb_by_view"]
        print(f"| {policy} | {_label(weights)} | {s['final_accuracy']:.3f} | {s['measured_peak_bytes'] / 1e6:.1f} "
              f"| {s['saved_activation_bytes'] / 1e6:.1f} | {by_view['paper']:.1f} "
              f"| {by_view[realised]:.1f} | {s['train_seconds']:.0f} | {s['wall_seconds']:.0f} |")


def print_seeds(runs: dict[tuple[str, str, int], dict], policies: list[str], seeds: list[int]) -> None:
    """Accuracy per seed from the shipped checkpoint, the mean, and the paired gain over `last` (points)."""
    acc = {(p, s): runs[(p, "shipped", s)]["final_accuracy"] for p in policies for s in seeds}
    head = " | ".join(f"seed {s}" for s in seeds)
    print(f"| policy | {head} | mean | gain over last per seed (points) |")
    print("|---|" + "---|" * len(seeds) + "---|---|")
    for p in policies:
        gains = ", ".join(f"{100 * (acc[(p, s)] - acc[('last', s)]):+.1f}" for s in seeds) \
            if "last" in policies and p != "last" else "—"
        cells = " | ".join(f"{acc[(p, s)]:.3f}" for s in seeds)
        print(f"| {p} | {cells} | {statistics.mean(acc[(p, s)] for s in seeds):.3f} | {gains} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = FinetuneSettings()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--resolution", type=int, default=defaults.resolution)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seeds", default=str(defaults.seed), help="comma-separated; the first also gets the "
                                                                      "memory table and the random-init rows")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (processes)")
    parser.add_argument("--engine", choices=ENGINES, default=defaults.engine)
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated, shipped checkpoint")
    parser.add_argument("--no-random-init", dest="random_init", action="store_false")
    args = parser.parse_args()
    seeds, policies = [int(s) for s in args.seeds.split(",")], args.policies.split(",")
    keys = [(p, "shipped", s) for s in seeds for p in policies]
    keys += [(p, "none", seeds[0]) for p in RANDOM_INIT_POLICIES] if args.random_init else []
    print(f"digits, {args.epochs} epochs, {args.resolution}px, batch {args.batch_size}, seeds {args.seeds}, "
          f"engine {args.engine}, {args.jobs} jobs x {args.threads} threads, "
          f"load average at start {os.getloadavg()[0]:.1f}\n", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = {k: pool.submit(measure, FinetuneSettings(
            policy=k[0], weights=k[1], seed=k[2], epochs=args.epochs, resolution=args.resolution,
            batch_size=args.batch_size, engine=args.engine), args.threads) for k in keys}
        runs = {k: f.result() for k, f in futures.items()}
    print_runs(runs, seeds[0], args.engine)
    if len(seeds) > 1:
        print()
        print_seeds(runs, policies, seeds)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
