"""How well a checkpoint's frozen features at several depths separate the digits: a linear-probe diagnostic.

Global-average-pools the outputs of a few blocks and of the final 1x1 conv on the test-time transform of
the digits train / held-out split, fits scikit-learn's logistic regression on the train features, and prints
held-out accuracy per depth. It bounds what `last` can reach (the final row) and shows how much better the
middle of the network is, i.e. how much room bias / lite residual fine-tuning has.
Run: python -m benchmarks.feature_probe [--weights PATH] [--resolution 64]
"""

from __future__ import annotations

import argparse

import torch
from sklearn.linear_model import LogisticRegression

from tinytl.data import load_dataset
from tinytl.data.transforms import test_transform
from tinytl.models import build_model
from tinytl.train.checkpoint import load_weights

BACKBONE = "proxylessnas_mobile"
PROBED_BLOCKS = (2, 6, 10, 14, 19)


@torch.no_grad()
def pooled_features(model: torch.nn.Module, images: torch.Tensor, resolution: int) -> dict[str, torch.Tensor]:
    """Pooled activations per probed depth for uint8 images (N x 1 x H x W), in batches of 128."""
    sites = {f"block {i}": model.blocks[i] for i in PROBED_BLOCKS} | {"final 1x1 conv": model.feature_mix}
    out: dict[str, list[torch.Tensor]] = {name: [] for name in sites}
    hooks = [module.register_forward_hook(lambda m, i, o, name=name: out[name].append(o.mean((2, 3))))
             for name, module in sites.items()]
    transform = test_transform(resolution)
    for start in range(0, len(images), 128):
        model(torch.stack([transform(image) for image in images[start:start + 128]]))
    for hook in hooks:
        hook.remove()
    return {name: torch.cat(chunks) for name, chunks in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", default="shipped", help="shipped, none, or a checkpoint file")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model(BACKBONE, 10)
    load_weights(model, args.weights, BACKBONE)
    model.eval()
    data = load_dataset("digits", args.resolution)
    train = pooled_features(model, data.train.images, args.resolution)
    test = pooled_features(model, data.test.images, args.resolution)
    print(f"weights {args.weights}, digits at {args.resolution} px\n")
    print("| depth | channels | held-out accuracy of a logistic-regression probe |\n|---|---|---|")
    for name in train:
        probe = LogisticRegression(max_iter=2000).fit(train[name].numpy(), data.train.labels.numpy())
        print(f"| {name} | {train[name].shape[1]} | {probe.score(test[name].numpy(), data.test.labels.numpy()):.3f} |")


if __name__ == "__main__":
    main()
