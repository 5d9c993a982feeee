"""Make the shipped super-net: warm start from the fixed ProxylessNAS-Mobile checkpoint, then elastic training.

Source task: the procedural glyphs the fixed checkpoint learned (100 classes, renderings reduced to 8/16/32 px),
freshly rendered with another seed. After each phase the file is written (so a stopped run keeps its phases),
and at the end the accuracy of the largest, smallest and ProxylessNAS-Mobile sub-nets at every search
resolution goes into its metadata.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tinytl.data.registry import glyph_bundle
from tinytl.data.transforms import test_transform
from tinytl.models.proxylessnas import ProxylessNASMobile
from tinytl.models.supernet import ProxylessSuperNet, load_supernet, save_supernet
from tinytl.models.supernet_warmstart import warm_start
from tinytl.storage import to_float
from tinytl.train.checkpoint import SHIPPED, read_state_dict
from tinytl.train.elastic import PHASES, check_phase_lrs, check_phase_steps, subnet_accuracies, train_phase
from tinytl.train.loop import evaluate

SEARCH_RESOLUTIONS = (48, 64, 80, 96)
PHASE_STEPS = (600, 80, 160, 400)  # largest, kernel, depth, expand
PHASE_LRS = (1e-3, 5e-4, 5e-4, 5e-4)
log = logging.getLogger(__name__)


def pretrain_supernet(out: str | Path, init: str | Path = SHIPPED["proxylessnas_mobile"],
                      phase_steps: Sequence[int] = PHASE_STEPS, resolutions: Sequence[int] = SEARCH_RESOLUTIONS,
                      batch_size: int = 16, lrs: Sequence[float] = PHASE_LRS, randoms: int = 2, classes: int = 100,
                      per_class: int = 300, low_res: tuple[int, ...] = (8, 16, 32), seed: int = 6,
                      test_per_class: int = 10, resume: str | Path | None = None) -> dict:
    """Warm-start the super-net from a fixed checkpoint (or `resume` a super-net file written by this function)
    and train it elastically; save it to `out`, return metadata."""
    phase_steps, lrs = check_phase_steps(phase_steps), check_phase_lrs(lrs)
    torch.manual_seed(seed)
    started, cpu_started = time.perf_counter(), time.process_time()
    data = glyph_bundle(max(resolutions), classes, per_class, seed, low_res, test_per_class=test_per_class)
    state, fixed_meta = read_state_dict(Path(init))
    state = to_float(state)
    fixed = ProxylessNASMobile(state["classifier.1.weight"].shape[0])
    fixed.load_state_dict(state)
    if resume:
        supernet = load_supernet(resume)
        warm = {"resumed_from": supernet.provenance}
    else:
        supernet = ProxylessSuperNet(data.num_classes)
        warm = warm_start(supernet, state)
        log.info("warm start from %s: %s", init, {k: v for k, v in warm.items() if k != "proxyless_subnet"})
    loader = DataLoader(data.train, batch_size, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(seed))
    rng = random.Random(seed)
    meta = {"made_by": "python -m tinytl supernet-pretrain", "init": str(Path(init).name),
            "init_source_accuracy": fixed_meta.get("source_test_accuracy"), "warm_start": warm,
            "source_task": "glyphs", "source_classes": data.num_classes, "train_images": len(data.train),
            "test_images": len(data.test), "low_res": list(low_res), "seed": seed, "batch_size": batch_size,
            "phase_lrs": dict(zip(PHASES, lrs)), "randoms": randoms, "resolutions": list(resolutions),
            "phase_steps": dict(zip(PHASES, phase_steps)), "phases": []}
    for phase, steps, lr in zip(PHASES, phase_steps, lrs):
        if not steps:
            continue
        record = train_phase(supernet, loader, phase, steps, resolutions, lr, rng, randoms)
        meta["phases"].append(record.__dict__)
        save_supernet(supernet, out, meta)
        log.info("phase %s done in %.0f s; saved %s", phase, record.seconds, out)
    accuracy = {}
    for r in sorted(set(resolutions)):
        accuracy[str(r)] = subnet_accuracies(supernet, data.test.with_transform(test_transform(r)))
        log.info("source accuracy at %d px: %s", r, accuracy[str(r)])
    fixed_acc = {str(r): evaluate(fixed, DataLoader(data.test.with_transform(test_transform(r)), 250))[1]
                 for r in sorted(set(resolutions))}
    meta.update(source_test_accuracy=accuracy, fixed_source_test_accuracy=fixed_acc,
                seconds=round(time.perf_counter() - started, 1),
                cpu_seconds=round(time.process_time() - cpu_started, 1))
    save_supernet(supernet, out, meta)
    return meta
