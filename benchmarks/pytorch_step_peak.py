"""The pytorch view's predicted step peak against one real CPU training step (forward, backward, Adam).

Predicted: `profile_memory(..., view="pytorch").total_bytes`, simulated on the meta device. Measured: a
real stock step on the CPU, after a warm-up step so Adam's state exists as in every later step, with
`tinytl.memory.measure.LivePeakTracker` following every live tensor storage (parameters, buffers, Adam
state and the batch from the start; everything an op returns until it dies).

    taskset -c 1 env OMP_NUM_THREADS=1 python -m benchmarks.pytorch_step_peak
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from tinytl.memory import profile_memory
from tinytl.memory.measure import LivePeakTracker
from tinytl.models import build_model
from tinytl.policies import apply_policy
from tinytl.models.setting import ModelSetting

MODELS = ("proxylessnas_mobile", "mobilenet_v3_large", "efficientnet_b0", "resnet50", "convnext_tiny")


def measured_peak(backbone: str, policy: str, resolution: int, batch: int, classes: int, norm: str) -> int:
    """Peak live bytes of the second real Adam step of a stock model on the CPU."""
    torch.manual_seed(0)
    model = build_model(backbone, classes, lite_residual=True, norm=norm).train()
    apply_policy(model, policy)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = torch.randn(batch, 3, resolution, resolution)
    y = torch.randint(0, classes, (batch,))
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    state = [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    with LivePeakTracker((*model.parameters(), *model.buffers(), *state, x, y)) as tracker:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    return tracker.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--policies", default="full,bias")
    parser.add_argument("--resolution", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--classes", type=int, default=102)
    parser.add_argument("--norm", default="gn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{args.resolution} px, batch {args.batch_size}, {args.classes} classes, norm {args.norm}, lite residuals\n")
    print("| model | policy | predicted peak MB | measured peak MB | diff | predict s |\n|---|---|---|---|---|---|")
    for backbone in args.models.split(","):
        for policy in args.policies.split(","):
            start = time.perf_counter()
            predicted = profile_memory(ModelSetting(backbone, args.resolution, args.classes, norm=args.norm),
                                       policy=policy, batch_size=args.batch_size, view="pytorch").total_bytes
            seconds = time.perf_counter() - start
            measured = measured_peak(backbone, policy, args.resolution, args.batch_size, args.classes, args.norm)
            print(f"| {backbone} | {policy} | {predicted / 1e6:.2f} | {measured / 1e6:.2f} | "
                  f"{predicted / measured - 1:+.3%} | {seconds:.1f} |", flush=True)


if __name__ == "__main__":
    main()
