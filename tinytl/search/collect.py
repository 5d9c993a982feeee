"""[sub-net, resolution, accuracy] pairs for the predictor, sharded over torch.distributed ranks.

Protocol (reference section 8, CPU-sized): each sub-net is extracted from the adapted super-net, fine-tuned
one epoch (lite+bias) on a fixed 20% of the target train split, and scored on a fixed validation slice of
the rest of that split (the test split stays untouched). Pair i is seeded from (seed, i) alone, so the
result does not depend on how pairs are spread over processes; rank r takes pairs r, r + N, ... and
rank 0 gathers and writes them in index order.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset

from tinytl.data import load_dataset
from tinytl.models.supernet import ProxylessSuperNet, SubnetConfig, sample_subnet
from tinytl.search.space import check_resolutions
from tinytl.train.loop import train

POLICY = "lite+bias"


@dataclass(frozen=True)
class PairSpec:
    """Which sub-net and resolution pair `index` measures."""

    index: int
    subnet: SubnetConfig
    resolution: int


@dataclass(frozen=True)
class Protocol:
    """How a pair's accuracy is measured."""

    dataset: str = "digits"
    finetune_fraction: float = 0.2
    val_images: int = 450
    batch_size: int = 8
    epochs: int = 1
    seed: int = 0


def pair_specs(count: int, resolutions: Sequence[int], seed: int = 0) -> list[PairSpec]:
    """`count` random sub-nets, each at a random resolution, fixed by the seed."""
    resolutions = check_resolutions(resolutions)
    rng = random.Random(seed)
    return [PairSpec(i, sample_subnet(rng), rng.choice(resolutions)) for i in range(count)]


def _splits(train_size: int, protocol: Protocol) -> tuple[list[int], list[int]]:
    order = torch.randperm(train_size, generator=torch.Generator().manual_seed(protocol.seed)).tolist()
    n_fit = max(1, round(protocol.finetune_fraction * train_size))
    return order[:n_fit], order[n_fit:n_fit + protocol.val_images]


def measure_pair(supernet: ProxylessSuperNet, spec: PairSpec, protocol: Protocol) -> dict:
    """Fine-tune the extracted sub-net briefly and score it; deterministic given (protocol.seed, spec.index)."""
    torch.manual_seed(protocol.seed * 1_000_003 + spec.index)
    data = load_dataset(protocol.dataset, spec.resolution, seed=protocol.seed)
    fit, val = _splits(len(data.train), protocol)
    # validation images come from the train split, shown with the test-time transform
    val_set = Subset(data.train.with_transform(data.test.transform), val)
    model = supernet.extract(spec.subnet)
    loader = DataLoader(Subset(data.train, fit), protocol.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(protocol.seed * 1_000_003 + spec.index))
    result = train(model, loader, DataLoader(val_set, 256), POLICY, epochs=protocol.epochs, lr=data.spec.lr,
                   label_smoothing=data.spec.label_smoothing, measure_memory=False)
    return {"index": spec.index, "subnet": spec.subnet.to_dict(), "resolution": spec.resolution,
            "accuracy": result.final_accuracy, "finetune_images": len(fit), "val_images": len(val),
            "steps": result.steps}


def init_distributed() -> tuple[int, int]:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, nccl on GPU); (rank, world size)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def collect_pairs(supernet: ProxylessSuperNet, specs: Sequence[PairSpec], protocol: Protocol,
                  log=None) -> list[dict]:
    """Measure this rank's share of the specs; every rank returns all pairs in index order."""
    rank, world = init_distributed()
    mine = [s for s in specs if s.index % world == rank]
    results = []
    started = time.time()
    for k, spec in enumerate(mine, 1):
        results.append(measure_pair(supernet, spec, protocol))
        if log:
            print(f"rank {rank}: pair {k}/{len(mine)} acc {results[-1]['accuracy']:.3f} "
                  f"{time.time() - started:.0f}s", file=log, flush=True)
    if world > 1:
        gathered: list[list[dict] | None] = [None] * world
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    return sorted(results, key=lambda r: r["index"])
