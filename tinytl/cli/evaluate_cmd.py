"""`evaluate`: held-out test accuracy of one sub-net of the adapted super-net, with inherited weights (no training)."""

from __future__ import annotations

import argparse

from tinytl.cli.common import print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="test accuracy of a sub-net of the adapted super-net (inherited weights)",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backbone", choices=["supernet"], default="supernet")
    p.add_argument("--subnet", default=None, metavar="JSON",
                   help='{"d": [5 depths], "e": [20 expand ratios], "ks": [20 kernels]} (default: the largest)')
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--dataset", default="digits")
    p.add_argument("--adapted", default=None, help="adapted super-net (default: the shipped data/supernet_digits_fa.pt)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tinytl.errors import TinyTLError
    from tinytl.models.supernet import largest_subnet, parse_subnet
    from tinytl.search.space import check_resolutions
    from tinytl.train.adapt import load_adapted, subnet_test_accuracy

    config = parse_subnet(args.subnet) if args.subnet is not None else largest_subnet()
    (resolution,) = check_resolutions([args.resolution])
    if args.threads < 1:
        raise TinyTLError(f"threads must be >= 1, got {args.threads}")
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
