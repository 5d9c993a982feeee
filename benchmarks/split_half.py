"""Split-half reliability of pair scores inside one resolution: 0/1 accuracy vs soft scores.

    python -m benchmarks.split_half --resolution 64 --subnets 40

Random sub-nets of the shipped adaptation (inherited weights) are scored on the 300-image validation slice
the pairs use; the slice is split into two random halves and each score's ranking on one half is compared
with the other (Pearson, Kendall tau). A score whose halves disagree ranks sub-nets by evaluation noise.
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch
from scipy.stats import kendalltau, pearsonr
from torch.utils.data import DataLoader, Subset

from tinytl.data import load_dataset
from tinytl.models.supernet import sample_subnet
from tinytl.train.adapt import load_adapted, validation_split

SLICE = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--subnets", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = load_adapted(None).eval()
    data = load_dataset("digits", args.resolution, seed=0)
    _, val = validation_split(len(data.train), SLICE, 0)
    x, y = next(iter(DataLoader(Subset(data.train.with_transform(data.test.transform), val), SLICE)))
    rng = random.Random(5)
    scores = {"accuracy": [], "p(correct)": [], "-loss": []}
    for _ in range(args.subnets):
        net.set_active(sample_subnet(rng))
        with torch.no_grad():
            logits = net(x)
        p_true = logits.softmax(1)[torch.arange(len(y)), y]
        scores["accuracy"].append((logits.argmax(1) == y).float().numpy())
        scores["p(correct)"].append(p_true.numpy())
        scores["-loss"].append(torch.log(p_true + 1e-9).numpy())
    order = np.random.default_rng(0).permutation(SLICE)
    first, second = order[:SLICE // 2], order[SLICE // 2:]
    print(f"| score ({args.resolution} px, {args.subnets} sub-nets) | split-half Pearson | split-half tau | spread |")
    print("|---|---|---|---|")
    for name, rows in scores.items():
        s = np.array(rows)
        a, b = s[:, first].mean(1), s[:, second].mean(1)
        print(f"| {name} | {pearsonr(a, b)[0]:.3f} | {kendalltau(a, b)[0]:.3f} | {s.mean(1).std():.4f} |")
    acc, soft = np.array(scores["accuracy"]).mean(1), np.array(scores["p(correct)"]).mean(1)
    print(f"Kendall tau between accuracy and p(correct) on the whole slice: {kendalltau(acc, soft)[0]:.3f}")


if __name__ == "__main__":
    main()
