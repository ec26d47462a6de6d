"""Phantom MRI data: 4x-undersampled single-coil k-space of randomised Shepp-Logan phantoms.

Every example is generated, no download: scikit-image's Shepp-Logan phantom, resized to
``IMAGE_SIZE`` x ``IMAGE_SIZE``, is randomly rotated, scaled, shifted and rescaled in
intensity, then 2-5 random ellipses ("lesions", brighter or darker) are drawn into it.
That clean image is the target. Its k-space is the centred orthonormal 2-D FFT

    K = fftshift(fft2(ifftshift(x), norm="ortho")),

and the input is what fastMRI's single-coil pipeline gives for 4x acceleration: k-space
columns are kept by a mask (the centre ``n_low = int(W * 0.08)`` columns plus
``W / 4 - n_low`` other columns drawn at random), and the input is the magnitude of the
zero-filled inverse FFT. (fastMRI keeps each other column with probability
``(W / 4 - n_low) / (W - n_low)``; at W = 32 that count varies from 2x to 8x acceleration,
so we draw the expected number exactly.) Both images are then normalised with the input's mean and
(population) std and clipped to +-6, as fastMRI does; 'mean', 'std' and 'volume_max' (the
clean image's maximum: each example is its own "volume") are kept for SSIM.

Training masks are drawn per example (fixed for good, as fastMRI's are fixed per slice
across epochs); the validation and test splits share one mask, as fastMRI's eval splits
share one seed (``PRNGKey(0)``). Generation takes about a second, so the arrays are cached as an .npz.
"""

from __future__ import annotations

import functools

import numpy as np

from algoperf.data import generated

IMAGE_SIZE = 32
NUM_TRAIN = 4096
NUM_VALIDATION = 512
NUM_TEST = 512
SEED = 0
CENTER_FRACTION = 0.08
ACCELERATION = 4
VERSION = 2  # bump when the generator changes, so old caches are not reused

_KEYS = ("inputs", "targets", "mean", "std", "volume_max")


@functools.cache
def base_phantom(size: int = IMAGE_SIZE) -> np.ndarray:
    """Shepp-Logan phantom (values in [0, 1]) resized, with anti-aliasing, to ``size`` x ``size``."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    return resize(shepp_logan_phantom(), (size, size), anti_aliasing=True).astype(np.float64)


def _ellipse(size: int, rng: np.random.Generator, supersample: int = 2) -> np.ndarray:
    """Coverage in [0, 1] of a random ellipse inside the head, by ``supersample``^2 sampling."""
    n = size * supersample
    coords = (np.arange(n) + 0.5) / n * 2.0 - 1.0  # pixel centres in [-1, 1]
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    cy, cx = rng.uniform(-0.5, 0.5, 2)
    ay, ax = rng.uniform(0.06, 0.25, 2)
    theta = rng.uniform(0, np.pi)
    c, s = np.cos(theta), np.sin(theta)
    u = (xx - cx) * c + (yy - cy) * s
    v = -(xx - cx) * s + (yy - cy) * c
    inside = ((u / ax) ** 2 + (v / ay) ** 2 <= 1.0).astype(np.float64)
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def random_phantom(rng: np.random.Generator, size: int = IMAGE_SIZE) -> np.ndarray:
    """One clean image: an affine-jittered, intensity-scaled phantom plus random ellipses."""
    from scipy.ndimage import affine_transform

    angle = rng.uniform(-np.pi / 12, np.pi / 12)
    scale = rng.uniform(0.85, 1.1, 2)
    shift = rng.uniform(-2.0, 2.0, 2)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    matrix = rot / scale[None, :]  # output coords -> input coords
    centre = (size - 1) / 2.0
    offset = centre - matrix @ (np.full(2, centre) + shift)
    image = affine_transform(base_phantom(size), matrix, offset=offset, order=1, mode="constant")
    for _ in range(rng.integers(2, 6)):
        image += rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.4) * _ellipse(size, rng)
    image = np.clip(image, 0.0, 1.0) * rng.uniform(0.7, 1.3)
    return image


def column_mask(width: int, rng: np.random.Generator) -> np.ndarray:
    """A 1-D column mask for 4x acceleration with an 8% fully-sampled centre (as fastMRI's)."""
    n_low = int(width * CENTER_FRACTION)
    pad = (width - n_low + 1) // 2
    mask = np.zeros(width, bool)
    mask[pad : pad + n_low] = True
    others = np.flatnonzero(~mask)
    mask[rng.choice(others, size=round(width / ACCELERATION) - n_low, replace=False)] = True
    return mask


def kspace(image: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D FFT of ``image``."""
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image), norm="ortho"))


def zero_filled(kspace_data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Magnitude of the inverse centred FFT of k-space with unsampled columns set to 0."""
    masked = kspace_data * mask[None, :]
    return np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(masked), norm="ortho")))


def make_split(
    num_examples: int, seed: int, eval_mask_seed: int | None, size: int = IMAGE_SIZE
) -> dict[str, np.ndarray]:
    """``num_examples`` examples: 'inputs', 'targets' (N, size, size) and per-example stats (N,).

    With ``eval_mask_seed`` every example shares the mask drawn from it; without, each
    example draws its own.
    """
    rng = np.random.default_rng(seed)
    mask = (
        column_mask(size, np.random.default_rng(eval_mask_seed))
        if eval_mask_seed is not None
        else None
    )
    out = {k: [] for k in _KEYS}
    for _ in range(num_examples):
        target = random_phantom(rng, size)
        m = mask if mask is not None else column_mask(size, rng)
        zf = zero_filled(kspace(target), m)
        mean, std = zf.mean(), zf.std()
        out["inputs"].append(np.clip((zf - mean) / std, -6, 6))
        out["targets"].append(np.clip((target - mean) / std, -6, 6))
        out["mean"].append(mean)
        out["std"].append(std)
        out["volume_max"].append(target.max())
    return {k: np.asarray(v, np.float32) for k, v in out.items()}


def generate(seed: int = SEED, size: int = IMAGE_SIZE) -> dict[str, dict[str, np.ndarray]]:
    """All three splits, freshly generated; each split has its own sub-seed."""
    eval_mask_seed = _sub_seed(seed, 3)
    return {
        "train": make_split(NUM_TRAIN, _sub_seed(seed, 0), None, size),
        "validation": make_split(NUM_VALIDATION, _sub_seed(seed, 1), eval_mask_seed, size),
        "test": make_split(NUM_TEST, _sub_seed(seed, 2), eval_mask_seed, size),
    }


def _sub_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def load(
    data_dir: str | None = None, seed: int = SEED, size: int = IMAGE_SIZE
) -> dict[str, dict[str, np.ndarray]]:
    """Splits 'train', 'validation', 'test', generated once and then read from the cache."""
    path = generated.cache_path(data_dir, "mri", f"v{VERSION}", seed, size, NUM_TRAIN, NUM_VALIDATION, NUM_TEST)
    flat = generated.cached_arrays(
        path, lambda: {f"{split}/{k}": v for split, arrays in generate(seed, size).items() for k, v in arrays.items()})
    return {
        split: {k: flat[f"{split}/{k}"] for k in _KEYS} for split in ("train", "validation", "test")
    }
