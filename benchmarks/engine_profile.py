"""Where an engine step's time goes: torch.profiler op tables for chosen contenders, beside their step times.

ProxylessNAS-Mobile, `bias`, 224 px, batch 8, one thread; contenders stepped interleaved (forward + backward),
then two profiled steps of each one asked for. `recompute-masked` is recompute with every re-run activation
keeping its packed mask (RERUN_STOCK_NUMEL 0), the A/B for that threshold; `exact-unpaired` is exact with
frozen conv + fixed-statistics BN pairs run apart, the A/B for running them as one Function. Run:
python -m benchmarks.engine_profile --norm gn --profile checkpoint,recompute [--rounds 4 --rows 22]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from tinytl.engine import checkpoint_blocks, convert_model, modules
from tinytl.memory.measure import apply_policy_copy
from tinytl.models import build_model

CONTENDERS = ("pytorch", "checkpoint", "exact", "exact-unpaired", "recompute", "recompute-masked")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="gn")
    parser.add_argument("--profile", default="checkpoint,recompute",
                        help="contenders to profile, comma-separated (empty: timing only)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--rows", type=int, default=22)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = build_model("proxylessnas_mobile", 102, norm=args.norm)
    x, y = torch.randn(8, 3, 224, 224), torch.randint(0, 102, (8,))
    models = {}
    for name in CONTENDERS:
        model = apply_policy_copy(base, "bias", torch.device("cpu"))
        models[name] = (checkpoint_blocks(model) if name == "checkpoint" else model if name == "pytorch"
                        else convert_model(model, name.split("-")[0]))
        if name == "exact-unpaired":
            for module in model.modules():
                module.__dict__.pop(modules.FOLD_ATTR, None)
    threshold = modules.RERUN_STOCK_NUMEL

    def step(name: str) -> None:
        modules.RERUN_STOCK_NUMEL = 0 if name == "recompute-masked" else threshold
        models[name].zero_grad(set_to_none=True)
        F.cross_entropy(models[name](x), y).backward()

    for name in models:  # warm-up
        step(name)
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        for k in range(len(CONTENDERS)):  # the starting contender rotates
            name = CONTENDERS[(r + k) % len(CONTENDERS)]
            start = time.process_time()
            step(name)
            times[name].append(time.process_time() - start)
    median = {name: statistics.median(t) for name, t in times.items()}
    print("median step CPU s:", {name: round(m, 4) for name, m in median.items()})
    print("x checkpointing's:", {name: round(m / median["checkpoint"], 3) for name, m in median.items()})
    print("x stock's:", {name: round(m / median["pytorch"], 3) for name, m in median.items()})
    for name in filter(None, args.profile.split(",")):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step(name)
            step(name)
        print(f"\n{name} (two steps)\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
