"""Short fine-tunes of every policy on digits from the shipped checkpoint, plus random-init rows.

Prints a markdown table (policy, weights, held-out accuracy, measured peak, saved activations, predicted
memory, wall times) for docs/BENCHMARKS.md. Run: python benchmarks/finetune_policies.py [--epochs N ...]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tinytl.policies import POLICIES
from tinytl.train.recipe import ENGINES, FinetuneSettings
from tinytl.train.runner import execute_run, prepare_run

RANDOM_INIT_POLICIES = ("lite+bias", "full")


def measure(settings: FinetuneSettings) -> dict:
    """One run without the store: its summary plus the wall time from settings to result."""
    started = time.perf_counter()
    summary = execute_run(prepare_run(settings))
    summary["wall_seconds"] = time.perf_counter() - started
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    defaults = FinetuneSettings()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--resolution", type=int, default=defaults.resolution)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--engine", choices=ENGINES, default=defaults.engine)
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated, shipped checkpoint")
    parser.add_argument("--no-random-init", dest="random_init", action="store_false")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [(p, "shipped") for p in args.policies.split(",")]
    rows += [(p, "none") for p in RANDOM_INIT_POLICIES] if args.random_init else []
    print(f"digits, {args.epochs} epochs, {args.resolution}px, batch {args.batch_size}, seed {args.seed}, "
          f"engine {args.engine}, {args.threads} threads, load average at start {os.getloadavg()[0]:.1f}\n")
    print("| policy | weights | test accuracy | measured peak MB | saved activations MB | predicted MB (paper) "
          "| predicted MB (pytorch view) | train s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for policy, weights in rows:
        s = measure(FinetuneSettings(policy=policy, weights=weights, epochs=args.epochs, resolution=args.resolution,
                                     batch_size=args.batch_size, seed=args.seed, engine=args.engine))
        by_view = s["predicted_memory_mb_by_view"]
        print(f"| {policy} | {'shipped checkpoint' if weights == 'shipped' else 'random init'} "
              f"| {s['final_accuracy']:.3f} | {s['measured_peak_bytes'] / 1e6:.1f} "
              f"| {s['saved_activation_bytes'] / 1e6:.1f} | {by_view['paper']:.1f} "
              f"| {by_view.get('pytorch', float('nan')):.1f} | {s['train_seconds']:.0f} | {s['wall_seconds']:.0f} |",
              flush=True)
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
