"""`memory`: per-layer training memory of a setting under a view (analysis only, nothing allocated)."""

from __future__ import annotations

import argparse
import json

from tinytl.cli.common import add_model_args, model_setting, print_json
from tinytl.engine import ENGINE_MODES
from tinytl.memory import VIEWS, get_view, profile_memory
from tinytl.validation import arg, check_frozen_bits

TABLE_COLUMNS = ["name", "type", "output_shape", "params", "trainable_params", "stored_bytes", "tmp_bytes",
                 "live_bytes"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memory", help="training memory per layer (paper / pytorch / engine views)",
                       description=__doc__)
    add_model_args(p)
    p.add_argument("--frozen-bits", type=arg(check_frozen_bits), default=8,
                   help="bits per frozen parameter (1..32, paper: 8)")
    p.add_argument("--view", choices=list(VIEWS), default="paper", help="which memory model prices the layers")
    p.add_argument("--engine-mode", choices=ENGINE_MODES, default="exact",
                   help="with --view engine: exact (store the minimum) or recompute (keep block inputs only)")
    p.add_argument("--flops", action="store_true", help="also count MACs with fvcore (builds a real batch-1 model)")
    p.add_argument("--list-backbones", action="store_true", help="print every backbone name, one a line, and exit")
    p.add_argument("--layers", action="store_true", help="also print the per-layer table (after the summary)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_backbones:
        from tinytl.models import list_backbones

        print("\n".join(list_backbones()))
        return 0
    model = model_setting(args)
    report = profile_memory(model, policy=args.policy, batch_size=args.batch_size, frozen_bits=args.frozen_bits,
                            view=args.view, **get_view(args.view).pick_options(mode=args.engine_mode))
    out = report.to_dict()
    if args.subnet is not None:
        out["subnet"] = json.loads(args.subnet)
    if args.flops:
        from tinytl.memory.flops import count_macs
        out["macs"] = count_macs(model)
    if args.json:
        print_json(out)
        return 0
    print(f"{report.view} view | {report.backbone} | policy {report.policy} | {report.resolution}px | "
          f"batch {report.batch_size} | {report.num_classes} classes | norm {report.norm}")
    print(f"total {report.total_mb:.2f} MB = activations {report.activation_mb:.2f} MB "
          f"(peak at {report.peak_layer}) + parameters {report.param_mb:.2f} MB "
          f"({report.num_trainable_params:,} of {report.num_params:,} trainable; frozen at {report.frozen_bits} bits)"
          + (f" + gradients, optimizer state, buffers {report.state_bytes / 1e6:.2f} MB" if report.state_bytes else ""))
    print(f"stored for backward: {report.stored_activation_bytes / 1e6:.2f} MB")
    if args.flops:
        print(f"MACs: {out['macs'] / 1e6:.1f} M")
    if args.layers:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200):
            print("\n" + report.to_frame()[TABLE_COLUMNS].to_string(index=False))
    else:
        print(f"({len(report.layers)} layers: --layers prints the per-layer table)")
    return 0
