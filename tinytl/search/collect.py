"""[sub-net, resolution, accuracy, p(correct)] pairs for the predictor by inherited weights, sharded over ranks.

Protocol (as TinyTL does it; docs/PAPER.md): no sub-net is trained. Each is run with the weights it inherits
from the adapted super-net and scored on a fixed validation slice of the target's train split that the
adaptation held out (the test split stays untouched), so a pair costs one forward pass over that slice.
Which sub-net and resolution pair i measures is fixed by (seed, i) alone and scoring is deterministic, so
the result does not depend on how pairs are spread over processes, nor on whether a run resumed an earlier
one's file; rank r takes every N-th pair still to measure and rank 0 gathers and writes them in index order.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset, TensorDataset

from tinytl.data import load_dataset
from tinytl.errors import TinyTLError
from tinytl.models.supernet import ProxylessSuperNet, SubnetConfig, sample_subnet
from tinytl.search.space import check_resolutions
from tinytl.train.adapt import VALIDATION_IMAGES, check_target, validation_split
from tinytl.train.loop import evaluate_scores

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairSpec:
    """Which sub-net and resolution pair `index` measures."""

    index: int
    subnet: SubnetConfig
    resolution: int


@dataclass(frozen=True)
class Protocol:
    """How a pair's accuracy is measured: the dataset and the held-out validation slice of its train split."""

    dataset: str = "digits"
    val_images: int = VALIDATION_IMAGES
    split_seed: int = 0  # the adaptation's seed: its train/test split and held-out slice
    scoring: str = "inherited weights, no training"


def pair_specs(count: int, resolutions: Sequence[int], seed: int = 0) -> list[PairSpec]:
    """`count` random sub-nets, each at a random resolution, fixed by the seed."""
    resolutions = check_resolutions(resolutions)
    rng = random.Random(seed)
    return [PairSpec(i, sample_subnet(rng), rng.choice(resolutions)) for i in range(count)]


class ValidationSlices:
    """The validation slice at each resolution, under the test-time transform, built once and reused."""

    def __init__(self, protocol: Protocol, supernet: ProxylessSuperNet) -> None:
        self.protocol = protocol
        self.supernet = supernet
        self._loaders: dict[int, DataLoader] = {}

    def loader(self, resolution: int) -> DataLoader:
        if resolution not in self._loaders:
            data = load_dataset(self.protocol.dataset, resolution, seed=self.protocol.split_seed)
            check_target(self.supernet, self.protocol.dataset, data.num_classes)
            _, val = validation_split(len(data.train), self.protocol.val_images, self.protocol.split_seed)
            images = Subset(data.train.with_transform(data.test.transform), val)
            x, y = next(iter(DataLoader(images, len(images))))
            self._loaders[resolution] = DataLoader(TensorDataset(x, y), 150)
        return self._loaders[resolution]


def measure_pair(supernet: ProxylessSuperNet, spec: PairSpec, slices: ValidationSlices) -> dict:
    """Accuracy, mean true-class probability and loss of one sub-net with inherited weights on the validation
    slice; no optimizer step."""
    supernet.set_active(spec.subnet)
    scores = evaluate_scores(supernet, slices.loader(spec.resolution))
    return {"index": spec.index, "subnet": spec.subnet.to_dict(), "resolution": spec.resolution,
            **scores, "val_images": slices.protocol.val_images}


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


def reusable_pairs(previous: Mapping, specs: Sequence[PairSpec], settings: Mapping) -> dict[int, dict]:
    """The pairs of an earlier run's file that this run would measure the same way, by index: its settings
    (protocol, seed, resolutions, adapted super-net) must equal `settings`, and a kept pair must be its index's
    spec. Scoring is deterministic, so a resumed file equals a fresh run's."""
    made = previous.get("provenance") if isinstance(previous, Mapping) else None
    pairs = previous.get("pairs") if isinstance(made, Mapping) else None
    if not isinstance(pairs, list) or not all(isinstance(p, Mapping) and {"index", "subnet", "resolution"} <= p.keys()
                                              for p in pairs):
        raise TinyTLError("cannot resume: the existing pairs file is not one `collect` wrote; pass another --out")
    for key, value in settings.items():
        if made.get(key) != value:
            raise TinyTLError(f"cannot resume: the existing pairs file was made with another {key} "
                              f"({made.get(key)!r}, this run: {value!r}); pass another --out")
    wanted = {s.index: (s.subnet.to_dict(), s.resolution) for s in specs}
    return {p["index"]: p for p in pairs if wanted.get(p["index"]) == (p["subnet"], p["resolution"])}


def collect_pairs(supernet: ProxylessSuperNet, specs: Sequence[PairSpec], protocol: Protocol,
                  done: Mapping[int, dict] | None = None) -> list[dict]:
    """Measure this rank's share of the specs not already `done`; every rank returns all pairs in index order."""
    check_target(supernet, protocol.dataset)
    rank, world = init_distributed()
    done = done or {}
    mine = [s for s in specs if s.index not in done][rank::world]
    slices = ValidationSlices(protocol, supernet)
    results = []
    started = time.time()
    for k, spec in enumerate(mine, 1):
        results.append(measure_pair(supernet, spec, slices))
        log.info("rank %d: pair %d/%d acc %.3f %.0fs", rank, k, len(mine), results[-1]["accuracy"],
                 time.time() - started)
    if world > 1:
        gathered: list[list[dict] | None] = [None] * world
        dist.all_gather_object(gathered, results)
        results = [r for part in gathered for r in part]
    return sorted([*results, *done.values()], key=lambda r: r["index"])
