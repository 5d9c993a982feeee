"""`supernet-pretrain` makes the elastic super-net (warm start, progressive shrinking); `adapt` fits it to a target."""

from __future__ import annotations

import argparse

from tinytl.cli.common import print_json
from tinytl.validation import (arg, arg_list, at_least, check_batch_size, check_lr, check_seed, check_threads,
                               train_resolution)


def add_parser(sub: argparse._SubParsersAction) -> None:
    add_pretrain_parser(sub)
    add_adapt_parser(sub)


PRETRAIN_DOC = ("`supernet-pretrain`: warm-start the super-net from the fixed ProxylessNAS-Mobile checkpoint, then "
                "train it once-for-all style (kernel, depth, expand phases; sandwich rule; elastic resolution).")


def add_pretrain_parser(sub: argparse._SubParsersAction) -> None:
    from tinytl.train.checkpoint import SHIPPED
    from tinytl.train.supernet_pretrain import PHASE_LRS, PHASE_STEPS, SEARCH_RESOLUTIONS

    p = sub.add_parser("supernet-pretrain", description=PRETRAIN_DOC,
                       help="train the elastic super-net on the glyph source task (slow: CPU hour)")
    p.add_argument("--out", default=None, help="super-net file to write (default: supernet.pt in the user data "
                                               "folder, $TINYTL_HOME or ~/.local/share/tinytl)")
    p.add_argument("--init", default=str(SHIPPED["proxylessnas_mobile"]),
                   help="fixed ProxylessNAS-Mobile checkpoint to warm-start from")
    p.add_argument("--resume", default=None, help="continue a super-net file this command wrote (no warm start)")
    p.add_argument("--steps", type=arg_list(at_least("phase steps", 0)), default=list(PHASE_STEPS),
                   help="steps of the largest, kernel, depth and expand phases")
    p.add_argument("--resolutions", type=arg_list(train_resolution), default=list(SEARCH_RESOLUTIONS),
                   help="search resolutions, one drawn per batch (one listed twice is drawn twice as "
                        "often)")
    p.add_argument("--batch-size", type=arg(check_batch_size), default=16, help="images per step")
    p.add_argument("--lrs", type=arg_list(check_lr, float), default=list(PHASE_LRS),
                   help="Adam peak learning rate per phase "
                                                                           "(cosine within each)")
    p.add_argument("--randoms", type=arg(at_least("random sub-nets", 0)), default=2,
                   help="random sub-nets per step besides largest and smallest")
    p.add_argument("--per-class", type=arg(at_least("renderings per class", 1)), default=300,
                   help="training renderings per source class")
    p.add_argument("--seed", type=arg(check_seed), default=6,
                   help="renderings (test: seed + 1), order and sampled sub-nets")
    p.add_argument("--threads", type=arg(check_threads), default=1, help="torch threads")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from tinytl.paths import output_path
    from tinytl.storage import check_input_file
    from tinytl.train.supernet_pretrain import pretrain_supernet

    torch.set_num_threads(args.threads)
    out = output_path(args.out, "supernet.pt", "super-net file")
    for given, what in ((args.init, "checkpoint"), (args.resume, "super-net file")):
        if given is not None:
            check_input_file(given, what)  # before the renderings: a missing or FIFO file fails at once
    meta = pretrain_supernet(out, args.init, args.steps, args.resolutions, args.batch_size, args.lrs, args.randoms,
                             per_class=args.per_class, seed=args.seed, resume=args.resume)
    print_json({k: v for k, v in meta.items() if k != "warm_start"})
    return 0


def add_adapt_parser(sub: argparse._SubParsersAction) -> None:
    from tinytl.train.adapt import ADAPT_DRAWS, ADAPT_POLICIES, VALIDATION_IMAGES

    p = sub.add_parser("adapt", description=ADAPT_DOC,
                       help="feature-extractor adaptation: fine-tune the super-net on the target, random sub-nets")
    p.add_argument("--supernet", default=None, help="super-net file (default: the shipped supernet.pt)")
    p.add_argument("--out", default=None, help="adaptation file to write (default: supernet_<dataset>_fa.pt in "
                                               "the user data folder)")
    p.add_argument("--dataset", default="digits", help="target dataset")
    p.add_argument("--policy", choices=ADAPT_POLICIES, default="lite+bias", help="what the adaptation trains")
    p.add_argument("--resolutions", type=arg_list(train_resolution), default=list(ADAPT_DRAWS),
                   help="one drawn per step, with a random sub-net (one listed twice is drawn twice as often)")
    p.add_argument("--epochs", type=arg(at_least("epochs", 1)), default=20, help="passes over the adaptation images")
    p.add_argument("--batch-size", type=arg(check_batch_size), default=32, help="images per step")
    p.add_argument("--lr", type=arg(check_lr, float), default=None,
                   help="default: the dataset's fine-tune learning rate")
    p.add_argument("--val-images", type=arg(at_least("validation images", 1)), default=VALIDATION_IMAGES,
                   help="train-split images held out for the accuracy pairs")
    p.add_argument("--seed", type=arg(check_seed), default=0, help="sub-nets, resolutions and batch order")
    p.add_argument("--threads", type=arg(check_threads), default=1, help="torch threads")
    p.set_defaults(func=run_adapt)


ADAPT_DOC = ("`adapt`: fine-tune the super-net on the target data with a random sub-net and resolution every step "
             "(lite+bias stores only the adapted tensors); every sub-net inherits the result.")


def run_adapt(args: argparse.Namespace) -> int:
    import torch

    from tinytl.paths import output_path
    from tinytl.train.adapt import adapt_to_file

    out = output_path(args.out, f"supernet_{args.dataset}_fa.pt", "adaptation file")
    torch.set_num_threads(args.threads)
    meta = adapt_to_file(out, args.supernet, args.dataset, args.resolutions, policy=args.policy, epochs=args.epochs,
                         batch_size=args.batch_size, lr=args.lr, val_images=args.val_images, seed=args.seed)
    print_json({k: v for k, v in meta.items() if k != "history"} | {"out": str(out)})
    return 0
