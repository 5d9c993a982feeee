"""Feature-extractor adaptation: fine-tune the super-net on the target, a random sub-net and resolution every step.

As TinyTL does it (docs/PAPER.md, feature-extractor adaptation): under `lite+bias` only biases, lite residuals
and the new classifier move, so the adapted state is small and stored apart from the super-net (`full` is
offered too and stores every tensor). Every sub-net inherits the adapted weights on extraction. A fixed
validation slice of the target's train split is held out of the adaptation: the accuracy pairs are scored on it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset

from tinytl.data import load_dataset
from tinytl.errors import TinyTLError
from tinytl.models.supernet import (DEFAULT_CHECKPOINT, ProxylessSuperNet, SubnetConfig, SubnetModel, load_supernet,
                                   sample_subnet)
from tinytl.policies import trainable_names
from tinytl.storage import load_file, save_file, to_float, to_half
from tinytl.train.checkpoint import NO_WEIGHTS
from tinytl.train.elastic import resize_batch, subnet_accuracies
from tinytl.train.loop import StepMetrics, TrainHooks, evaluate, train
from tinytl.validation import MAX_TRAIN_RESOLUTION, check_resolutions

DEFAULT_ADAPTED = DEFAULT_CHECKPOINT.with_name("supernet_digits_fa.pt")
ADAPT_POLICIES = ("lite+bias", "bias", "full")
VALIDATION_IMAGES = 300
# Resolutions drawn per step: the search's, 96 px twice as often. The super-net is weakest at 96 px on its source
# task, and with uniform draws the adapted sub-nets scored lower at 96 px than at 80 (docs/BENCHMARKS.md).
ADAPT_DRAWS = (48, 64, 80, 96, 96)
log = logging.getLogger(__name__)


def validation_split(train_size: int, val_images: int = VALIDATION_IMAGES,
                     seed: int = 0) -> tuple[list[int], list[int]]:
    """(adaptation indices, validation indices) of a train split: a fixed seeded slice is held out."""
    if not 0 < val_images < train_size:
        raise TinyTLError(f"validation images must be in 1..{train_size - 1}, got {val_images}")
    order = torch.randperm(train_size, generator=torch.Generator().manual_seed(seed)).tolist()
    return order[val_images:], order[:val_images]


def adapt_supernet(supernet: ProxylessSuperNet, resolutions: Sequence[int] = ADAPT_DRAWS, dataset: str = "digits",
                   policy: str = "lite+bias", epochs: int = 20, batch_size: int = 32, lr: float | None = None,
                   val_images: int = VALIDATION_IMAGES, seed: int = 0) -> dict:
    """Train the policy's parameters with a random sub-net and resolution per step; return the run's metadata."""
    if policy not in ADAPT_POLICIES:
        raise TinyTLError(f"adaptation policy must be one of {', '.join(ADAPT_POLICIES)}, got {policy!r}")
    draws = list(check_resolutions(resolutions, MAX_TRAIN_RESOLUTION))  # a size listed twice is drawn twice as often
    resolutions = sorted(set(draws))
    data = load_dataset(dataset, max(resolutions), seed=seed)  # the seed fixes the split, as for a fine-tune
    if supernet.classifier[1].out_features != data.num_classes:
        raise TinyTLError(f"super-net head has {supernet.classifier[1].out_features} outputs, "
                          f"{dataset} has {data.num_classes} classes")
    fit, _ = validation_split(len(data.train), val_images, seed)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    started, cpu_started = time.perf_counter(), time.process_time()

    def after_step(m: StepMetrics) -> None:
        if m.step % 50 == 0 or m.step == m.total:
            log.info("adapt step %d/%d loss %.3f %.0fs", m.step, m.total, m.loss, time.perf_counter() - started)

    hooks = TrainHooks(before_step=lambda step, model: model.set_active(sample_subnet(rng)),
                       prepare_batch=lambda step, x: resize_batch(x, rng.choice(draws)),
                       after_step=after_step)
    loader = DataLoader(Subset(data.train, fit), batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    report_resolution = 64 if 64 in resolutions else resolutions[0]  # the fine-tune demo's when searched
    test_set = load_dataset(dataset, report_resolution, seed=seed).test
    result = train(supernet, loader, DataLoader(test_set, 256), policy, epochs=epochs, lr=lr or data.spec.lr,
                   label_smoothing=data.spec.label_smoothing, measure_memory=False, hooks=hooks)
    accuracy = subnet_accuracies(supernet, test_set)
    log.info("adapted: %s test accuracy %s", dataset, accuracy)
    return {"dataset": dataset, "classes": data.num_classes, "resolutions": resolutions, "resolution_draws": draws,
            "epochs": epochs,
            "batch_size": batch_size, "lr": lr or data.spec.lr, "policy": policy, "seed": seed,
            "train_images": len(fit), "validation_images_held_out": val_images, "steps": result.steps,
            "train_seconds": round(result.train_seconds, 1),
            "cpu_seconds": round(time.process_time() - cpu_started, 1),
            "test_accuracy": {"resolution": report_resolution, **accuracy},
            "made_by": "python -m tinytl adapt"}


def adapt_to_file(out: str | Path, supernet_path: str | Path | None = None, dataset: str = "digits",
                  resolutions: Sequence[int] = ADAPT_DRAWS, **options) -> dict:
    """Load the base super-net with the target's head, adapt it (`adapt_supernet`'s other options) and store the
    adaptation at `out`: what `python -m tinytl adapt` does. Returns the run's metadata with the file size."""
    base = supernet_path or DEFAULT_CHECKPOINT
    supernet = load_supernet(base, load_dataset(dataset, min(resolutions)).num_classes)
    meta = adapt_supernet(supernet, resolutions, dataset, **options)
    meta["file_bytes"] = save_adapted(supernet, out, base, meta)
    return meta


def save_adapted(supernet: ProxylessSuperNet, path: str | Path, base: str | Path, meta: dict) -> int:
    """Store only the adapted tensors (fp16) plus the base super-net's file name; return the file size."""
    names = trainable_names(supernet, meta.get("policy", "lite+bias"))
    state = to_half({k: v for k, v in supernet.named_parameters() if k in names})
    return save_file({"state_dict": state, "base": str(Path(base).name),
                      "num_classes": supernet.classifier[1].out_features, "provenance": meta}, path)


def load_adapted(path: str | Path | None = None) -> ProxylessSuperNet:
    """The super-net with an adaptation applied (default: the shipped supernet_digits_fa.pt); the base
    super-net is the file the adaptation names, in the adaptation's folder or else among the shipped assets.
    Every field it uses is checked (types and ranges) before anything is built."""
    from tinytl.storage import check_fields, check_input_file, is_int_in, is_json_like, is_tensor_dict
    from tinytl.validation import MAX_CLASSES, MAX_SEED

    what = "adapted super-net"
    path = check_input_file(path if path else DEFAULT_ADAPTED, what, "make it with `python -m tinytl adapt`")
    ckpt = load_file(path, what, ("state_dict", "base", "num_classes"))
    base = ckpt["base"]
    if not isinstance(base, str) or Path(base).name != base or base in ("", ".", "..") or "\0" in base:
        raise TinyTLError(f"adapted super-net {path.name} names its base {base!r:.80}: expected a file name beside it")
    check_fields(ckpt, {
        "state_dict": (is_tensor_dict, "a state dict (name -> tensor)"),
        "num_classes": (is_int_in(1, MAX_CLASSES), f"an integer in 1..{MAX_CLASSES}"),
        "provenance": (lambda v: isinstance(v, dict) and is_json_like(v), "a dict of plain data")}, path, what)
    check_fields(ckpt.get("provenance", {}), {
        "dataset": (lambda v: isinstance(v, str), "a dataset name"),
        "policy": (lambda v: isinstance(v, str), "a policy name"),
        "seed": (is_int_in(0, MAX_SEED), f"an integer in 0..{MAX_SEED}")}, path, what, prefix="provenance.")
    head = ckpt["state_dict"].get("classifier.1.weight")
    if head is not None and head.shape[:1] != (ckpt["num_classes"],):
        raise TinyTLError(f"{what} {path} is damaged: field num_classes is {ckpt['num_classes']}, but its classifier "
                          f"holds {tuple(head.shape)} weights")
    beside = path.with_name(base)
    model = load_supernet(beside if beside.is_file() else DEFAULT_CHECKPOINT.with_name(base), ckpt["num_classes"])
    params = dict(model.named_parameters())
    missing = set(ckpt["state_dict"]) - set(params)
    if missing:
        raise TinyTLError(f"adapted state {path.name} does not fit the super-net: {sorted(missing)[:3]}")
    wrong = next((k for k, v in ckpt["state_dict"].items() if v.shape != params[k].shape), None)
    if wrong:
        raise TinyTLError(f"adapted state {path.name} does not fit the super-net: {wrong} is "
                          f"{tuple(ckpt['state_dict'][wrong].shape)}, the super-net's {tuple(params[wrong].shape)}")
    model.load_state_dict(to_float(ckpt["state_dict"]), strict=False)
    model.provenance = {"base": model.provenance, "adaptation": ckpt.get("provenance", {})}
    return model


def adapted_subnet(config: SubnetConfig | str, weights: str, dataset: str, num_classes: int, norm: str,
                   lite_residual: bool) -> tuple[SubnetModel, str]:
    """A sub-net that inherits an adapted super-net's weights (`weights`: 'shipped' or an adaptation file) and
    its file name; the run's dataset, classes, norm and lite residuals must be the adaptation's."""
    if weights in NO_WEIGHTS:
        raise TinyTLError("a sub-net inherits the adapted super-net's weights: --weights shipped or an adaptation "
                          f"file, not {weights!r}")
    path = DEFAULT_ADAPTED if weights == "shipped" else Path(weights).expanduser()
    supernet = load_adapted(path)
    adapted_on = supernet.provenance["adaptation"].get("dataset", dataset)
    for what, run, adapted in (("dataset", dataset, adapted_on), ("classes", num_classes,
                               supernet.classifier[1].out_features), ("norm", norm, supernet.norm),
                               ("lite residual", lite_residual, supernet.lite_residual)):
        if run != adapted:
            raise TinyTLError(f"{path.name} was adapted with {what} {adapted!r}; this run asks for {run!r}")
    return supernet.extract(config), path.name


def adaptation_seed(supernet: ProxylessSuperNet) -> int:
    """The seed an adapted super-net was adapted with: it fixes the target's train/test split."""
    return int(getattr(supernet, "provenance", {}).get("adaptation", {}).get("seed", 0))


def check_target(supernet: ProxylessSuperNet, dataset: str, num_classes: int | None = None) -> None:
    """Refuse, before any work, a target the super-net was not adapted on: its head has the adaptation's classes
    (else scoring stops part-way with "Target 12 is out of bounds")."""
    head = supernet.classifier[1].out_features
    adapted_on = getattr(supernet, "provenance", {}).get("adaptation", {}).get("dataset")
    if adapted_on is not None and adapted_on != dataset:
        raise TinyTLError(f"this super-net was adapted on {adapted_on!r} ({head} classes), not {dataset!r}: run "
                          f"`python -m tinytl adapt --dataset {dataset}` and pass its file")
    if num_classes is not None and num_classes != head:
        raise TinyTLError(f"dataset {dataset!r} has {num_classes} classes but the adapted super-net's head has "
                          f"{head}: adapt the super-net on {dataset!r} first")


def subnet_test_accuracy(supernet: ProxylessSuperNet, config: SubnetConfig, resolution: int,
                         dataset: str = "digits") -> dict:
    """Held-out test accuracy of one sub-net with inherited weights (no training), on the adaptation's split."""
    check_target(supernet, dataset)
    data = load_dataset(dataset, resolution, seed=adaptation_seed(supernet))
    check_target(supernet, dataset, data.num_classes)
    supernet.set_active(config)
    loss, accuracy = evaluate(supernet, DataLoader(data.test, 250))
    return {"accuracy": accuracy, "loss": loss, "test_images": len(data.test), "resolution": resolution,
            "dataset": dataset, "subnet": config.to_dict()}

