"""The recipe's image transforms: train-time augmentation, and resize to size/0.875 + centre crop at test."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEST_CROP_RATIO = 0.875


def _normalize() -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def train_transform(resolution: int, crop_scale: tuple[float, float] = (0.22, 1.0), flip: bool = True,
                    jitter: float = 0.4) -> v2.Compose:
    """Random resized crop, optional horizontal flip, colour jitter (docs/PAPER.md, "Paper setting")."""
    steps: list = [v2.ToImage(), v2.RGB(), v2.RandomResizedCrop(resolution, scale=crop_scale, antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    if jitter:
        steps.append(v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter))
    return v2.Compose(steps + _normalize())


def test_transform(resolution: int) -> v2.Compose:
    """Resize the short side to resolution / 0.875, then centre-crop to the resolution."""
    return v2.Compose([v2.ToImage(), v2.RGB(), v2.Resize(round(resolution / TEST_CROP_RATIO), antialias=True),
                       v2.CenterCrop(resolution)] + _normalize())
