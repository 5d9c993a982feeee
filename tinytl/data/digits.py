"""scikit-learn's handwritten digits (1797 8x8 images, ships with the package): the no-download demo target."""

from __future__ import annotations

import numpy as np
import torch

from tinytl.data.tensor_dataset import TensorImageDataset

DIGITS_TEST_FRACTION = 0.25


def load_digits_split(seed: int = 0) -> tuple[TensorImageDataset, TensorImageDataset]:
    """Stratified fixed-seed train/test split; pixels 0..16 scaled to 0..255 (ink bright, background dark)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.from_numpy(np.rint(digits.images * (255 / 16)).astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = train_test_split(np.arange(len(labels)), test_size=DIGITS_TEST_FRACTION,
                                           random_state=seed, stratify=digits.target)
    classes = [str(c) for c in digits.target_names]
    train_idx, test_idx = torch.from_numpy(train_idx), torch.from_numpy(test_idx)
    return (TensorImageDataset(images[train_idx], labels[train_idx], classes),
            TensorImageDataset(images[test_idx], labels[test_idx], classes))
