"""`collect`: measure [sub-net, resolution, accuracy] pairs (torchrun shards them), optionally train the predictor."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from tinytl.cli.common import int_list, print_json

DEFAULT_RESOLUTIONS = [32, 40, 48, 56]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="accuracy pairs for the predictor (torchrun --nproc-per-node N shards them)",
                       description=__doc__)
    p.add_argument("--pairs", type=int, default=60, help="how many sub-nets to measure (paper: 450)")
    p.add_argument("--resolutions", type=int_list, default=DEFAULT_RESOLUTIONS, help="comma-separated")
    p.add_argument("--seed", type=int, default=0, help="fixes the sub-nets, splits and each pair's training")
    p.add_argument("--adapted", default=None,
                   help="adapted super-net (default data/supernet_digits_fa.pt); 'none': --supernet as is")
    p.add_argument("--supernet", default=None, help="super-net checkpoint for --adapted none (default shipped)")
    p.add_argument("--dataset", default="digits")
    p.add_argument("--finetune-fraction", type=float, default=0.2, help="share of the train split each pair tunes on")
    p.add_argument("--val-images", type=int, default=450, help="validation images scored per pair")
    p.add_argument("--epochs", type=int, default=1, help="fine-tune epochs per pair")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--out", default="data/supernet_pairs.json", help="pairs file (JSON, written by rank 0)")
    p.add_argument("--train-predictor", default=None, metavar="PATH",
                   help="also train the accuracy predictor on the pairs and save it here")
    p.add_argument("--json", action="store_true", help="print the pairs file's content")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tinytl.data import load_dataset
    from tinytl.errors import TinyTLError
    from tinytl.models.supernet import load_supernet
    from tinytl.search.adapt import load_adapted
    from tinytl.search.collect import Protocol, collect_pairs, init_distributed, pair_specs

    if args.pairs < 1 or not 0 < args.finetune_fraction <= 1 or args.val_images < 1 or args.epochs < 1:
        raise TinyTLError("pairs, val-images and epochs must be >= 1 and finetune-fraction in (0, 1]")
    torch.set_num_threads(args.threads)
    rank, world = init_distributed()
    classes = load_dataset(args.dataset, 32).num_classes
    if args.adapted == "none":
        supernet = load_supernet(args.supernet, classes)
    else:
        supernet = load_adapted(args.adapted)
    specs = pair_specs(args.pairs, args.resolutions, args.seed)
    protocol = Protocol(args.dataset, args.finetune_fraction, args.val_images, epochs=args.epochs, seed=args.seed)
    started = time.time()
    pairs = collect_pairs(supernet, specs, protocol, log=sys.stderr)
    if rank != 0:
        return 0
    out = {"provenance": {"made_by": "python -m tinytl collect", "argv": sys.argv[1:], "world_size": world,
                          "dataset": args.dataset, "classes": classes, "protocol": protocol.__dict__,
                          "policy": "lite+bias", "supernet": getattr(supernet, "provenance", {}),
                          "seconds": round(time.time() - started, 1), "torch": torch.__version__,
                          "machine": platform.machine(), "created": time.strftime("%Y-%m-%d %H:%M:%S")},
           "pairs": pairs}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    if args.train_predictor:
        from tinytl.search.predictor import save_predictor, train_predictor

        predictor = train_predictor(pairs, seed=args.seed)
        save_predictor(predictor, args.train_predictor, {"pairs_file": str(args.out), "classes": classes,
                                                         "dataset": args.dataset, "pairs": len(pairs)})
        out["predictor"] = predictor.metrics
    if args.json:
        print_json(out)
    else:
        print(f"{len(pairs)} pairs from {world} process(es) in {out['provenance']['seconds']} s -> {args.out}")
        if "predictor" in out:
            m = out["predictor"]
            print(f"predictor -> {args.train_predictor}: held-out RMSE {m['rmse']:.4f} (mean: {m['mean_rmse']:.4f},"
                  f" each resolution's mean: {m['resolution_mean_rmse']:.4f}), Kendall tau {m['kendall_tau']:.3f}")
    return 0
