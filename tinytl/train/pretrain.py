"""Pretrain the shipped checkpoint: proxylessnas_mobile (lite residuals, GN+WS) on the procedural glyph task."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tinytl.data.glyphs import LOW_RES_CHOICES
from tinytl.data.registry import glyph_bundle
from tinytl.errors import TinyTLError
from tinytl.models import build_model
from tinytl.storage import to_float
from tinytl.train.checkpoint import SHIPPED, read_state_dict, save_compact
from tinytl.train.loop import EpochMetrics, StepMetrics, TrainHooks, train

BACKBONE = "proxylessnas_mobile"
log = logging.getLogger(__name__)


def pretrain(out: str | Path = SHIPPED[BACKBONE], epochs: int = 1, resolution: int = 64, batch_size: int = 32,
             lr: float = 1e-3, seed: int = 0, threads: int = 1, init: str | Path | None = None,
             classes: int = 26, per_class: int = 1500, low_res: tuple[int, ...] | None = None) -> dict:
    """Train every parameter on glyphs (from scratch, or on from `init`), save compactly (fp16), return metadata.

    A run continued from `init` records the earlier stages in its metadata, so the shipped file says how it
    was made in full.
    """
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = glyph_bundle(resolution, classes, per_class, seed, low_res)
    model = build_model(BACKBONE, data.num_classes)
    stages: list[dict] = []
    if init is not None:
        state, earlier = read_state_dict(Path(init))
        # a source classifier of another size (or none) starts fresh; everything else must match
        own = model.state_dict()
        kept = {k: v for k, v in to_float(state).items()
                if not (k.startswith("classifier.") and (k not in own or own[k].shape != v.shape))}
        try:
            missing = [k for k in model.load_state_dict(kept, strict=False).missing_keys
                       if not k.startswith("classifier.")]
        except RuntimeError:  # a tensor of another shape
            missing = ["tensors of the right shapes"]
        if missing:
            raise TinyTLError(f"{init} is not a {BACKBONE} checkpoint of this layout (it lacks {missing[0]})")
        stages = earlier.get("stages") or [earlier]
    started = time.time()

    def after_step(m: StepMetrics) -> None:
        if m.step % 10 == 0 or m.step == m.total:
            log.info("step %d/%d loss %.3f %.0fs", m.step, m.total, m.loss, time.time() - started)

    def after_epoch(m: EpochMetrics) -> None:
        log.info("epoch %d: train loss %.3f acc %.3f | test acc %.3f | %.0fs", m.epoch, m.train_loss,
                 m.train_accuracy, m.test_accuracy, m.seconds)

    generator = torch.Generator().manual_seed(seed)
    result = train(model, DataLoader(data.train, batch_size, shuffle=True, generator=generator),
                   DataLoader(data.test, 256), "full", epochs=epochs, lr=lr, label_smoothing=0.1,
                   measure_memory=False, hooks=TrainHooks(after_step=after_step, after_epoch=after_epoch))
    stage = {"epochs": epochs, "resolution": resolution, "batch_size": batch_size, "lr": lr, "seed": seed,
             "source_classes": data.num_classes, "per_class": per_class, "low_res": list(low_res or LOW_RES_CHOICES),
             "continued_from": str(init) if init else None, "train_seconds": round(result.train_seconds, 1),
             "history": [m.to_dict() for m in result.history]}
    meta = {"source_task": "glyphs", "source_classes": data.num_classes, "train_images": len(data.train),
            "test_images": len(data.test), "source_test_accuracy": result.final_accuracy,
            "train_seconds": round(sum(s["train_seconds"] for s in stages) + result.train_seconds, 1),
            "stages": stages + [stage]}
    meta["file_bytes"] = save_compact(model, out, BACKBONE, meta)
    log.info("saved %s (%.1f MB), source test accuracy %.4f", out, meta["file_bytes"] / 1e6, result.final_accuracy)
    return meta
