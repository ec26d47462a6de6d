"""ImageNet image preprocessing (spec section 5), on 0-255 pixels, one encoded image at a time.

* train: random-resized crop (area fraction in [0.08, 1], aspect w/h in [3/4, 4/3], at
  least 10 % of the image, 10 attempts, else the eval centre crop), bicubic resize,
  random horizontal flip; ViT adds RandAugment (``randaugment.py``) and mixup per batch;
* eval: centre crop of side int(0.875 min(h, w)), bicubic resize;
* then (x - 255 mean) / (255 std) per channel, float32.

The input pipeline (``input_pipeline.py``) finds the sources and batches these.
"""

from __future__ import annotations

import io

import numpy as np

from . import randaugment

MEAN_RGB = (0.485 * 255, 0.456 * 255, 0.406 * 255)
STDDEV_RGB = (0.229 * 255, 0.224 * 255, 0.225 * 255)
CENTER_CROP_SIZE = 224
RESIZE_SIZE = 256
CROP_AREA_RANGE = (0.08, 1.0)
CROP_ASPECT_RANGE = (0.75, 4.0 / 3.0)
MIN_OBJECT_COVERED = 0.1
MAX_ATTEMPTS = 10
MIXUP_ALPHA = 0.2


def _open_rgb(data: bytes):
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    return image.convert("RGB") if image.mode != "RGB" else image


def _resize(image, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    from PIL import Image

    # box = (left, top, right, bottom); bicubic as in the reference (PIL antialiases when
    # shrinking, tf.image.resize did not: a documented deviation).
    out = image.resize((size, size), Image.Resampling.BICUBIC, box=box)
    return np.asarray(out, np.float32)


def center_crop_box(height: int, width: int, crop_size: int = CENTER_CROP_SIZE, resize_size: int = RESIZE_SIZE) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central crop of side int(crop/resize * min(h, w))."""
    side = int(crop_size / resize_size * min(height, width))
    top, left = (height - side + 1) // 2, (width - side + 1) // 2
    return left, top, left + side, top + side


def sample_crop_box(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int] | None:
    """A random-resized-crop window, or None when all attempts fail (use the centre crop).

    Each attempt draws area a ~ U(0.08, 1) * h * w and aspect r ~ U(3/4, 4/3) (w/h), sets
    ch = round(sqrt(a / r)), cw = round(sqrt(a * r)) and accepts if it fits and covers at
    least 10 % of the image. A window equal to the whole image also counts as failure,
    as in the reference.
    """
    area = height * width
    for _ in range(MAX_ATTEMPTS):
        target = rng.uniform(*CROP_AREA_RANGE) * area
        aspect = rng.uniform(*CROP_ASPECT_RANGE)
        ch, cw = int(round(np.sqrt(target / aspect))), int(round(np.sqrt(target * aspect)))
        if 0 < ch <= height and 0 < cw <= width and ch * cw >= MIN_OBJECT_COVERED * area:
            if (ch, cw) == (height, width):
                return None
            top = int(rng.integers(0, height - ch + 1))
            left = int(rng.integers(0, width - cw + 1))
            return left, top, left + cw, top + ch
    return None


def preprocess_train(
    data: bytes, rng: np.random.Generator, size: int = CENTER_CROP_SIZE, use_randaugment: bool = False
) -> np.ndarray:
    """Random-resized crop + flip (+ RandAugment) of one encoded image, (size, size, 3) float32 in 0..255.

    RandAugment (ViT) runs on the flipped image clipped to [0, 255] and truncated to uint8,
    as in the reference.
    """
    image = _open_rgb(data)
    width, height = image.size
    # The fallback crop keeps 87.5 % of the short side whatever the output size.
    box = sample_crop_box(height, width, rng) or center_crop_box(height, width)
    pixels = _resize(image, box, size)
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    if use_randaugment:
        pixels = randaugment.randaugment(np.clip(pixels, 0.0, 255.0).astype(np.uint8), rng).astype(np.float32)
    return pixels


def preprocess_eval(data: bytes, size: int = CENTER_CROP_SIZE) -> np.ndarray:
    """Centre crop (224/256 = 87.5 % of the short side) resized to (size, size, 3), float32 in 0..255."""
    image = _open_rgb(data)
    width, height = image.size
    return _resize(image, center_crop_box(height, width), size)


def normalize(images: np.ndarray) -> np.ndarray:
    return ((images - np.asarray(MEAN_RGB, np.float32)) / np.asarray(STDDEV_RGB, np.float32)).astype(np.float32)


def mixup(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator, num_classes: int = 1000, alpha: float = MIXUP_ALPHA) -> tuple[np.ndarray, np.ndarray]:
    """One lambda ~ Beta(alpha, alpha) per batch; mix each row with the previous (roll by 1)."""
    lam = np.float32(rng.beta(alpha, alpha))
    onehot = np.eye(num_classes, dtype=np.float32)[labels]
    mixed_images = lam * images + (1 - lam) * np.roll(images, 1, axis=0)
    mixed_labels = lam * onehot + (1 - lam) * np.roll(onehot, 1, axis=0)
    return mixed_images.astype(np.float32), mixed_labels
