"""`measure`: one real training step with stock PyTorch, stock with checkpointed blocks, and the engine.

Saved bytes, peak, gradients from one instrumented step each; step times (forward + backward) are the
median of --timing-steps rounds in which every contender steps once, interleaved, after a warm-up round.
"""

from __future__ import annotations

import argparse

from tinytl.cli.common import add_model_args, model_setting, print_json
from tinytl.engine import ENGINE_MODES
from tinytl.validation import check_batch_size
from tinytl.memory.measure import TORCH_DEVICES, measure_training_step
from tinytl.validation import arg, at_least, check_seed

MB = 1e6


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="measure one real training step: stock PyTorch vs the engine",
                       description=__doc__)
    add_model_args(p)
    p.add_argument("--engine-mode", choices=ENGINE_MODES, default="exact",
                   help="exact: keep the mathematical minimum; recompute: keep block inputs, re-run blocks")
    p.add_argument("--device", choices=TORCH_DEVICES, default="cpu", help="where the step runs")
    p.add_argument("--timing-steps", type=arg(at_least("timing steps", 0)), default=5,
                   help="timed rounds after the measured step: each contender once per round, median reported")
    p.add_argument("--no-checkpoint", action="store_true",
                   help="skip the contender with torch.utils.checkpoint around the blocks recompute re-runs")
    p.add_argument("--seed", type=arg(check_seed), default=0, help="seed for weights, inputs and dropout")
    p.add_argument("--layers", action="store_true", help="with --json: measured saved bytes per layer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_batch_size(args.batch_size)
    result = measure_training_step(model_setting(args), policy=args.policy, batch_size=args.batch_size,
                                   engine_mode=args.engine_mode, device=args.device, seed=args.seed,
                                   timing_steps=args.timing_steps, checkpoint=not args.no_checkpoint)
    out = result.to_dict(layers=args.layers)
    if args.json:
        print_json(out)
        return 0
    print(f"{out['backbone']} | policy {out['policy']} | {args.resolution}px | batch {args.batch_size} | "
          f"norm {args.norm} | engine {args.engine_mode} | {out['device']}")
    print(f"{'':10s} {'saved MB':>10s} {'predicted':>10s} {'peak MB':>10s} {'step s':>8s} {'x stock':>8s} "
          f"{'cpu s':>8s} {'x stock':>8s}")
    stock = out["pytorch"]
    for name in ("pytorch", "checkpoint", "engine"):
        if name not in out:
            continue
        r = out[name]
        pred = r["predicted_saved_activation_bytes"]
        pred_text = f"{pred / MB:10.2f}" if pred is not None else f"{'n/a':>10s}"
        print(f"{name:10s} {r['saved_activation_bytes'] / MB:10.2f} {pred_text} {r['peak_bytes'] / MB:10.2f} "
              f"{r['step_seconds']:8.3f} {r['step_seconds'] / stock['step_seconds']:8.2f} "
              f"{r['step_cpu_seconds']:8.3f} {r['step_cpu_seconds'] / stock['step_cpu_seconds']:8.2f}")
    print(f"max |grad difference| {out['max_grad_abs_diff']:.3g} (largest |grad| {out['grad_scale']:.3g})"
          + (f"; checkpoint {out['checkpoint_max_grad_abs_diff']:.3g}" if "checkpoint" in out else ""))
    return 0
