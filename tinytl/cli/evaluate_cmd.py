"""`evaluate`: held-out test accuracy of one sub-net of the adapted super-net, with inherited weights (no training)."""

from __future__ import annotations

import argparse

from tinytl.cli.common import print_json
from tinytl.validation import arg, check_threads, train_resolution


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of a sub-net of the adapted super-net (inherited weights)",
                       description=__doc__)
    p.add_argument("--backbone", choices=["supernet"], default="supernet", help="network to evaluate")
    p.add_argument("--subnet", default=None, metavar="JSON",
                   help='{"d": [5 depths], "e": [20 expand ratios], "ks": [20 kernels]} (default: the largest)')
    p.add_argument("--resolution", type=arg(train_resolution), default=64, help="input size in pixels")
    p.add_argument("--dataset", default="digits", help="target dataset whose test split is scored")
    p.add_argument("--adapted", default=None,
                   help="adapted super-net (default: the shipped supernet_digits_fa.pt)")
    p.add_argument("--threads", type=arg(check_threads), default=1, help="torch threads")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tinytl.models.supernet import largest_subnet, parse_subnet
    from tinytl.train.adapt import load_adapted, subnet_test_accuracy

    config = parse_subnet(args.subnet) if args.subnet is not None else largest_subnet()
    resolution = args.resolution
    torch.set_num_threads(args.threads)
    supernet = load_adapted(args.adapted)
    out = subnet_test_accuracy(supernet, config, resolution, args.dataset)
    out["adaptation"] = supernet.provenance.get("adaptation", {}).get("policy")
    if args.json:
        print_json(out)
    else:
        print(f"test accuracy {out['accuracy']:.4f} on {out['test_images']} {args.dataset} images at {resolution} px "
              f"(inherited weights, {out['adaptation']} adaptation)")
    return 0
