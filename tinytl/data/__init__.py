"""Datasets for fine-tuning: offline digits and procedural glyphs, torchvision sets and ImageFolder from disk."""

from tinytl.data.registry import DATASETS, DataBundle, DatasetSpec, load_dataset
from tinytl.data.tensor_dataset import TensorImageDataset

__all__ = ["DATASETS", "DataBundle", "DatasetSpec", "TensorImageDataset", "load_dataset"]
