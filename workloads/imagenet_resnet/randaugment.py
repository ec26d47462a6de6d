"""RandAugment for the ImageNet ViT train stream, on uint8 (H, W, 3) images, numpy only.

Facts from AlgoPerf's JAX ViT pipeline (spec section 5.3; the TPU AutoAugment code it
inherits): ``num_layers`` = 2 times, one of the 16 ``OPS`` is drawn uniformly and always
applied, at magnitude M = 10 of a maximum level 10, i.e. at full strength:

* AutoContrast, Equalize (PIL's per-channel rules), Invert;
* Rotate +-30 degrees, ShearX / ShearY +-0.3, TranslateX / TranslateY +-100 px (random
  sign): inverse-mapped with nearest sampling on pixel indices, empty pixels grey 128;
* Posterize to 4 bits, Solarize (threshold 256, see below), SolarizeAdd (+110 below 128);
* Color, Contrast, Brightness, Sharpness at factor 0.1 + 1.8 M / 10 = 1.9: the image is
  blended away from a degenerate image, ``clip(d + f (x - d), 0, 255)`` truncated to uint8;
* Cutout: an 80 x 80 square (half-size 40, clipped at the borders) of grey 128 at a
  uniform random centre.

Oddities of the reference, reproduced on purpose (spec G8): Solarize compares the pixels
with its threshold cast to uint8, so at M = 10 the threshold 256 is 0 and every pixel is
inverted; Contrast's "mean" is the grey histogram's *count* divided by 256 (h w / 256,
i.e. 196 at 224 x 224), not the mean intensity.

Deviation: the reference draws the random signs and the Cutout position from TF's
stateful generator (not reproducible); here every draw comes from the ``rng`` passed in,
so an example's augmentation is a function of the pipeline seed and its stream position.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

NUM_LAYERS = 2
MAGNITUDE = 10
MAX_LEVEL = 10.0
REPLACE = 128  # grey fill for pixels that geometric ops and Cutout leave empty
CUTOUT_CONST = 40
TRANSLATE_CONST = 100

# The reference's order: the op index drawn per layer selects from this tuple.
OPS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "Color", "Contrast",
    "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX", "TranslateY", "Cutout", "SolarizeAdd",
)

# tf.image.rgb_to_grayscale's weights.
GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], np.float32)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Clip to [0, 255] and truncate, as tf.cast(clip_by_value(x, 0, 255), uint8)."""
    return np.clip(x, 0.0, 255.0).astype(np.uint8)


def blend(image1: np.ndarray, image2: np.ndarray, factor: float) -> np.ndarray:
    """``image1 + factor (image2 - image1)``: 0 gives image1, 1 gives image2, > 1 extrapolates (clipped)."""
    if factor == 0.0:
        return image1
    if factor == 1.0:
        return image2
    a = image1.astype(np.float32)
    return _to_uint8(a + np.float32(factor) * (image2.astype(np.float32) - a))


def grayscale(image: np.ndarray) -> np.ndarray:
    """(H, W) uint8 grey as tf.image.rgb_to_grayscale: weighted sum on [0, 1], back via x * 255.5 truncated."""
    gray = (image.astype(np.float32) / 255.0) @ GRAY_WEIGHTS
    return _to_uint8(gray * np.float32(255.5))


def autocontrast(image: np.ndarray) -> np.ndarray:
    """Per channel, stretch [min, max] to [0, 255]; a constant channel is left as it is."""
    out = image.copy()
    for c in range(image.shape[-1]):
        channel = image[..., c].astype(np.float32)
        lo, hi = channel.min(), channel.max()
        if hi > lo:
            scale = np.float32(255.0) / (hi - lo)
            out[..., c] = _to_uint8(channel * scale - lo * scale)
    return out


def equalize(image: np.ndarray) -> np.ndarray:
    """PIL's histogram equalisation per channel.

    With histogram h and step = (sum(h) - h[last non-zero value]) // 255, value v maps to
    (sum_{u < v} h[u] + step // 2) // step (clipped to 255); step 0 leaves the channel.
    """
    out = image.copy()
    for c in range(image.shape[-1]):
        channel = image[..., c]
        hist = np.bincount(channel.ravel(), minlength=256).astype(np.int64)
        step = (hist.sum() - hist[np.flatnonzero(hist)[-1]]) // 255
        if step == 0:
            continue
        lut = (np.cumsum(hist) + step // 2) // step
        lut = np.clip(np.concatenate([[0], lut[:-1]]), 0, 255).astype(np.uint8)
        out[..., c] = lut[channel]
    return out


def invert(image: np.ndarray) -> np.ndarray:
    return 255 - image


def posterize(image: np.ndarray, bits: int) -> np.ndarray:
    """Keep the top ``bits`` bits of every value."""
    shift = 8 - bits
    return (image >> shift) << shift


def solarize(image: np.ndarray, threshold: int) -> np.ndarray:
    """Invert the values >= threshold; the threshold is taken as a uint8, as in the reference (256 -> 0)."""
    return np.where(image < np.uint8(threshold % 256), image, 255 - image)


def solarize_add(image: np.ndarray, addition: int, threshold: int = 128) -> np.ndarray:
    """Add ``addition`` (clipped to 255) to the values below ``threshold``."""
    added = np.clip(image.astype(np.int16) + np.int16(addition), 0, 255).astype(np.uint8)
    return np.where(image < threshold, added, image)


def color(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend away from the grey version of the image (PIL Color)."""
    return blend(np.repeat(grayscale(image)[..., None], 3, axis=-1), image, factor)


def contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend away from a constant grey of h * w / 256 (the reference's "mean", G8)."""
    height, width = image.shape[:2]
    mean = np.uint8(min(height * width / 256.0, 255.0))
    return blend(np.full_like(image, mean), image, factor)


def brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend away from black: the image times ``factor``, clipped."""
    return blend(np.zeros_like(image), image, factor)


def sharpness(image: np.ndarray, factor: float) -> np.ndarray:
    """Blend away from PIL's 3x3 "smooth" filter ([[1,1,1],[1,5,1],[1,1,1]] / 13).

    The filter is applied where its window fits (VALID); the 1-pixel border keeps the
    original pixels, as in the reference.
    """
    x = image.astype(np.float32)
    h, w = image.shape[:2]
    if h < 3 or w < 3:
        return image
    total = sum(x[dy:h - 2 + dy, dx:w - 2 + dx] for dy in range(3) for dx in range(3))
    smooth = (total + 4.0 * x[1:-1, 1:-1]) / np.float32(13.0)
    degenerate = image.copy()
    degenerate[1:-1, 1:-1] = _to_uint8(smooth)
    return blend(degenerate, image, factor)


def affine(image: np.ndarray, matrix: tuple[float, ...], replace: int = REPLACE) -> np.ndarray:
    """Inverse-mapped nearest sampling: output pixel (x, y) reads input (a0 x + a1 y + a2, b0 x + b1 y + b2).

    Coordinates are pixel indices (x = column); the source position is rounded half away
    from zero (std::round, as TF's ImageProjectiveTransform); outside the image -> ``replace``.
    """
    a0, a1, a2, b0, b1, b2 = (np.float32(v) for v in matrix)
    h, w = image.shape[:2]
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    src_x, src_y = a0 * xs + a1 * ys + a2, b0 * xs + b1 * ys + b2
    src_x = np.trunc(src_x + np.copysign(np.float32(0.5), src_x))
    src_y = np.trunc(src_y + np.copysign(np.float32(0.5), src_y))
    valid = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    src = np.where(valid, src_y, 0).astype(np.int64) * w + np.where(valid, src_x, 0).astype(np.int64)
    out = image.reshape(h * w, -1)[src.ravel()].reshape(image.shape)
    out[~valid] = replace
    return out


def rotate(image: np.ndarray, degrees: float, replace: int = REPLACE) -> np.ndarray:
    """Rotate about the centre ((w - 1) / 2, (h - 1) / 2); positive degrees turn content counterclockwise."""
    h, w = image.shape[:2]
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    x_off = ((w - 1) - (cos * (w - 1) - sin * (h - 1))) / 2.0
    y_off = ((h - 1) - (sin * (w - 1) + cos * (h - 1))) / 2.0
    return affine(image, (cos, -sin, x_off, sin, cos, y_off), replace)


def shear_x(image: np.ndarray, level: float, replace: int = REPLACE) -> np.ndarray:
    """Output (x, y) reads input (x + level y, y)."""
    return affine(image, (1.0, level, 0.0, 0.0, 1.0, 0.0), replace)


def shear_y(image: np.ndarray, level: float, replace: int = REPLACE) -> np.ndarray:
    """Output (x, y) reads input (x, level x + y)."""
    return affine(image, (1.0, 0.0, 0.0, level, 1.0, 0.0), replace)


def translate_x(image: np.ndarray, pixels: float, replace: int = REPLACE) -> np.ndarray:
    """Output (x, y) reads input (x + pixels, y): the content moves left by ``pixels``."""
    return affine(image, (1.0, 0.0, pixels, 0.0, 1.0, 0.0), replace)


def translate_y(image: np.ndarray, pixels: float, replace: int = REPLACE) -> np.ndarray:
    """Output (x, y) reads input (x, y + pixels): the content moves up by ``pixels``."""
    return affine(image, (1.0, 0.0, 0.0, 0.0, 1.0, pixels), replace)


def cutout(image: np.ndarray, center_y: int, center_x: int, pad_size: int, replace: int = REPLACE) -> np.ndarray:
    """Fill rows [cy - pad, cy + pad) x columns [cx - pad, cx + pad), clipped to the image, with ``replace``."""
    out = image.copy()
    out[max(0, center_y - pad_size):center_y + pad_size, max(0, center_x - pad_size):center_x + pad_size] = replace
    return out


FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "AutoContrast": autocontrast, "Equalize": equalize, "Invert": invert, "Rotate": rotate,
    "Posterize": posterize, "Solarize": solarize, "Color": color, "Contrast": contrast,
    "Brightness": brightness, "Sharpness": sharpness, "ShearX": shear_x, "ShearY": shear_y,
    "TranslateX": translate_x, "TranslateY": translate_y, "Cutout": cutout, "SolarizeAdd": solarize_add,
}


def _signed(value: float, rng: np.random.Generator) -> float:
    # The reference keeps the sign when floor(u + 0.5) is 1, i.e. half the time.
    return value if rng.random() >= 0.5 else -value


def op_args(name: str, magnitude: float, rng: np.random.Generator, height: int, width: int) -> tuple[Any, ...]:
    """The arguments of op ``name`` at ``magnitude`` (the reference's level-to-argument rules)."""
    level = magnitude / MAX_LEVEL
    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if name == "Rotate":
        return (_signed(level * 30.0, rng),)
    if name == "Posterize":
        return (int(level * 4),)
    if name == "Solarize":
        return (int(level * 256),)
    if name == "SolarizeAdd":
        return (int(level * 110),)
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return (level * 1.8 + 0.1,)
    if name in ("ShearX", "ShearY"):
        return (_signed(level * 0.3, rng),)
    if name in ("TranslateX", "TranslateY"):
        return (_signed(level * float(TRANSLATE_CONST), rng),)
    if name == "Cutout":
        return (int(rng.integers(0, height)), int(rng.integers(0, width)), int(level * CUTOUT_CONST))
    raise ValueError(f"unknown RandAugment op {name!r}; known: {', '.join(OPS)}")


def draw_layers(
    rng: np.random.Generator, height: int, width: int, num_layers: int = NUM_LAYERS, magnitude: float = MAGNITUDE
) -> list[tuple[str, tuple[Any, ...]]]:
    """The ``num_layers`` (op name, arguments) pairs RandAugment applies, in order."""
    layers = []
    for _ in range(num_layers):
        name = OPS[int(rng.integers(0, len(OPS)))]
        layers.append((name, op_args(name, magnitude, rng, height, width)))
    return layers


def apply_op(image: np.ndarray, name: str, args: tuple[Any, ...]) -> np.ndarray:
    return FUNCTIONS[name](image, *args)


def randaugment(
    image: np.ndarray, rng: np.random.Generator, num_layers: int = NUM_LAYERS, magnitude: float = MAGNITUDE
) -> np.ndarray:
    """RandAugment of one uint8 (H, W, 3) image: ``num_layers`` uniformly drawn ops, always applied."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"RandAugment takes uint8 (H, W, 3) images, got {image.dtype} {image.shape}")
    for name, args in draw_layers(rng, image.shape[0], image.shape[1], num_layers, magnitude):
        image = apply_op(image, name, args)
    return image
