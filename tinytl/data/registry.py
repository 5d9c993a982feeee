"""Datasets by name: built-in offline sets (digits, glyphs) and torchvision / ImageFolder data under a root."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from tinytl.data.tensor_dataset import TensorImageDataset
from tinytl.data.transforms import test_transform, train_transform
from tinytl.errors import TinyTLError
from tinytl.validation import train_resolution


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's loader and its recipe settings (docs/PAPER.md, "Paper setting": per-dataset LR, label smoothing)."""

    name: str
    lr: float
    label_smoothing: float
    folder: str | None = None  # what must exist under --data-root; None: ships with the package
    crop_scale: tuple[float, float] = (0.22, 1.0)
    flip: bool = True
    jitter: float = 0.4


@dataclass
class DataBundle:
    """Train and test sets under the recipe's transforms, with the class names."""

    spec: DatasetSpec
    train: Dataset
    test: Dataset
    classes: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    # digits are 8x8 strokes: a mild crop, no flip (a mirrored 3 is no digit), a short run's higher LR
    DatasetSpec("digits", lr=3e-3, label_smoothing=0.1, crop_scale=(0.6, 1.0), flip=False, jitter=0.2),
    DatasetSpec("glyphs", lr=1e-3, label_smoothing=0.1, crop_scale=(0.8, 1.0), flip=False, jitter=0.2),
    DatasetSpec("flowers102", lr=2e-4, label_smoothing=0.7, folder="flowers-102"),
    DatasetSpec("oxford_pets", lr=0.5e-4, label_smoothing=0.7, folder="oxford-iiit-pet"),
    DatasetSpec("fgvc_aircraft", lr=16e-4, label_smoothing=0.7, folder="fgvc-aircraft-2013b"),
    DatasetSpec("food101", lr=2e-4, label_smoothing=0.1, folder="food-101"),
    DatasetSpec("stanford_cars", lr=8e-4, label_smoothing=0.7, folder="stanford_cars"),
    DatasetSpec("cifar10", lr=3e-4, label_smoothing=0.1, folder="cifar-10-batches-py"),
    DatasetSpec("cifar100", lr=3e-4, label_smoothing=0.1, folder="cifar-100-python"),
    DatasetSpec("imagefolder", lr=3e-4, label_smoothing=0.1, folder="train/ and test/ (or val/)"),
)}


def _torchvision_pair(name: str, root: str, train_tf: Callable, test_tf: Callable) -> tuple[Dataset, Dataset]:
    import torchvision.datasets as tvd

    splits = {"flowers102": (tvd.Flowers102, "split", "train", "test"),
              "oxford_pets": (tvd.OxfordIIITPet, "split", "trainval", "test"),
              "fgvc_aircraft": (tvd.FGVCAircraft, "split", "trainval", "test"),
              "food101": (tvd.Food101, "split", "train", "test"),
              "stanford_cars": (tvd.StanfordCars, "split", "train", "test"),
              "cifar10": (tvd.CIFAR10, "train", True, False),
              "cifar100": (tvd.CIFAR100, "train", True, False)}
    cls, key, train_value, test_value = splits[name]
    return (cls(root, **{key: train_value}, transform=train_tf, download=False),
            cls(root, **{key: test_value}, transform=test_tf, download=False))


def _readable_image(path: str):
    """torchvision's image loader, with a file that cannot be decoded named in one line (not a traceback)."""
    from torchvision.datasets.folder import default_loader

    try:
        return default_loader(path)
    except (OSError, SyntaxError, ValueError) as err:  # PIL: unidentified, truncated or malformed files
        raise TinyTLError(f"image {path} cannot be read: {err}") from None


def _check_images(folder: Dataset) -> None:
    """Open every image's header before training (no pixels decoded, a fraction of a millisecond each)."""
    from PIL import Image

    for path, _ in folder.samples:
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, SyntaxError, ValueError) as err:
            raise TinyTLError(f"image {path} cannot be read: {err}") from None


def _imagefolder_pair(root: str, train_tf: Callable, test_tf: Callable) -> tuple[Dataset, Dataset]:
    """train/ and test/ (or val/) class folders; test labels follow train's class indices, checked first."""
    from torchvision.datasets import ImageFolder

    base = Path(root)
    test_dir = next((base / d for d in ("test", "val") if (base / d).is_dir()), base / "test")
    train = ImageFolder(str(base / "train"), transform=train_tf, loader=_readable_image)
    test = ImageFolder(str(test_dir), transform=test_tf, loader=_readable_image)
    unknown = sorted(set(test.classes) - set(train.classes))
    if unknown:
        raise TinyTLError(f"{test_dir} has {len(unknown)} class(es) that {base / 'train'} lacks: "
                          f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}")
    if test.classes != train.classes:  # ImageFolder numbers each split's folders on its own: use train's numbers
        test.samples = [(path, train.class_to_idx[test.classes[label]]) for path, label in test.samples]
        test.targets = [label for _, label in test.samples]
        test.imgs, test.classes, test.class_to_idx = test.samples, train.classes, train.class_to_idx
    for split in (train, test):
        _check_images(split)
    return train, test


def _classes(dataset: Dataset) -> list[str]:
    classes = getattr(dataset, "classes", None)
    if classes:
        return list(classes)
    labels = getattr(dataset, "_labels", None)
    if labels is None:
        raise TinyTLError("cannot tell the number of classes of this dataset")
    return [str(c) for c in range(max(labels) + 1)]


def glyph_bundle(resolution: int, num_classes: int = 26, per_class: int = 1500, seed: int = 0,
                 low_res: tuple[int, ...] | None = None, test_per_class: int = 100) -> DataBundle:
    """The procedural source task: `per_class` training renderings (seed), `test_per_class` test ones (seed + 1)."""
    from tinytl.data.glyphs import LOW_RES_CHOICES, render_glyphs

    low_res = low_res or LOW_RES_CHOICES
    train = render_glyphs(num_classes, per_class, seed, low_res)
    test = render_glyphs(num_classes, test_per_class, seed + 1, low_res)
    return _in_memory_bundle(DATASETS["glyphs"], train, test, resolution)


def _in_memory_bundle(spec: DatasetSpec, train: TensorImageDataset, test: TensorImageDataset,
                      resolution: int) -> DataBundle:
    """A built-in split under the recipe's transforms for `spec`."""
    return DataBundle(spec, train.with_transform(train_transform(resolution, spec.crop_scale, spec.flip, spec.jitter)),
                      test.with_transform(test_transform(resolution)), train.classes)


def load_dataset(name: str, resolution: int, data_root: str | None = None, seed: int = 0) -> DataBundle:
    """Train/test sets of a named dataset with the recipe's transforms (never downloads anything)."""
    if name not in DATASETS:
        raise TinyTLError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    train_resolution(resolution)
    spec = DATASETS[name]
    if name == "glyphs":
        return glyph_bundle(resolution, seed=seed)
    if name == "digits":
        from tinytl.data.digits import load_digits_split

        return _in_memory_bundle(spec, *load_digits_split(seed), resolution)
    train_tf = train_transform(resolution, spec.crop_scale, spec.flip, spec.jitter)
    test_tf = test_transform(resolution)
    if not data_root:
        raise TinyTLError(f"dataset {name!r} is read from local files: pass --data-root DIR "
                          f"(expected DIR/{spec.folder})")
    if not Path(data_root).is_dir():
        raise TinyTLError(f"data root {data_root!r} is not a folder (expected it to hold {spec.folder})")
    try:
        if name == "imagefolder":
            train, test = _imagefolder_pair(data_root, train_tf, test_tf)
        else:
            train, test = _torchvision_pair(name, data_root, train_tf, test_tf)
    except (RuntimeError, FileNotFoundError, OSError) as err:
        expected = Path(data_root) / spec.folder if name != "imagefolder" else f"{data_root}/{spec.folder}"
        raise TinyTLError(f"dataset {name!r} not found: expected {expected} (this tool never downloads; "
                          f"{str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    return DataBundle(spec, train, test, _classes(train))
