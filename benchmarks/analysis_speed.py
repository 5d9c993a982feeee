"""Analysis speed: cold walk, warm re-analysis, the pytorch view's step recording (first analysis of a
policy) and its warm re-analysis, and the `memory --json` process against bare imports.

python benchmarks/analysis_speed.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from tinytl.memory import analyze, cached_trace, trace_backbone
from tinytl.models.setting import ModelSetting

BACKBONES = {"proxylessnas_mobile": 224, "mobilenet_v2": 224, "mobilenet_v3_large": 224, "resnet18": 224,
             "resnet50": 224, "inception_v3": 299}


def timed(fn, repeat: int = 5) -> float:
    """Median seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def process_seconds(argv: list[str], repeat: int = 3) -> float:
    return timed(lambda: subprocess.run(argv, check=True, capture_output=True), repeat)


def main() -> None:
    print("| backbone | walk, cold (s) | analyze `bias`, warm walk (ms) | pytorch view: record `bias` / `full` (s) "
          "| pytorch view, warm `bias` (ms) |")
    print("|---|---|---|---|---|")
    for name, res in BACKBONES.items():
        cold = timed(lambda: trace_backbone(ModelSetting(name, res, 102)), repeat=3)
        trace = cached_trace(ModelSetting(name, res, 102))
        warm = timed(lambda: analyze(trace, "bias", 8), repeat=20)
        first = {}
        for policy in ("bias", "full"):
            start = time.perf_counter()
            analyze(trace, policy, 8, view="pytorch")
            first[policy] = time.perf_counter() - start
        recorded = timed(lambda: analyze(trace, "bias", 8, view="pytorch"), repeat=20)
        print(f"| {name} | {cold:.3f} | {warm * 1e3:.1f} | {first['bias']:.2f} / {first['full']:.2f} | "
              f"{recorded * 1e3:.1f} |", flush=True)
    imports = process_seconds([sys.executable, "-c", "import torch, torchvision"])
    cli = process_seconds([sys.executable, "-m", "tinytl", "memory", "--json"])
    print(f"\nprocess: `import torch, torchvision` {imports:.2f} s; `python -m tinytl memory --json` {cli:.2f} s "
          f"(+{cli - imports:.2f} s)")


if __name__ == "__main__":
    main()
