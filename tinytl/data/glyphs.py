"""Procedural glyphs: the offline *source* task the shipped checkpoint is pretrained on.

Classes are Latin letters drawn with Pillow's bundled font (upper case first; by default the 26 upper-case
ones), then, past 52 classes, random stroke figures (quadratic Bezier strokes in a fixed per-class layout).
Each sample is randomly warped, thickened and often rendered at low resolution, so the network learns
strokes and edges. No digit is ever drawn."""

from __future__ import annotations

import math
import string

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from tinytl.data.tensor_dataset import TensorImageDataset
from tinytl.errors import TinyTLError
from tinytl.validation import check_int

CANVAS = 64
IMAGE_SIZE = 32
LETTERS = string.ascii_uppercase + string.ascii_lowercase
LOW_RES_CHOICES = (16, 32)
MAX_GLYPH_CLASSES = 1000
MAX_RENDERINGS = 1_000_000


def _stroke_classes(count: int, seed: int) -> list[np.ndarray]:
    """Per class, 2-4 strokes of 3 control points in the unit square (fixed by the seed)."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0.15, 0.85, size=(rng.integers(2, 5), 3, 2)) for _ in range(count)]


def _bezier(points: np.ndarray, steps: int = 16) -> list[tuple[float, float]]:
    t = np.linspace(0, 1, steps)[:, None]
    curve = (1 - t) ** 2 * points[0] + 2 * (1 - t) * t * points[1] + t ** 2 * points[2]
    return [(float(x) * CANVAS, float(y) * CANVAS) for x, y in curve]


def _affine(image: Image.Image, rng: np.random.Generator, warp: float) -> Image.Image:
    """Random rotation, shear, scale and shift about the canvas centre; `warp` scales every range (0: none)."""
    angle = math.radians(rng.uniform(-15, 15) * warp)
    shear, scale = rng.uniform(-0.25, 0.25) * warp, 1 + rng.uniform(-0.25, 0.1) * warp
    a, b = math.cos(angle) / scale, math.sin(angle) / scale + shear
    c, d = -math.sin(angle) / scale, math.cos(angle) / scale
    cx = cy = CANVAS / 2
    tx, ty = rng.uniform(-5, 5, size=2) * warp
    # PIL maps output -> input: x_in = a*x + b*y + e
    e = cx - a * (cx + tx) - b * (cy + ty)
    f = cy - c * (cx + tx) - d * (cy + ty)
    return image.transform(image.size, Image.Transform.AFFINE, (a, b, e, c, d, f), Image.Resampling.BILINEAR)


def _draw(label: int, strokes: list[np.ndarray], font_sizes: dict[int, ImageFont.FreeTypeFont],
          rng: np.random.Generator, warp: float) -> Image.Image:
    image = Image.new("L", (CANVAS, CANVAS), 0)
    draw = ImageDraw.Draw(image)
    if label < len(LETTERS):
        font = font_sizes[int(rng.choice(list(font_sizes)))]
        draw.text((CANVAS / 2, CANVAS / 2), LETTERS[label], fill=255, font=font, anchor="mm",
                  stroke_width=int(rng.integers(0, 3)), stroke_fill=255)
    else:
        width = int(rng.integers(4, 10))
        for stroke in strokes[label - len(LETTERS)]:
            jittered = stroke + rng.normal(0, 0.03, size=stroke.shape)
            draw.line(_bezier(jittered), fill=255, width=width, joint="curve")
    return _affine(image, rng, warp)


def render_glyphs(num_classes: int = 26, per_class: int = 1500, seed: int = 0,
                  low_res: tuple[int, ...] = LOW_RES_CHOICES, warp: float = 0.5) -> TensorImageDataset:
    """`per_class` random renderings of each class as 1 x 32 x 32 uint8 images (bright ink, dark ground)."""
    check_int("glyph classes", num_classes, 2, MAX_GLYPH_CLASSES)
    check_int("renderings per class", per_class, 1)
    if num_classes * per_class > MAX_RENDERINGS:
        raise TinyTLError(f"{num_classes} classes x {per_class} renderings is more than {MAX_RENDERINGS:,} images "
                          f"({IMAGE_SIZE}x{IMAGE_SIZE} bytes each are held in memory)")
    for size in low_res:
        check_int("low-res size", size, 1, IMAGE_SIZE)
    strokes = _stroke_classes(max(num_classes - len(LETTERS), 0), seed=1234)  # class layouts never vary with `seed`
    fonts = {size: ImageFont.load_default(size=size) for size in (46, 54, 62)}
    rng = np.random.default_rng(seed)
    images = np.empty((num_classes * per_class, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    labels = np.repeat(np.arange(num_classes), per_class)
    for i, label in enumerate(labels):
        image = _draw(int(label), strokes, fonts, rng, warp)
        low = int(rng.choice(low_res))
        image = image.resize((low, low), Image.Resampling.BOX).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                      Image.Resampling.BILINEAR)
        pixels = np.asarray(image, dtype=np.float32)
        pixels = pixels / max(float(pixels.max()), 1.0)  # blur must not fade the ink
        ground, ink = rng.uniform(0, 0.15), rng.uniform(0.6, 1.0)
        pixels = ground + (ink - ground) * pixels + rng.normal(0, 0.02, size=pixels.shape)
        images[i] = np.clip(np.rint(pixels * 255), 0, 255).astype(np.uint8)
    classes = list(LETTERS[:num_classes]) + [f"figure{k}" for k in range(num_classes - len(LETTERS))]
    return TensorImageDataset(torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels), classes)
