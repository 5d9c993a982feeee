"""`pretrain`: rebuild the shipped checkpoint (proxylessnas_mobile on the procedural glyph source task)."""

from __future__ import annotations

import argparse

from tinytl.cli.common import print_json
from tinytl.validation import (arg, arg_list, at_least, check_batch_size, check_lr, check_seed, check_threads,
                               train_resolution)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from tinytl.data.glyphs import IMAGE_SIZE, MAX_GLYPH_CLASSES

    p = sub.add_parser("pretrain", help="pretrain the shipped checkpoint on procedural glyphs (slow: CPU minutes)",
                       description=__doc__)
    p.add_argument("--out", default=None, help="checkpoint file to write (default: proxylessnas_mobile_glyphs.pt in "
                                               "the user data folder, $TINYTL_HOME or ~/.local/share/tinytl)")
    p.add_argument("--epochs", type=arg(at_least("epochs", 1)), default=1, help="passes over the rendered images")
    p.add_argument("--resolution", type=arg(train_resolution), default=64, help="input size in pixels")
    p.add_argument("--batch-size", type=arg(check_batch_size), default=32, help="training batch size")
    p.add_argument("--lr", type=arg(check_lr, float), default=1e-3, help="Adam learning rate (cosine schedule)")
    p.add_argument("--seed", type=arg(check_seed), default=0, help="renderings and batch order")
    p.add_argument("--threads", type=arg(check_threads), default=1, help="torch threads")
    p.add_argument("--init", default=None, help="continue from this checkpoint (a later stage) instead of scratch")
    p.add_argument("--classes", type=arg(at_least("glyph classes", 2, MAX_GLYPH_CLASSES)), default=26,
                   help="source classes: letters (upper case, then lower case), past 52 procedural stroke figures")
    p.add_argument("--per-class", type=arg(at_least("renderings per class", 1)), default=1500,
                   help="training renderings per class (100 test renderings)")
    p.add_argument("--low-res", type=arg_list(at_least("low-res size", 1, IMAGE_SIZE)), default=None,
                   help="comma-separated sizes a rendering may be reduced to before scaling back up (default 16,32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinytl.paths import output_path
    from tinytl.storage import check_input_file
    from tinytl.train.pretrain import pretrain

    out = output_path(args.out, "proxylessnas_mobile_glyphs.pt", "checkpoint file")
    if args.init is not None:
        check_input_file(args.init, "checkpoint")  # before the renderings: a missing or FIFO file fails at once
    meta = pretrain(out, args.epochs, args.resolution, args.batch_size, args.lr, args.seed, args.threads,
                    args.init, args.classes, args.per_class, args.low_res)
    print_json({**meta, "stages": [{k: v for k, v in st.items() if k != "history"} for st in meta["stages"]]})
    return 0
