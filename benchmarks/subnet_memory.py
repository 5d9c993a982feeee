"""Sub-net memory speed: analytic evaluations per second (one at a time and vectorised), against the layer walk.

python -m benchmarks.subnet_memory
"""

from __future__ import annotations

import random
import time

import numpy as np
import torch

from tinytl.memory import profile_memory
from tinytl.models.supernet import sample_subnet
from tinytl.search.memory import memory_table, subnet_memory_bytes
from tinytl.search.space import random_genes
from tinytl.models.setting import ModelSetting

RESOLUTIONS = (160, 176, 192, 208, 224, 240, 256)
CLASSES = 102


def rate(fn, count: int) -> float:
    start = time.perf_counter()
    fn()
    return count / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(1)
    rng = random.Random(0)
    configs = [(sample_subnet(rng), rng.choice(RESOLUTIONS)) for _ in range(5000)]
    start = time.perf_counter()
    table = memory_table(RESOLUTIONS, CLASSES, "lite+bias")
    build = time.perf_counter() - start
    for res in RESOLUTIONS:  # build the single-resolution tables before timing lookups
        subnet_memory_bytes(configs[0][0], res, num_classes=CLASSES)
    single = rate(lambda: [subnet_memory_bytes(c, r, num_classes=CLASSES) for c, r in configs], len(configs))
    genes = random_genes(np.random.default_rng(0), 100_000, len(RESOLUTIONS))
    vector = rate(lambda: table.total_bytes(genes), len(genes))
    population = genes[:100]
    batch100 = rate(lambda: [table.total_bytes(population) for _ in range(1000)], 100_000)
    walk_configs = configs[:5]
    start = time.perf_counter()
    equal = all(profile_memory(ModelSetting("supernet", r, CLASSES, subnet=c)).total_bytes
                == subnet_memory_bytes(c, r, num_classes=CLASSES) for c, r in walk_configs)
    walk = len(walk_configs) / (time.perf_counter() - start)
    print(f"table build (7 resolutions): {build * 1e3:.1f} ms")
    print(f"one sub-net per call:       {single:,.0f} evals/s")
    print(f"population of 100 per call: {batch100:,.0f} evals/s")
    print(f"100,000 rows in one call:   {vector:,.0f} evals/s")
    print(f"layer walk (cold, for comparison): {walk:.2f} evals/s; equal on {len(walk_configs)} sub-nets: {equal}")


if __name__ == "__main__":
    main()
