"""Datasets: the offline digits split, procedural glyphs, and clear errors for missing local data."""

import pytest
import torch
from PIL import Image

from tinytl.data import load_dataset
from tinytl.data.digits import load_digits_split
from tinytl.data.glyphs import LETTERS, render_glyphs
from tinytl.errors import TinyTLError


def test_digits_split_is_fixed_stratified_and_disjoint():
    train, test = load_digits_split(seed=0)
    again, _ = load_digits_split(seed=0)
    assert (len(train), len(test)) == (1347, 450)
    assert torch.equal(train.images, again.images) and torch.equal(train.labels, again.labels)
    assert torch.bincount(test.labels).tolist() == pytest.approx([45] * 10, abs=2)
    flat_train = {bytes(x.flatten().tolist()) for x in train.images}
    overlap = sum(bytes(x.flatten().tolist()) in flat_train for x in test.images)
    assert overlap <= 2  # a couple of digits are pixel-identical in the source data itself
    assert train.images.dtype == torch.uint8 and int(train.images.max()) == 255


def test_digits_bundle_transforms():
    data = load_dataset("digits", 40)
    x, y = data.train[0]
    assert x.shape == (3, 40, 40) and x.dtype == torch.float32 and 0 <= y < 10
    a, b = data.test[3][0], data.test[3][0]
    assert torch.equal(a, b)  # test transform is deterministic (resize size/0.875 + centre crop)
    assert data.num_classes == 10 and data.spec.flip is False


def test_glyphs_render_deterministic_letters_first():
    a = render_glyphs(num_classes=60, per_class=2, seed=3)
    b = render_glyphs(num_classes=60, per_class=2, seed=3)
    c = render_glyphs(num_classes=60, per_class=2, seed=4)
    assert a.images.shape == (120, 1, 32, 32)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.classes[:len(LETTERS)] == list(LETTERS) and len(a.classes) == 60
    assert a.labels.tolist() == [i // 2 for i in range(120)]
    assert all(img.max() > 100 for img in a.images)  # the ink is visible in every sample


def test_unknown_dataset():
    with pytest.raises(TinyTLError, match="valid: digits"):
        load_dataset("mnist", 32)


def test_local_dataset_needs_root():
    with pytest.raises(TinyTLError, match="--data-root"):
        load_dataset("flowers102", 32)


@pytest.mark.parametrize("name,folder", [("flowers102", "flowers-102"), ("cifar10", "cifar-10-batches-py"),
                                         ("oxford_pets", "oxford-iiit-pet"), ("imagefolder", "train/")])
def test_missing_local_dataset_names_expected_folder(tmp_path, name, folder):
    with pytest.raises(TinyTLError, match="not found") as err:
        load_dataset(name, 32, str(tmp_path))
    assert folder in str(err.value)


def test_data_root_not_a_folder(tmp_path):
    with pytest.raises(TinyTLError, match="not a folder"):
        load_dataset("cifar10", 32, str(tmp_path / "nope"))


def test_imagefolder(tmp_path):
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (20, 30), (200, 10, 10)).save(tmp_path / split / cls / "a.png")
    data = load_dataset("imagefolder", 32, str(tmp_path))
    assert data.classes == ["cat", "dog"] and len(data.train) == 2 and len(data.test) == 2
    assert data.test[0][0].shape == (3, 32, 32)


def _image_folders(root, splits: dict[str, tuple[str, ...]]) -> None:
    for split, classes in splits.items():
        for cls in classes:
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", (20, 30), (10 * len(cls), 10, 10)).save(root / split / cls / "a.png")


def test_imagefolder_test_split_with_a_class_train_lacks_is_refused_by_name(tmp_path):
    _image_folders(tmp_path, {"train": ("cat", "dog"), "test": ("cat", "cow")})
    with pytest.raises(TinyTLError, match=r"1 class\(es\) that .*train lacks: cow"):
        load_dataset("imagefolder", 32, str(tmp_path))


def test_imagefolder_test_labels_follow_the_train_numbering(tmp_path):
    _image_folders(tmp_path, {"train": ("ant", "bee", "cat"), "test": ("bee", "cat")})  # test alone: bee=0, cat=1
    data = load_dataset("imagefolder", 32, str(tmp_path))
    assert [data.classes[label] for _, label in data.test.samples] == ["bee", "cat"]
    assert [data.test[i][1] for i in range(2)] == [1, 2]


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40])
def test_imagefolder_corrupt_image_is_named_before_training(tmp_path, content):
    _image_folders(tmp_path, {"train": ("cat", "dog"), "test": ("cat", "dog")})
    bad = tmp_path / "train" / "dog" / "b.png"
    bad.write_bytes(content)
    with pytest.raises(TinyTLError, match=f"image {bad} cannot be read"):
        load_dataset("imagefolder", 32, str(tmp_path))


def test_imagefolder_image_damaged_past_its_header_is_named_when_read(tmp_path):
    _image_folders(tmp_path, {"train": ("cat", "dog"), "test": ("cat", "dog")})
    bad = tmp_path / "train" / "dog" / "b.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(bad, quality=95)
    bad.write_bytes(bad.read_bytes()[:-50])  # headers intact (verify passes), the end of the pixel data cut off
    data = load_dataset("imagefolder", 32, str(tmp_path))
    index = [path for path, _ in data.train.samples].index(str(bad))
    with pytest.raises(TinyTLError, match=f"image {bad} cannot be read"):
        data.train[index]
