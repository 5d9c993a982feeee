"""`collect`: [sub-net, resolution, accuracy] pairs by inherited weights (torchrun shards them), and optionally
the predictor trained on them."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

from tinytl.cli.common import print_json
from tinytl.validation import arg, arg_list, at_least, check_seed, check_threads, train_resolution


def add_parser(sub: argparse._SubParsersAction) -> None:
    from tinytl.train.adapt import VALIDATION_IMAGES
    from tinytl.train.supernet_pretrain import SEARCH_RESOLUTIONS

    p = sub.add_parser("collect", help="accuracy pairs for the predictor (torchrun --nproc-per-node N shards them)",
                       description=__doc__)
    p.add_argument("--pairs", type=arg(at_least("pairs", 1)), default=450,
                   help="how many sub-nets to score (the paper's count)")
    p.add_argument("--resolutions", type=arg_list(train_resolution), default=list(SEARCH_RESOLUTIONS),
                   help="comma-separated")
    p.add_argument("--seed", type=arg(check_seed), default=0,
                   help="fixes which sub-net and resolution each pair scores")
    p.add_argument("--adapted", default=None,
                   help="adapted super-net (default: the shipped supernet_digits_fa.pt)")
    p.add_argument("--dataset", default="digits", help="target dataset (the adaptation's)")
    p.add_argument("--val-images", type=arg(at_least("validation images", 1)), default=VALIDATION_IMAGES,
                   help="held-out validation slice of the train split each pair is scored on (as the adaptation)")
    p.add_argument("--threads", type=arg(check_threads), default=1, help="torch threads per process")
    p.add_argument("--out", default=None, help="pairs file (JSON, written by rank 0; default: supernet_pairs.json "
                                               "in the user data folder, $TINYTL_HOME or ~/.local/share/tinytl)")
    p.add_argument("--train-predictor", default=None, metavar="PATH",
                   help="also train the accuracy predictor on the pairs and save it here")
    p.add_argument("--resume", action="store_true",
                   help="keep the pairs an earlier run with the same settings wrote to --out, score only the rest")
    p.add_argument("--json", action="store_true", help="print the pairs file's content")
    p.set_defaults(func=run)


def _run_fields(earlier: dict, settings: dict) -> dict:
    """The earlier run's own provenance (command, processes, times), less the settings it shares with this run."""
    return {k: v for k, v in earlier["provenance"].items() if k not in settings}


def run(args: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist

    from tinytl.paths import output_path
    from tinytl.search.collect import Protocol, collect_pairs, init_distributed, pair_specs, reusable_pairs
    from tinytl.storage import check_output_path, read_json, write_text
    from tinytl.train.adapt import adaptation_seed, load_adapted

    out_path = output_path(args.out, "supernet_pairs.json", "pairs file")
    if args.train_predictor:
        check_output_path(args.train_predictor, "predictor file")
    torch.set_num_threads(args.threads)
    supernet = load_adapted(args.adapted)
    specs = pair_specs(args.pairs, args.resolutions, args.seed)
    protocol = Protocol(args.dataset, args.val_images, adaptation_seed(supernet))
    settings = {"dataset": args.dataset, "protocol": protocol.__dict__, "seed": args.seed,
                "resolutions": sorted(set(args.resolutions)), "supernet": getattr(supernet, "provenance", {})}
    earlier = read_json(out_path, "pairs file") if args.resume and out_path.is_file() else None
    done = reusable_pairs(earlier, specs, settings) if earlier is not None else {}
    rank, world = init_distributed()
    started, cpu_started = time.time(), time.process_time()
    try:
        pairs = collect_pairs(supernet, specs, protocol, done)
    finally:
        if dist.is_initialized():  # a clean shutdown: no rank exits while another still talks to it
            dist.barrier()
            dist.destroy_process_group()
    if rank != 0:
        return 0
    out = {"provenance": {"made_by": "python -m tinytl collect", "argv": sys.argv[1:], "world_size": world,
                          "classes": supernet.classifier[1].out_features, **settings,
                          "seconds": round(time.time() - started, 1),
                          "cpu_seconds_rank0": round(time.process_time() - cpu_started, 1),
                          "torch": torch.__version__, "machine": platform.machine(),
                          "created": time.strftime("%Y-%m-%d %H:%M:%S")},
           "pairs": pairs}
    if done:
        out["provenance"]["resumed"] = {"pairs_kept": len(done), "from": _run_fields(earlier, settings)}
    write_text(json.dumps(out, indent=1), out_path)
    if args.train_predictor:
        from tinytl.search.predictor import save_predictor, train_predictor

        predictor = train_predictor(pairs, seed=args.seed, cv_folds=5)
        save_predictor(predictor, args.train_predictor, {"pairs_file": out_path.name,
                                                         "classes": out["provenance"]["classes"],
                                                         "dataset": args.dataset, "pairs": len(pairs)})
        out["predictor"] = predictor.metrics
    if args.json:
        print_json(out)
    else:
        print(f"{len(pairs)} pairs from {world} process(es) in {out['provenance']['seconds']} s -> {out_path}")
        if "predictor" in out:
            m = out["predictor"]
            print(f"predictor -> {args.train_predictor}: held-out RMSE {m['rmse']:.4f} (mean: {m['mean_rmse']:.4f},"
                  f" each resolution's mean: {m['resolution_mean_rmse']:.4f}), Kendall tau {m['kendall_tau']:.3f},"
                  f" within a resolution {m['within_resolution_kendall_tau']:.3f} (5-fold cross-validated:"
                  f" {m['cross_validated']['within_resolution_kendall_tau']:.3f}; target {m['target']})")
    return 0
