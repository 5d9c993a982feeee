"""`finetune`: a short real fine-tune under a policy, recorded in the run store (progress bar on stderr)."""

from __future__ import annotations

import argparse
import sys

from tinytl.cli.common import print_json
from tinytl.data import DATASETS
from tinytl.models.layers import NORMS
from tinytl.train.loop import StepMetrics
from tinytl.train.recipe import ENGINES, FinetuneSettings
from tinytl.validation import (arg, at_least, check_batch_size, check_frozen_bits, check_label_smoothing, check_lr,
                               check_seed, check_threads, train_resolution)

DEFAULTS = FinetuneSettings()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pretrained backbone under a policy and record the run",
                       description=__doc__)
    p.add_argument("--backbone", default=DEFAULTS.backbone, help="proxylessnas_mobile or a torchvision model name")
    p.add_argument("--policy", default=DEFAULTS.policy,
                   help="full, last, norm+last, bias, lite, lite+bias, or custom:GLOB[,GLOB...]")
    p.add_argument("--dataset", default=DEFAULTS.dataset, choices=list(DATASETS),
                   help="digits (ships with scikit-learn), glyphs (procedural) or local files under --data-root")
    p.add_argument("--data-root", default=None, help="folder holding torchvision dataset files or train/ test/")
    p.add_argument("--weights", default=DEFAULTS.weights,
                   help="shipped (the repo's glyph-pretrained checkpoint), none, a state-dict file, "
                        "or a torchvision weight name found in the local torch cache")
    p.add_argument("--epochs", type=arg(at_least("epochs", 1)), default=DEFAULTS.epochs,
                   help="passes over the train split")
    p.add_argument("--resolution", type=arg(train_resolution), default=DEFAULTS.resolution,
                   help="training input size in pixels")
    p.add_argument("--batch-size", type=arg(check_batch_size), default=DEFAULTS.batch_size, help="training batch size")
    p.add_argument("--lr", type=arg(check_lr, float), default=None,
                   help="initial Adam learning rate (default: the dataset's)")
    p.add_argument("--label-smoothing", type=arg(check_label_smoothing, float), default=None,
                   help="default: the dataset's")
    p.add_argument("--engine", choices=ENGINES, default=DEFAULTS.engine,
                   help="auto (default): the memory-lean engine in the mode that keeps least for the norm "
                        "(recompute for gn / bn, exact for bn-frozen); pytorch: stock autograd; tinytl: exact; "
                        "tinytl-recompute: recompute")
    p.add_argument("--frozen-bits", type=arg(check_frozen_bits), default=None,
                   help="quantize frozen weights (needs --engine tinytl)")
    p.add_argument("--no-lite-residual", dest="lite_residual", action="store_false",
                   help="build the backbone without lite residual branches")
    p.add_argument("--norm", choices=NORMS, default=DEFAULTS.norm,
                   help="normalisation layers: gn (GroupNorm + weight standardization), bn, or bn-frozen")
    p.add_argument("--seed", type=arg(check_seed), default=DEFAULTS.seed,
                   help="data split, batch order and initialisation")
    p.add_argument("--max-steps", type=arg(at_least("max steps", 1)), default=None,
                   help="stop after this many optimisation steps")
    p.add_argument("--store", default=None, help="run store file (default: $TINYTL_HOME/runs.sqlite or the "
                                                 "user data folder)")
    p.add_argument("--no-store", action="store_true", help="do not record the run")
    p.add_argument("--threads", type=arg(check_threads), default=None,
                   help="CPU threads for torch (default: torch's; use 1 on a busy shared machine)")
    p.add_argument("--subnet", default=None, metavar="JSON",
                   help="with --backbone supernet: fine-tune this sub-net, extracted from the adapted super-net")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from tinytl.train.runner import execute_run, prepare_run
    from tinytl.train.store import RunStore

    settings = FinetuneSettings(
        backbone=args.backbone, policy=args.policy, dataset=args.dataset, data_root=args.data_root,
        weights=args.weights, epochs=args.epochs, resolution=args.resolution, batch_size=args.batch_size,
        lr=args.lr, label_smoothing=args.label_smoothing, engine=args.engine, frozen_bits=args.frozen_bits,
        lite_residual=args.lite_residual, norm=args.norm, seed=args.seed, max_steps=args.max_steps,
        subnet=args.subnet)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    store = None if args.no_store else RunStore(args.store)
    prepared = prepare_run(settings)
    with tqdm(total=prepared.total_steps, file=sys.stderr, unit="step", desc=f"finetune {prepared.settings.policy}",
              leave=False) as bar:
        def progress(m: StepMetrics) -> None:
            bar.update(m.step - bar.n)
            bar.set_postfix(loss=f"{m.loss:.3f}", refresh=False)

        summary = execute_run(prepared, store, progress=progress)
    if args.json:
        print_json(summary)
        return 0
    for m in summary["history"]:
        print(f"epoch {m['epoch']}: train loss {m['train_loss']:.3f} acc {m['train_accuracy']:.3f} | "
              f"test loss {m['test_loss']:.3f} acc {m['test_accuracy']:.3f} | {m['seconds']:.1f}s")
    peak = summary["measured_peak_bytes"]
    print(f"run {summary['run_id']} {summary['status']}: {prepared.settings.policy} on {prepared.settings.dataset} "
          f"({summary['weights']}), test accuracy {summary['final_accuracy']:.4f}, "
          f"{summary['train_seconds']:.1f}s training")
    stock = summary["predicted_memory_mb_by_view"].get("pytorch")
    print(f"memory: measured peak {peak / 1e6:.1f} MB on {prepared.settings.engine}, saved activations "
          f"{summary['saved_activation_bytes'] / 1e6:.1f} MB (one step, batch {prepared.settings.batch_size}); "
          f"predicted (paper view) {summary['predicted_memory_mb']:.1f} MB"
          + (f"; stock PyTorch would take {stock:.1f} MB (pytorch view)" if stock is not None else ""))
    return 0

