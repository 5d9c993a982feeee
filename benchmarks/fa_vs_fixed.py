"""Feature-extractor adaptation vs the fixed backbone at equal training memory, on digits, several seeds.

For each policy and seed: the fixed ProxylessNAS-Mobile fine-tune with the recipe's defaults (64 px), and the
super-net adapted with the same policy and seed (`adapt` defaults: a random sub-net and resolution per step),
searched at 64 px under the fixed run's paper-view memory (batch 8, 10 classes, 8-bit frozen weights) with the
shipped predictor, then scored on the held-out test split with inherited weights (`evaluate`). A seed fixes the
digits split for both. Runs go to `--jobs` worker processes of one torch thread each; prints markdown tables.
Adaptations are kept in `--work` and reused when present (each is what `python -m tinytl adapt --policy P
--seed S` writes). Run: python -m benchmarks.fa_vs_fixed [--seeds 0,1,2] [--policies bias,lite+bias] [--jobs 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

RESOLUTION, BATCH, CLASSES = 64, 8, 10


def fixed_run(policy: str, seed: int) -> dict:
    """The fixed backbone's fine-tune with defaults at 64 px, and its paper-view memory at batch 8."""
    from tinytl.memory import profile_memory
    from tinytl.models.setting import ModelSetting
    from tinytl.train.recipe import FinetuneSettings
    from tinytl.train.runner import execute_run, prepare_run

    torch.set_num_threads(1)
    started = time.process_time()
    summary = execute_run(prepare_run(FinetuneSettings(policy=policy, seed=seed, resolution=RESOLUTION)))
    budget = profile_memory(ModelSetting("proxylessnas_mobile", RESOLUTION, CLASSES), policy=policy,
                            batch_size=BATCH).total_mb
    return {"accuracy": summary["final_accuracy"], "budget_mb": budget, "cpu_s": time.process_time() - started}


def fa_run(policy: str, seed: int, budget_mb: float, supernet: str | None, predictor: str | None,
           work: Path) -> dict:
    """Adapt the super-net with the policy and seed (or reuse that adaptation's file in `work`), search at 64 px
    under the budget, score the best sub-net."""
    from tinytl.models.supernet import parse_subnet
    from tinytl.models.supernet_warmstart import proxyless_subnet
    from tinytl.search.evolution import search_subnets
    from tinytl.search.predictor import load_predictor
    from tinytl.train.adapt import adapt_to_file, adaptation_seed, load_adapted, subnet_test_accuracy

    torch.set_num_threads(1)
    started = time.process_time()
    path = work / f"fa_{policy}_{seed}.pt"
    if not path.is_file():  # `python -m tinytl adapt --policy POLICY --seed SEED --out PATH`
        adapt_to_file(path, supernet, policy=policy, seed=seed)
    net = load_adapted(path)
    if net.provenance["adaptation"]["policy"] != policy or adaptation_seed(net) != seed:
        raise SystemExit(f"{path} is not the {policy} adaptation with seed {seed}")
    found = search_subnets(budget_mb, load_predictor(predictor), policy, BATCH, CLASSES, [RESOLUTION])
    best = found["best"]
    searched = subnet_test_accuracy(net, parse_subnet(best["subnet"]), RESOLUTION)["accuracy"]
    proxyless = subnet_test_accuracy(net, proxyless_subnet(), RESOLUTION)["accuracy"]
    return {"accuracy": searched, "proxyless_accuracy": proxyless, "memory_mb": best["memory_mb"],
            "predicted": best["predicted_accuracy"], "subnet": best["subnet"], "cpu_s": time.process_time() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--policies", default="bias,lite+bias")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--supernet", default=None, help="default: the shipped data/supernet.pt")
    parser.add_argument("--predictor", default=None, help="default: the shipped data/supernet_predictor.pt")
    parser.add_argument("--work", default="fa_runs", help="folder for the adaptations (reused when present)")
    args = parser.parse_args()
    seeds, policies = [int(s) for s in args.seeds.split(",")], args.policies.split(",")
    keys = [(p, s) for p in policies for s in seeds]
    print(f"digits, {RESOLUTION} px, budget = fixed backbone's paper-view memory at batch {BATCH}, {CLASSES} classes;"
          f" {args.jobs} jobs x 1 thread, load average at start {os.getloadavg()[0]:.1f}\n", flush=True)
    with ProcessPoolExecutor(args.jobs) as pool:
        fixed = {k: pool.submit(fixed_run, *k) for k in keys}
        fixed = {k: f.result() for k, f in fixed.items()}
        fa = {k: pool.submit(fa_run, *k, fixed[k]["budget_mb"], args.supernet, args.predictor, Path(args.work))
              for k in keys}
        fa = {k: f.result() for k, f in fa.items()}
    print("| policy | seed | budget MB | fixed: finetune accuracy | FA: searched sub-net accuracy | FA gain (points) "
          "| searched sub-net MB | predicted | FA: ProxylessNAS sub-net accuracy | CPU s fixed / FA |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (p, s) in keys:
        f, a = fixed[(p, s)], fa[(p, s)]
        print(f"| {p} | {s} | {f['budget_mb']:.2f} | {f['accuracy']:.3f} | {a['accuracy']:.3f} "
              f"| {100 * (a['accuracy'] - f['accuracy']):+.1f} | {a['memory_mb']:.2f} | {a['predicted']:.3f} "
              f"| {a['proxyless_accuracy']:.3f} | {f['cpu_s']:.0f} / {a['cpu_s']:.0f} |")
    print("\n| policy | fixed mean | FA mean | mean gain (points) |")
    print("|---|---|---|---|")
    for p in policies:
        fm = statistics.mean(fixed[(p, s)]["accuracy"] for s in seeds)
        am = statistics.mean(fa[(p, s)]["accuracy"] for s in seeds)
        print(f"| {p} | {fm:.3f} | {am:.3f} | {100 * (am - fm):+.1f} |")
    for (p, s) in keys:
        print(f"\n{p} seed {s} searched sub-net: {fa[(p, s)]['subnet']}")
    print(f"\nload average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
