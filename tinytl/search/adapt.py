"""Feature-extractor adaptation: fine-tune the super-net on the target data, a random sub-net every step.

Only what TinyTL trains moves (biases, lite residuals, the new classifier: policy lite+bias), so the adapted
state is small and stored apart from the shipped super-net: every sub-net inherits it on extraction.
Run: `python -m tinytl.search.adapt [--dataset digits] [--resolution 32] [--epochs 2] [--lr LR]` (32 px: the
shipped super-net's source resolution; at 48 px an earlier one stayed at chance on digits).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tinytl.data import load_dataset
from tinytl.errors import TinyTLError
from tinytl.models.supernet import DEFAULT_CHECKPOINT, ProxylessSuperNet, load_supernet, sample_subnet
from tinytl.policies import trainable_names
from tinytl.search.pretrain import extreme_accuracies
from tinytl.storage import load_file, save_file, to_float, to_half
from tinytl.train.loop import TrainHooks, train

DEFAULT_ADAPTED = DEFAULT_CHECKPOINT.with_name("supernet_digits_fa.pt")
POLICY = "lite+bias"


def adapt_supernet(supernet: ProxylessSuperNet, dataset: str = "digits", resolution: int = 32, epochs: int = 2,
                   batch_size: int = 16, lr: float | None = None, seed: int = 0, log=sys.stderr) -> dict:
    """Train the policy's parameters with a random sub-net per step; return the run's metadata."""
    data = load_dataset(dataset, resolution, seed=seed)
    if supernet.classifier[1].out_features != data.num_classes:
        raise TinyTLError(f"super-net head has {supernet.classifier[1].out_features} outputs, "
                          f"{dataset} has {data.num_classes} classes")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    started = time.time()

    def after_step(step: int, total: int, loss: float) -> None:
        if step % 50 == 0 or step == total:
            print(f"adapt step {step}/{total} loss {loss:.3f} {time.time() - started:.0f}s", file=log, flush=True)

    hooks = TrainHooks(before_step=lambda step, model: model.set_active(sample_subnet(rng)), after_step=after_step)
    test_loader = DataLoader(data.test, 256)
    result = train(supernet, DataLoader(data.train, batch_size, shuffle=True,
                                        generator=torch.Generator().manual_seed(seed)),
                   test_loader, POLICY, epochs=epochs, lr=lr or data.spec.lr,
                   label_smoothing=data.spec.label_smoothing, measure_memory=False, hooks=hooks)
    accuracy = extreme_accuracies(supernet, test_loader)
    print(f"adapted: {dataset} test accuracy largest {accuracy['largest']:.3f} smallest {accuracy['smallest']:.3f}",
          file=log, flush=True)
    return {"dataset": dataset, "classes": data.num_classes, "resolution": resolution, "epochs": epochs,
            "batch_size": batch_size, "lr": lr or data.spec.lr, "policy": POLICY, "seed": seed,
            "train_images": len(data.train), "train_seconds": round(result.train_seconds, 1),
            "test_accuracy": accuracy, "history": [m.to_dict() for m in result.history],
            "made_by": "tinytl.search.adapt"}


def save_adapted(supernet: ProxylessSuperNet, path: str | Path, base: str | Path, meta: dict) -> int:
    """Store only the adapted tensors (fp16) plus the base checkpoint's path; return the file size."""
    names = trainable_names(supernet, POLICY)
    state = to_half({k: v for k, v in supernet.named_parameters() if k in names})
    return save_file({"state_dict": state, "base": str(Path(base).name),
                      "num_classes": supernet.classifier[1].out_features, "provenance": meta}, path)


def load_adapted(path: str | Path | None = None) -> ProxylessSuperNet:
    """The shipped super-net with an adaptation applied (default: data/supernet_digits_fa.pt)."""
    path = Path(path) if path else DEFAULT_ADAPTED
    if not path.is_file():
        raise TinyTLError(f"adapted super-net {str(path)!r} not found (make it with `python -m tinytl.search.adapt`)")
    ckpt = load_file(path, "adapted super-net", ("state_dict", "base", "num_classes"))
    model = load_supernet(path.with_name(ckpt["base"]), ckpt["num_classes"])
    missing = set(ckpt["state_dict"]) - set(dict(model.named_parameters()))
    if missing:
        raise TinyTLError(f"adapted state {path.name} does not fit the super-net: {sorted(missing)[:3]}")
    model.load_state_dict(to_float(ckpt["state_dict"]), strict=False)
    model.provenance = {"base": model.provenance, "adaptation": ckpt["provenance"]}
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinytl.search.adapt", description=__doc__)
    parser.add_argument("--supernet", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--out", default=str(DEFAULT_ADAPTED))
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=None, help="default: the dataset's fine-tune learning rate")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    classes = load_dataset(args.dataset, args.resolution).num_classes
    supernet = load_supernet(args.supernet, classes)
    meta = adapt_supernet(supernet, args.dataset, args.resolution, args.epochs, lr=args.lr)
    size = save_adapted(supernet, args.out, args.supernet, meta)
    print(f"saved {args.out} ({size / 1e6:.1f} MB)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
