"""The recorded pytorch view against stock autograd, on every torchvision classification model.

For each model of `torchvision.models.list_models(module=torchvision.models)` at the smallest resolution
it accepts (of RESOLUTIONS), as torchvision ships it (BatchNorm, no lite residuals), batch 2, policies
full / last / norm+last / bias: the view's stored bytes (recorded on the meta device) against what a real
CPU forward saves (`tinytl.memory.measure.count_saved_activations`, saved-tensor hooks). One JSON line per
model goes to --out as it finishes; the Markdown table is printed at the end.

    taskset -c 1 env OMP_NUM_THREADS=1 python -m benchmarks.pytorch_view_exact --out /tmp/exact.jsonl
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import torch
import torchvision.models as tvm

from tinytl.errors import TinyTLError
from tinytl.memory import analyze, trace_backbone
from tinytl.memory.measure import count_saved_activations
from tinytl.models import build_model
from tinytl.policies import apply_policy
from tinytl.models.setting import ModelSetting

RESOLUTIONS = (32, 48, 64, 75, 96, 128, 160, 224)
POLICIES = ("full", "last", "norm+last", "bias")
BATCH = 2
CLASSES = 10


def smallest_trace(name: str):
    """The walk at the smallest resolution the model accepts."""
    last = None
    for res in RESOLUTIONS:
        try:
            return trace_backbone(ModelSetting(name, res, CLASSES, lite_residual=False, norm="bn"))
        except TinyTLError as err:
            last = err
    raise last


def check_model(name: str) -> dict:
    """Predicted vs measured saved bytes for every policy of one model."""
    start = time.perf_counter()
    trace = smallest_trace(name)
    res = trace.resolution
    predicted = {}
    for policy in POLICIES:
        t = time.perf_counter()
        predicted[policy] = (analyze(trace, policy, BATCH, view="pytorch").stored_activation_bytes,
                             time.perf_counter() - t)
    torch.manual_seed(0)
    model = build_model(name, CLASSES, lite_residual=False, norm="bn").train()
    x = torch.randn(BATCH, 3, res, res)
    rows = {}
    for policy in POLICIES:
        apply_policy(model, policy)
        measured = count_saved_activations(model, x).total_bytes
        pred, seconds = predicted[policy]
        rows[policy] = {"predicted": pred, "measured": measured, "record_s": round(seconds, 2)}
    return {"model": name, "resolution": res, "policies": rows, "seconds": round(time.perf_counter() - start, 1)}


def ratio(row: dict) -> float:
    return row["predicted"] / row["measured"] - 1 if row["measured"] else (0.0 if not row["predicted"] else 1.0)


def table(results: list[dict]) -> str:
    lines = ["| model | px | " + " | ".join(f"{p} predicted / measured MB (diff)" for p in POLICIES) + " |",
             "|---|---|" + "---|" * len(POLICIES)]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | - | error: {r['error']} |" + " |" * (len(POLICIES) - 1))
            continue
        cells = [f"{c['predicted'] / 1e6:.3f} / {c['measured'] / 1e6:.3f} ({ratio(c):+.2%})"
                 for c in (r["policies"][p] for p in POLICIES)]
        lines.append(f"| {r['model']} | {r['resolution']} | " + " | ".join(cells) + " |")
    pairs = [c for r in results if "error" not in r for c in r["policies"].values()]
    within = sum(abs(ratio(c)) <= 0.01 for c in pairs)
    exact = sum(c["predicted"] == c["measured"] for c in pairs)
    lines.append(f"\n{len(results)} models, {len(pairs)} (model, policy) pairs: {exact} exact to the byte, "
                 f"{within} within 1%, worst {max((abs(ratio(c)) for c in pairs), default=0):.3%}; "
                 f"{sum('error' in r for r in results)} errors")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/pytorch_view_exact.jsonl")
    parser.add_argument("--models", default="", help="comma-separated subset (default: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = [n for n in args.models.split(",") if n] or tvm.list_models(module=tvm)
    results = []
    with open(args.out, "w") as log:
        for name in names:
            try:
                result = check_model(name)
            except (TinyTLError, RuntimeError) as err:
                result = {"model": name, "error": str(err).splitlines()[0][:120]}
            results.append(result)
            log.write(json.dumps(result) + "\n")
            log.flush()
            gc.collect()
    print(table(results))


if __name__ == "__main__":
    main()
