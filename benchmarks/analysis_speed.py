"""Analysis speed: a new model setting's first analysis with the pytorch view (cold walk, then the first
recorded step of `bias` and of `full`), warm re-analysis with the paper and pytorch views, and the
`memory --json` process against bare imports.

Times are CPU seconds of this process (time.process_time; a child's user + system time for the processes):
on a shared, loaded machine wall time stretches with the load, CPU time far less. Each first analysis
starts from nothing cached: a fresh model, no walk, no recording, no memoized op signature.

python -m benchmarks.analysis_speed
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time

from tinytl.memory import analyze, trace_backbone
from tinytl.memory.meta_kernels import clear_memo
from tinytl.models.setting import ModelSetting

BACKBONES = {"proxylessnas_mobile": 224, "mobilenet_v2": 224, "mobilenet_v3_large": 224, "resnet18": 224,
             "resnet50": 224, "inception_v3": 299}


def cpu_median(fn, repeat: int) -> float:
    """Median CPU seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def first_analysis(setting: ModelSetting) -> tuple[dict[str, float], object]:
    """CPU seconds of a setting's first pytorch-view analysis from nothing cached: walk, then `bias`, then `full`."""
    clear_memo()
    marks = [time.process_time()]
    trace = trace_backbone(setting)
    marks.append(time.process_time())
    for policy in ("bias", "full"):
        analyze(trace, policy, 8, view="pytorch")
        marks.append(time.process_time())
    walk, bias, full = (b - a for a, b in zip(marks, marks[1:]))
    return {"walk": walk, "bias": bias, "full": full, "walk+bias": walk + bias, "all": walk + bias + full}, trace


def child_cpu(argv: list[str], repeat: int = 3) -> float:
    """Median CPU seconds (user + system) of a child process."""
    times = []
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(argv, check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times)


def main() -> None:
    first_analysis(ModelSetting("resnet18", 64, 102))  # once per process: lazy imports and kernel registrations
    print("| backbone | walk, cold (s) | first `bias` / `full`, pytorch view (s) | walk + `bias` (s) "
          "| walk + `bias` + `full` (s) | warm `bias`: paper / pytorch view (ms) |")
    print("|---|---|---|---|---|---|")
    for name, res in BACKBONES.items():
        runs = []
        for _ in range(3):
            times, trace = first_analysis(ModelSetting(name, res, 102))
            runs.append(times)
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        paper = cpu_median(lambda: analyze(trace, "bias", 8), repeat=20)
        pytorch = cpu_median(lambda: analyze(trace, "bias", 8, view="pytorch"), repeat=20)
        print(f"| {name} | {med['walk']:.3f} | {med['bias']:.2f} / {med['full']:.2f} | {med['walk+bias']:.2f} | "
              f"{med['all']:.2f} | {paper * 1e3:.1f} / {pytorch * 1e3:.1f} |", flush=True)
    imports = child_cpu([sys.executable, "-c", "import torch, torchvision"])
    cli = child_cpu([sys.executable, "-m", "tinytl", "memory", "--json"])
    print(f"\nprocess CPU: `import torch, torchvision` {imports:.2f} s; `python -m tinytl memory --json` {cli:.2f} s "
          f"(+{cli - imports:.2f} s)")


if __name__ == "__main__":
    main()
