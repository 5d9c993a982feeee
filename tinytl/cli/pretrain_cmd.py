"""`pretrain`: rebuild the shipped checkpoint (proxylessnas_mobile on the procedural glyph source task)."""

from __future__ import annotations

import argparse

from tinytl.cli.common import int_list, print_json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="pretrain the shipped checkpoint on procedural glyphs (slow: CPU minutes)",
                       description=__doc__)
    p.add_argument("--out", default=None, help="checkpoint file to write (default: proxylessnas_mobile_glyphs.pt in "
                                               "the user data folder, $TINYTL_HOME or ~/.local/share/tinytl)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--init", default=None, help="continue from this checkpoint (a later stage) instead of scratch")
    p.add_argument("--classes", type=int, default=26,
                   help="source classes: letters (upper case, then lower case), past 52 procedural stroke figures")
    p.add_argument("--per-class", type=int, default=1500, help="training renderings per class (100 test renderings)")
    p.add_argument("--low-res", type=int_list, default=None,
                   help="comma-separated sizes a rendering may be reduced to before scaling back up (default 16,32)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tinytl.paths import output_path
    from tinytl.train.pretrain import pretrain

    out = output_path(args.out, "proxylessnas_mobile_glyphs.pt", "checkpoint file")
    meta = pretrain(out, args.epochs, args.resolution, args.batch_size, args.lr, args.seed, args.threads,
                    args.init, args.classes, args.per_class, args.low_res)
    print_json({**meta, "stages": [{k: v for k, v in st.items() if k != "history"} for st in meta["stages"]]})
    return 0
