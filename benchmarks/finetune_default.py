"""The default fine-tune on the engine vs stock PyTorch: peak and accuracy, same seed, one process.

Runs `finetune`'s defaults (digits, shipped checkpoint, lite+bias, engine auto) and the same setting on
stock PyTorch, plus stock `full` (what a user fine-tunes without TinyTL), and prints a markdown table and
the issue's Must-show lines. Run: python -m benchmarks.finetune_default [--seed 0 --threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from tinytl.train.recipe import FinetuneSettings
from tinytl.train.runner import execute_run, prepare_run

CONTENDERS = (("lite+bias", "auto"), ("lite+bias", "pytorch"), ("full", "pytorch"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = FinetuneSettings(seed=args.seed)
    runs = {}
    for policy, engine in CONTENDERS:
        prepared = prepare_run(dataclasses.replace(base, policy=policy, engine=engine))
        runs[(policy, engine)] = (prepared.settings.engine, execute_run(prepared))
    print(f"digits, shipped checkpoint, {base.epochs} epochs, {base.resolution} px, batch {base.batch_size}, "
          f"norm {base.norm}, seed {args.seed}, {args.threads} thread(s)\n")
    print("| policy | --engine | ran on | test accuracy | measured peak MB | saved activations MB "
          "| stock PyTorch predicted MB (pytorch view) | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for (policy, engine), (ran, s) in runs.items():
        print(f"| {policy} | {engine} | {ran} | {s['final_accuracy']:.3f} | {s['measured_peak_bytes'] / 1e6:.1f} "
              f"| {s['saved_activation_bytes'] / 1e6:.1f} | {s['predicted_memory_mb_by_view']['pytorch']:.1f} "
              f"| {s['train_seconds']:.0f} |")
    auto, stock, full = (runs[k][1] for k in CONTENDERS)
    ratio = full["measured_peak_bytes"] / auto["measured_peak_bytes"]
    gap = 100 * abs(auto["final_accuracy"] - stock["final_accuracy"])
    print("\nKey results:")
    print(f"- {'HOLDS' if ratio >= 2.5 else 'FAILS'}: default lite+bias peaks {ratio:.2f}x below stock full "
          f"(need >= 2.5x)")
    print(f"- {'HOLDS' if gap <= 1.0 else 'FAILS'}: default lite+bias accuracy {auto['final_accuracy']:.3f} vs "
          f"stock lite+bias {stock['final_accuracy']:.3f} ({gap:.1f} points, need <= 1)")


if __name__ == "__main__":
    main()
