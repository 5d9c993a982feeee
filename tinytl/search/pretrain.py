"""Make the shipped super-net (data/supernet.pt): train it on the procedural glyph source task, elastic.

Schedule (a CPU-sized progressive shrinking): the largest sub-net first, then sort channels by importance
(the full network's function is unchanged), then every step a random sub-net (depth, expand, kernel).
Run: `python -m tinytl.search.pretrain [--epochs-full 1] [--epochs-elastic 1] [--per-class 500] [--resolution 32]
[--lr 3e-4] [--batch-size 32] [--init CHECKPOINT] [--classes 26] [--low-res 16,32] [--seed 0]`. The defaults are
the settings measured to learn: the GN+WS network sits at ln(classes) for about 250 steps at 32 px lr 3e-4, and
never leaves it at 32 px with lr >= 1e-3 (nor within 350 steps at 48 px lr 1e-3).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tinytl.cli.common import int_list
from tinytl.data.glyphs import LOW_RES_CHOICES
from tinytl.data.registry import glyph_bundle
from tinytl.models.supernet import (DEFAULT_CHECKPOINT, ProxylessSuperNet, largest_subnet, load_supernet,
                                    sample_subnet, save_supernet, smallest_subnet)
from tinytl.train.loop import TrainHooks, evaluate, train


def extreme_accuracies(supernet: ProxylessSuperNet, loader: DataLoader) -> dict[str, float]:
    """Test accuracy of the largest and the smallest sub-net; leaves the largest active."""
    accuracy = {}
    for name, config in (("largest", largest_subnet()), ("smallest", smallest_subnet())):
        supernet.set_active(config)
        accuracy[name] = evaluate(supernet, loader)[1]
    supernet.set_active(largest_subnet())
    return accuracy


def _log_hook(started: float, log, every: int = 50):
    def after_step(step: int, total: int, loss: float) -> None:
        if step % every == 0 or step == total:
            print(f"step {step}/{total} loss {loss:.3f} {time.time() - started:.0f}s", file=log, flush=True)
    return after_step


def pretrain_supernet(out: str | Path = DEFAULT_CHECKPOINT, epochs_full: int = 1, epochs_elastic: int = 1,
                      per_class: int = 500, resolution: int = 32, batch_size: int = 32, lr: float = 3e-4,
                      seed: int = 0, init: str | Path | None = None, classes: int = 26,
                      low_res: tuple[int, ...] | None = None, log=sys.stderr) -> dict:
    """Train the super-net on glyphs (largest first, sort channels, then random sub-nets) and save it.

    `init` continues from a stored super-net (its provenance is kept under "continued_from"; a source task with
    another class count gets a fresh head)."""
    torch.manual_seed(seed)
    data = glyph_bundle(resolution, classes, per_class, seed, low_res, test_per_class=max(per_class // 10, 5))
    model = load_supernet(init, data.num_classes) if init else ProxylessSuperNet(data.num_classes)
    started = time.time()
    test_loader = DataLoader(data.test, 256)

    def loader() -> DataLoader:
        return DataLoader(data.train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))

    hooks = TrainHooks(after_step=_log_hook(started, log))
    full = train(model, loader(), test_loader, "full", epochs=epochs_full, lr=lr, measure_memory=False, hooks=hooks)
    model.sort_channels()
    rng = random.Random(seed)
    hooks.before_step = lambda step, m: m.set_active(sample_subnet(rng))
    elastic = train(model, loader(), test_loader, "full", epochs=epochs_elastic, lr=lr, measure_memory=False,
                    hooks=hooks)
    accuracy = extreme_accuracies(model, test_loader)
    meta = {"source_task": "glyphs", "source_classes": data.num_classes, "train_images": len(data.train),
            "test_images": len(data.test), "resolution": resolution, "batch_size": batch_size, "lr": lr,
            "epochs_full": epochs_full, "epochs_elastic": epochs_elastic, "seed": seed,
            "low_res": list(low_res or LOW_RES_CHOICES),
            "source_test_accuracy": accuracy, "train_seconds": round(full.train_seconds + elastic.train_seconds, 1),
            "history": [m.to_dict() for m in full.history + elastic.history], "made_by": "tinytl.search.pretrain",
            "continued_from": getattr(model, "provenance", None)}
    save_supernet(model, out, meta)
    print(f"saved {out}: source accuracy largest {accuracy['largest']:.3f} smallest {accuracy['smallest']:.3f}",
          file=log, flush=True)
    return meta


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinytl.search.pretrain", description=__doc__)
    parser.add_argument("--out", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--epochs-full", type=int, default=1)
    parser.add_argument("--epochs-elastic", type=int, default=1)
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--init", default=None, help="continue from this super-net checkpoint")
    parser.add_argument("--seed", type=int, default=0, help="training renderings (test: seed + 1) and order")
    parser.add_argument("--classes", type=int, default=26, help="source classes (see `python -m tinytl pretrain`)")
    parser.add_argument("--low-res", type=int_list, default=None,
                        help="comma-separated sizes a rendering may be reduced to (default 16,32)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    pretrain_supernet(args.out, args.epochs_full, args.epochs_elastic, args.per_class, args.resolution,
                      args.batch_size, args.lr, args.seed, args.init, args.classes, args.low_res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
