"""`search`: the sub-net and resolution with the best predicted accuracy under a training-memory budget."""

from __future__ import annotations

import argparse

from tinytl.cli.common import print_json
from tinytl.validation import (arg, arg_list, at_least, check_batch_size, check_classes, check_frozen_bits,
                               check_resolution, check_seed, positive_float)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="evolutionary sub-net search under a memory budget", description=__doc__)
    p.add_argument("--budget-mb", type=arg(positive_float("budget MB"), float), required=True,
                   help="training-memory budget (paper view, MB)")
    p.add_argument("--policy", default="lite+bias", help="full, last, norm+last, bias, lite or lite+bias")
    p.add_argument("--batch-size", type=arg(check_batch_size), default=8, help="training batch size (paper: 8)")
    p.add_argument("--classes", type=arg(check_classes), default=None,
                   help="classifier outputs (default: the classes of the predictor's pair data, 10 for digits)")
    p.add_argument("--resolutions", type=arg_list(check_resolution), default=None,
                   help="comma-separated resolutions to search (default: all the predictor knows)")
    p.add_argument("--frozen-bits", type=arg(check_frozen_bits), default=8, help="bits per frozen parameter (paper: 8)")
    p.add_argument("--predictor", default=None, help="predictor file (default: the shipped supernet_predictor.pt)")
    p.add_argument("--population", type=arg(at_least("population", 4)), default=100,
                   help="candidates kept per iteration")
    p.add_argument("--iterations", type=arg(at_least("iterations", 1)), default=500, help="evolution iterations")
    p.add_argument("--seed", type=arg(check_seed), default=0, help="the evolution's random choices")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinytl.search.evolution import SearchSettings, search_subnets
    from tinytl.search.predictor import load_predictor, quality_warning

    predictor = load_predictor(args.predictor)
    classes = args.classes if args.classes is not None else int(predictor.provenance.get("classes", 10))
    out = search_subnets(args.budget_mb, predictor, args.policy, args.batch_size, classes, args.resolutions,
                         args.frozen_bits, SearchSettings(args.population, args.iterations, seed=args.seed))
    if args.json:
        print_json(out)
        return 0
    print(f"{'memory MB':>10} {'pred. acc':>9} {'res':>4}  sub-net (d | e | ks)")
    for p in out["front"]:
        s = p["subnet"]
        print(f"{p['memory_mb']:10.2f} {p['predicted_accuracy']:9.4f} {p['resolution']:4d}  "
              f"{s['d']} | {''.join(map(str, s['e']))} | {''.join(map(str, s['ks']))}")
    best, pred, info = out["best"], out["predictor"], out["search"]
    print(f"\nbest under {out['budget_mb']:g} MB: predicted accuracy {best['predicted_accuracy']:.4f} at "
          f"{best['memory_mb']:.2f} MB, {best['resolution']} px (policy {out['policy']}, batch {out['batch_size']}, "
          f"{out['classes']} classes; smallest reachable {out['smallest_mb']:.2f} MB)")
    print(f"predictor held-out RMSE {pred.get('rmse', float('nan')):.4f} (predicting the mean: "
          f"{pred.get('mean_rmse', float('nan')):.4f}, each resolution's mean: "
          f"{pred.get('resolution_mean_rmse', float('nan')):.4f}), "
          f"Kendall tau {pred.get('kendall_tau', float('nan')):.3f}, within a resolution "
          f"{pred.get('within_resolution_kendall_tau', float('nan')):.3f}"
          + (f" ({pred['cross_validated']['within_resolution_kendall_tau']:.3f} cross-validated)"
             if "cross_validated" in pred else "")
          + (f" -- {warning}" if (warning := quality_warning(pred)) else ""))
    print(f"searched {info['evaluated']} distinct candidates in {info['seconds']:.2f} s")
    return 0
