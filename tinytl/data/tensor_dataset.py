"""An in-memory image dataset (uint8 tensors) with a transform: the shape every built-in dataset takes."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.utils.data import Dataset


class TensorImageDataset(Dataset):
    """Images as a uint8 tensor N x C x H x W and integer labels; `transform` maps one image to a float tensor."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes: list[str],
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or len(images) != len(labels):
            raise ValueError("images must be uint8 N x C x H x W with one label each")
        self.images, self.labels, self.classes, self.transform = images, labels.long(), classes, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        return (self.transform(image) if self.transform else image), int(self.labels[index])

    def with_transform(self, transform: Callable[[torch.Tensor], torch.Tensor]) -> TensorImageDataset:
        """The same images and labels under another transform (no copy)."""
        return TensorImageDataset(self.images, self.labels, self.classes, transform)
