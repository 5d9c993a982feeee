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
from tinytl.devices import DEVICES, custom_device, total_at_batch
from tinytl.memory import cached_trace
from tinytl.policies import POLICIES

APP = Path(__file__).resolve().parents[1] / "app.py"


def recompute(trace, policy: str, batch: int, bits: int) -> None:
    """Everything the Memory page derives from a cached walk for one setting."""
    views = variants()
    reports = {v: price(trace, policy, batch, bits, v) for v in views}
    model_key = (trace.backbone, trace.resolution, trace.num_classes, trace.lite_residual, trace.norm)
    for v in views:
        total_at_batch(full_reference(model_key, bits, v.key), batch)
    first = reports[views[0]]
    table = frames.layer_frame(first)
    charts.layer_chart(table, first.peak_index, views[0].color, "bench")
    charts.param_chart(frames.param_breakdown(trace, policy, first), first.frozen_bits)
    frames.budget_frame(reports, [*DEVICES, custom_device(50)])


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


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
    trace = cached_trace(args.backbone, args.resolution, args.classes, True, "gn")
    print(f"cold walk (once per model setting, then cached): {(time.perf_counter() - t) * 1e3:.0f} ms")
    print(f"views: {', '.join(v.key for v in variants())}")
    print("| policy | warm recompute median (ms) | p95 (ms) |\n|---|---|---|")
    for policy in POLICIES:
        recompute(trace, policy, args.batch_size, 8)  # warm-up
        samples = sorted(timed(lambda: recompute(trace, policy, args.batch_size, 8), args.repeats))
        print(f"| {policy} | {statistics.median(samples):.1f} | {samples[int(0.95 * (len(samples) - 1))]:.1f} |")

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    at.query_params.update(backbone=args.backbone, res=str(args.resolution), batch=str(args.batch_size),
                           classes=str(args.classes))
    at.run()
    cycle = [*POLICIES] * max(1, args.repeats // len(POLICIES))
    samples = []
    for policy in cycle:
        at.selectbox(key="policy").set_value(policy)
        t = time.perf_counter()
        at.run()
        samples.append((time.perf_counter() - t) * 1e3)
        assert not at.exception, at.exception
    samples.sort()
    print(f"\nwhole Memory page rerun after a policy change (AppTest, {len(samples)} runs): "
          f"median {statistics.median(samples):.0f} ms, p95 {samples[int(0.95 * (len(samples) - 1))]:.0f} ms")


if __name__ == "__main__":
    main()
