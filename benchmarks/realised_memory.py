"""Realised memory (issues 4, 13): paper theory vs stock PyTorch vs checkpointing vs the engine, on real steps.

For each norm mode and policy: saved-activation bytes (the views' predictions and what autograd really
kept), peak live bytes during forward + backward, step time (forward + backward, median of interleaved
rounds), and the largest gradient difference from stock. `checkpoint` is stock PyTorch with
torch.utils.checkpoint(use_reentrant=False) on the blocks the recompute mode re-runs (no view predicts
it). Then the issue's Must-show checks, computed from the same run. Example (long on 2 shared cores):

    python -m benchmarks.realised_memory --resolution 224 --batch-size 8 --classes 102
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from tinytl.memory import analyze, cached_trace
from tinytl.memory.measure import compare_engines
from tinytl.models.layers import NORMS
from tinytl.policies import POLICIES
from tinytl.models.setting import ModelSetting

MB = 1e6


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MB:.2f}"


def measure_grid(backbone: str, policies: list[str], norms: list[str], resolution: int, batch_size: int,
                 classes: int, timing_steps: int) -> list[dict]:
    """One row per (norm, policy): paper view, stock and both engine modes, measured in one process."""
    rows = []
    for norm in norms:
        model = ModelSetting(backbone, resolution, classes, norm=norm)
        trace = cached_trace(model)
        for policy in policies:
            exact, recompute = compare_engines(model, policy=policy, batch_size=batch_size,
                                               engine_modes=("exact", "recompute"), timing_steps=timing_steps)
            paper = analyze(trace, policy, batch_size, view="paper").stored_activation_bytes
            row = {"norm": norm, "policy": policy, "paper_saved": paper, "stock": exact.pytorch.to_dict(),
                   "checkpoint": exact.checkpoint.to_dict(), "exact": exact.engine.to_dict(),
                   "recompute": recompute.engine.to_dict(),
                   "grad_diff": max(exact.max_grad_abs_diff, recompute.max_grad_abs_diff,
                                    exact.checkpoint_max_grad_abs_diff),
                   "grad_scale": exact.grad_scale}
            rows.append(row)
            print(_table_line(row), flush=True)
    return rows


TABLE_HEAD = ("| norm | policy | paper saved | stock pred / meas | checkpoint meas | exact pred / meas "
              "| recompute pred / meas | peak stock / checkpoint / exact / recompute "
              "| step s stock / checkpoint / exact / recompute | max grad diff (scale) |\n"
              "|---|---|---|---|---|---|---|---|---|---|")


def _table_line(r: dict) -> str:
    s, k, e, c = r["stock"], r["checkpoint"], r["exact"], r["recompute"]
    pair = lambda m: f"{_mb(m['predicted_saved_activation_bytes'])} / {_mb(m['saved_activation_bytes'])}"  # noqa: E731
    return (f"| {r['norm']} | {r['policy']} | {_mb(r['paper_saved'])} | {pair(s)} | {_mb(k['saved_activation_bytes'])} "
            f"| {pair(e)} | {pair(c)} | "
            f"{_mb(s['peak_bytes'])} / {_mb(k['peak_bytes'])} / {_mb(e['peak_bytes'])} / {_mb(c['peak_bytes'])} | "
            f"{s['step_seconds']:.2f} / {k['step_seconds']:.2f} / {e['step_seconds']:.2f} / "
            f"{c['step_seconds']:.2f} | {r['grad_diff']:.1e} ({r['grad_scale']:.1e}) |")


def must_show(rows: list[dict]) -> list[str]:
    """The issue's Must-show lines that this grid covers, each with its numbers and HOLDS / FAILS."""
    at = {(r["norm"], r["policy"]): r for r in rows}
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"- {'HOLDS' if ok else 'FAILS'}: {text}")

    for (norm, policy), r in sorted(at.items()):
        pred = [(k, r[k]["predicted_saved_activation_bytes"], r[k]["saved_activation_bytes"])
                for k in ("stock", "exact", "recompute")]
        worst = max(abs(p / m - 1) if p is not None and m else float("inf") for _, p, m in pred)
        check(worst <= 0.05, f"{norm} {policy}: views predict measured saved bytes within {worst:.2%}")
        check(r["grad_diff"] <= 1e-5 * max(r["grad_scale"], 1.0),
              f"{norm} {policy}: max grad diff {r['grad_diff']:.1e} at gradient scale {r['grad_scale']:.1e}")
    for policy in ("bias", "lite", "lite+bias"):
        r = at.get(("bn-frozen", policy))
        if r:
            ratio = r["exact"]["saved_activation_bytes"] / r["paper_saved"]
            check(ratio <= 1.05, f"bn-frozen {policy}: engine exact saves {ratio:.3f}x the paper view's stored bytes")
    for norm, mode, save_x, peak_x, step_x in (("bn-frozen", "exact", 50, 6, 1.0), ("gn", "recompute", 10, 4, 1.3)):
        r, full = at.get((norm, "bias")), at.get((norm, "full"))
        if r:
            ratio = r["stock"]["saved_activation_bytes"] / r[mode]["saved_activation_bytes"]
            check(ratio >= save_x, f"{norm} bias: stock saves {ratio:.1f}x more than engine {mode} (need >= {save_x}x)")
        if r and full:
            peak = full["stock"]["peak_bytes"] / r[mode]["peak_bytes"]
            check(peak >= peak_x,
                  f"{norm}: engine {mode} bias peak is {peak:.1f}x below stock full (need >= {peak_x}x)")
            step = r[mode]["step_seconds"] / full["stock"]["step_seconds"]
            check(step <= step_x, f"{norm}: engine {mode} bias step is {step:.2f}x stock full's (need <= {step_x}x)")
    for policy in ("bias", "lite+bias"):
        r = at.get(("gn", policy))
        if r:
            out.append(f"- gn {policy}: engine exact keeps {_mb(r['exact']['saved_activation_bytes'])} MB "
                       f"(its true minimum: normalized activations of GN inputs after the first trainable "
                       f"parameter) vs the paper view's {_mb(r['paper_saved'])} MB")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="proxylessnas_mobile")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--classes", type=int, default=102)
    p.add_argument("--policies", default=",".join(POLICIES))
    p.add_argument("--norms", default=",".join(NORMS))
    p.add_argument("--timing-steps", type=int, default=3, help="interleaved timing rounds (median reported)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    p.add_argument("--json-out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{args.backbone} {args.resolution}px batch {args.batch_size} {args.classes} classes; MB = 1e6 bytes, "
          f"whole batch; torch {torch.__version__}, {args.threads} thread(s)\n")
    print(TABLE_HEAD, flush=True)
    rows = measure_grid(args.backbone, args.policies.split(","), args.norms.split(","), args.resolution,
                        args.batch_size, args.classes, args.timing_steps)
    print("\nKey results:")
    print("\n".join(must_show(rows)))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
