"""Engine speed and memory against stock PyTorch and checkpointing, measured in one process.

Per setting, four contenders from the same weights and inputs: stock PyTorch, stock with
torch.utils.checkpoint(use_reentrant=False) on the blocks the recompute mode re-runs, and the engine's
exact and recompute modes. Memory and gradients from one instrumented step each; times are medians over
rounds in which every contender steps once (forward + backward), interleaved, after a warm-up round, as
wall time and as process CPU time. `--old-protocol` also times the way `measure` did before (each
contender alone, stock first, best of N steps with the Adam step), to show why the two disagreed.
Run: python -m benchmarks.engine_speed [--rounds 7 --settings proxyless-bn-frozen,proxyless-gn,mbv3,effnet]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from tinytl.engine import checkpoint_blocks, convert_model
from tinytl.memory.measure import apply_policy_copy, compare_engines
from tinytl.models import build_model
from tinytl.models.setting import ModelSetting

MB = 1e6
SETTINGS = {  # name: (backbone, norm, policy, resolution, batch)
    "proxyless-bn-frozen": ("proxylessnas_mobile", "bn-frozen", "bias", 224, 8),
    "proxyless-gn": ("proxylessnas_mobile", "gn", "bias", 224, 8),
    "mbv3": ("mobilenet_v3_large", "bn-frozen", "bias", 128, 8),
    "effnet": ("efficientnet_b0", "bn-frozen", "bias", 128, 8),
}
CONTENDERS = ("pytorch", "checkpoint", "exact", "recompute")


def run_setting(name: str, rounds: int) -> dict:
    """All four contenders of one setting: the measure module's RunMeasurement dicts and gradient differences."""
    backbone, norm, policy, resolution, batch = SETTINGS[name]
    exact, recompute = compare_engines(ModelSetting(backbone, resolution, 102, norm=norm), policy=policy,
                                       batch_size=batch, engine_modes=("exact", "recompute"), timing_steps=rounds)
    return {"setting": name, "backbone": backbone, "norm": norm, "policy": policy, "resolution": resolution,
            "batch": batch, "pytorch": exact.pytorch.to_dict(), "checkpoint": exact.checkpoint.to_dict(),
            "exact": exact.engine.to_dict(), "recompute": recompute.engine.to_dict(),
            "grad_diff": {"checkpoint": exact.checkpoint_max_grad_abs_diff, "exact": exact.max_grad_abs_diff,
                          "recompute": recompute.max_grad_abs_diff}, "grad_scale": exact.grad_scale}


def old_protocol(name: str, steps: int) -> dict[str, float]:
    """the old `measure` timing: contenders one after another (stock first), best of `steps` with Adam."""
    backbone, norm, policy, resolution, batch = SETTINGS[name]
    torch.manual_seed(0)
    base = build_model(backbone, 102, norm=norm)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 102, (batch,))
    best = {}
    for contender in CONTENDERS:
        model = apply_policy_copy(base, policy, torch.device("cpu"))
        if contender == "checkpoint":
            checkpoint_blocks(model)
        elif contender != "pytorch":
            convert_model(model, contender)
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        times = []
        for _ in range(steps + 1):  # the first step stands in for the old instrumented one
            start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            times.append(time.perf_counter() - start)
        best[contender] = min(times[1:])
        del model, opt
    return best


def _cell(r: dict, key: str, contender: str) -> str:
    return f"{r[contender][key]:.3f} ({r[contender][key] / r['pytorch'][key]:.2f}x)"


def print_table(rows: list[dict]) -> None:
    print("| setting | contender | saved MB predicted / measured | peak MB | step s wall (x stock) "
          "| step s CPU (x stock) | max grad diff |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for c in CONTENDERS:
            m = r[c]
            pred = m["predicted_saved_activation_bytes"]
            pred_text = "n/a" if pred is None else f"{pred / MB:.2f}"
            diff = "—" if c == "pytorch" else f"{r['grad_diff'][c]:.1e}"
            print(f"| {r['backbone']} {r['norm']} {r['policy']} {r['resolution']}px b{r['batch']} | {c} "
                  f"| {pred_text} / {m['saved_activation_bytes'] / MB:.2f} | {m['peak_bytes'] / MB:.1f} "
                  f"| {_cell(r, 'step_seconds', c)} | {_cell(r, 'step_cpu_seconds', c)} | {diff} |")


def must_show(rows: list[dict]) -> list[str]:
    """The issue's Must-show lines these rows cover, with their numbers and HOLDS / FAILS."""
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"- {'HOLDS' if ok else 'FAILS'}: {text}")

    at = {r["setting"]: r for r in rows}
    for r in rows:
        ok = all(r["grad_diff"][c] <= 1e-5 * max(r["grad_scale"], 1.0) for c in CONTENDERS[1:])
        check(ok, f"{r['setting']}: gradients of checkpoint / exact / recompute equal stock's (max diff "
                  f"{max(r['grad_diff'].values()):.1e} at scale {r['grad_scale']:.1e})")
    if "proxyless-bn-frozen" in at:
        r = at["proxyless-bn-frozen"]
        for key, label in (("step_seconds", "wall"), ("step_cpu_seconds", "CPU")):
            ratio = r["exact"][key] / r["pytorch"][key]
            check(ratio <= 1.0, f"proxylessnas bn-frozen bias 224px b8: exact step {ratio:.2f}x stock's ({label})")
    if "proxyless-gn" in at:
        r = at["proxyless-gn"]
        for key, label in (("step_seconds", "wall"), ("step_cpu_seconds", "CPU")):
            ratio = r["recompute"][key] / r["checkpoint"][key]
            check(ratio <= 1.0, f"gn bias: recompute step {ratio:.2f}x checkpointing's ({label})")
        peak = r["checkpoint"]["peak_bytes"] / r["recompute"]["peak_bytes"]
        check(peak >= 1.2, f"gn bias: checkpointing's peak {peak:.2f}x the engine's (recompute; need >= 1.2x)")
    for name in ("mbv3", "effnet"):
        if name in at:
            r = at[name]
            ratio = r["pytorch"]["saved_activation_bytes"] / r["recompute"]["saved_activation_bytes"]
            check(ratio >= 10, f"{r['backbone']} bn-frozen bias 128px: recompute keeps {ratio:.1f}x less than stock")
            for mode in ("exact", "recompute"):
                pred, meas = r[mode]["predicted_saved_activation_bytes"], r[mode]["saved_activation_bytes"]
                check(pred == meas, f"{r['backbone']} {mode}: engine view {pred} bytes, measured {meas}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--rounds", type=int, default=7, help="timed interleaved rounds (median reported)")
    p.add_argument("--old-protocol", type=int, default=0, metavar="STEPS",
                   help="also time each contender alone, stock first, best of STEPS with Adam (0: skip)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.rounds} interleaved rounds; MB = 1e6 bytes\n")
    rows = [run_setting(name, args.rounds) for name in args.settings.split(",")]
    print_table(rows)
    if args.old_protocol:
        print("\nOld protocol (each contender alone, stock first, best of "
              f"{args.old_protocol} steps incl. Adam), wall s (x stock):\n")
        for name in args.settings.split(","):
            best = old_protocol(name, args.old_protocol)
            print(f"- {name}: " + ", ".join(f"{c} {best[c]:.3f} ({best[c] / best['pytorch']:.2f}x)"
                                          for c in CONTENDERS))
    print("\nKey results:")
    print("\n".join(must_show(rows)))


if __name__ == "__main__":
    main()
