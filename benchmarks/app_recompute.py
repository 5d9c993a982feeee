"""Warm recompute of the explorer's Memory page: the work done on each change once the walk is cached.

Times, per policy, what the page recomputes (every view's report for the policy and for `full`, the
per-layer table, the parameter breakdown, the device-budget table, both Plotly figures), and a
whole-script rerun of the page through streamlit's AppTest after a policy change.

    python -m benchmarks.app_recompute [--backbone proxylessnas_mobile] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from explorer import charts, frames
from explorer.compute import full_reference, price, variants
from tinytl.devices import DEVICES, custom_device
from tinytl.memory import cached_trace
from tinytl.models.setting import ModelSetting
from tinytl.policies import POLICIES

APP = Path(__file__).resolve().parents[1] / "app.py"


def recompute(model: ModelSetting, trace, policy: str, batch: int, bits: int) -> None:
    """Everything the Memory page derives from a cached walk for one setting."""
    views = variants()
    reports = {v: price(trace, policy, batch, bits, v) for v in views}
    for v in views:
        full_reference(model, bits, v.key).total_at_batch(batch)
    first = reports[views[0]]
    table = frames.layer_frame(first)
    charts.layer_chart(table, first.peak_index, views[0].color, "bench")
    charts.param_chart(frames.param_breakdown(trace, policy, first), first.frozen_bits)
    frames.budget_frame(first, [*DEVICES, custom_device(50)], {v.key: r for v, r in reports.items() if v != views[0]})


def timed(fn, repeats: int) -> tuple[list[float], list[float]]:
    """Wall-clock and process-CPU milliseconds per call (CPU time is what a shared, loaded machine distorts least)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - t) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return sorted(wall), sorted(cpu)


def p95(samples: list[float]) -> float:
    return samples[int(0.95 * (len(samples) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="proxylessnas_mobile")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--classes", type=int, default=102)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)

    t = time.perf_counter()
    model = ModelSetting(args.backbone, args.resolution, args.classes)
    trace = cached_trace(model)
    print(f"cold walk (once per model setting, then cached): {(time.perf_counter() - t) * 1e3:.0f} ms")
    print(f"views: {', '.join(v.key for v in variants())}")
    print("| policy | wall median (ms) | wall p95 (ms) | CPU median (ms) |\n|---|---|---|---|")
    for policy in POLICIES:
        recompute(model, trace, policy, args.batch_size, 8)  # warm-up
        wall, cpu = timed(lambda: recompute(model, trace, policy, args.batch_size, 8), args.repeats)
        print(f"| {policy} | {statistics.median(wall):.1f} | {p95(wall):.1f} | {statistics.median(cpu):.1f} |")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(backbone=args.backbone, res=str(args.resolution), batch=str(args.batch_size),
                           classes=str(args.classes))
    at.run()
    cycle = [*POLICIES] * max(1, args.repeats // len(POLICIES))
    policies = iter(cycle)

    def rerun() -> None:
        at.selectbox(key="policy").set_value(next(policies))
        at.run()
        assert not at.exception, at.exception

    wall, cpu = timed(rerun, len(cycle))
    print(f"\nwhole Memory page script rerun after a policy change (AppTest, {len(wall)} runs): wall median "
          f"{statistics.median(wall):.0f} ms, p95 {p95(wall):.0f} ms; CPU median {statistics.median(cpu):.0f} ms")


if __name__ == "__main__":
    main()
