"""ImageNet input pipeline throughput: train-preprocessed images/s, per core and in all threads.

    python benchmarks/bench_image_pipeline.py [--images 200] [--passes 2]

Writes ``--images`` synthetic JPEGs of ImageNet's typical size (400 x 350, quality 90,
smooth colour fields plus noise: about 100 kB each, near ImageNet's ~110 kB mean) as
``train/<class>/*.JPEG`` in a temporary folder and runs the workloads' own host pipeline
(``workloads/imagenet_resnet/input_pipeline.batches``: read, PIL decode, crop, bicubic
resize to 224, flip, normalise, stack) over them for ``--passes`` epochs, for:

* ``resnet``: random-resized crop + flip (imagenet_resnet's train stream);
* ``vit``: the same plus RandAugment (2 layers, magnitude 10) and mixup (imagenet_vit's);
* ``eval``: centre crop (every eval split).

each with 1 thread and with one thread per usable core (the process's affinity mask):

* ``*_images_per_cpu_s``: images per second of this process's CPU time (all its threads),
  1 thread: the cost per core, which other processes on the same core do not change;
* ``*_images_per_s_1_thread`` and ``*_images_per_s_all_threads``: wall-clock images/s.
  Pinned to one core (taskset) the all-threads figure measures that same core, so it equals
  the 1-thread one; on a shared core both are lower than the CPU-time figure.

Each figure is the best of ``--repeats`` runs; the first batch (thread start-up) is not timed.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import numpy as np

from algoperf.workloads.imagenet_resnet import input_pipeline

KINDS = {  # name: (train, use_randaugment, use_mixup)
    "resnet": (True, False, False),
    "vit": (True, True, True),
    "eval": (False, False, False),
}


def write_images(folder: Path, n: int, height: int = 350, width: int = 400, classes: int = 4) -> float:
    """``n`` JPEGs under ``folder/train/<class>/``; returns their mean size in bytes."""
    from PIL import Image

    rng = np.random.default_rng(0)
    sizes = []
    for i in range(n):
        # Low-frequency colour field (bilinear upsampling of an 8x8 grid) plus pixel noise:
        # compresses like a photo rather than like white noise.
        coarse = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize((width, height), Image.BILINEAR)
        pixels = np.asarray(coarse, np.float32) + rng.normal(0, 40, (height, width, 3))
        out = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=90)
        path = folder / "train" / f"n{i % classes:08d}" / f"img_{i}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(out.getvalue())
        sizes.append(len(out.getvalue()))
    return float(np.mean(sizes))


def images_per_second(
    source: input_pipeline.Source, kind: str, threads: int, passes: int, batch_size: int
) -> tuple[float, float]:
    """(images per wall-clock second, images per CPU second of this process)."""
    train, use_randaugment, use_mixup = KINDS[kind]
    stream = input_pipeline.batches(
        source, batch_size, train=train, shuffle=train, repeat=True, seed=0, use_mixup=use_mixup,
        use_randaugment=use_randaugment, num_threads=threads,
    )
    next(stream)  # thread start-up and first-use costs
    num_batches = max(1, passes * len(source) // batch_size)
    begin, cpu_begin = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        next(stream)
    elapsed, cpu = time.perf_counter() - begin, time.process_time() - cpu_begin
    stream.close()
    return num_batches * batch_size / elapsed, num_batches * batch_size / cpu


def measure(images: int = 200, passes: int = 2, batch_size: int = 50, repeats: int = 2) -> dict:
    cores = input_pipeline.usable_cores()
    out: dict = {"usable_cores": cores, "images": images, "image_size": "400x350", "batch_size": batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        out["mean_jpeg_bytes"] = write_images(Path(tmp), images)
        source = input_pipeline.find_source(tmp, "train")
        for kind in KINDS:
            one = [images_per_second(source, kind, 1, passes, batch_size) for _ in range(repeats)]
            every = [images_per_second(source, kind, cores, passes, batch_size) for _ in range(repeats)]
            out[f"{kind}_images_per_cpu_s"] = max(cpu for _, cpu in one)
            out[f"{kind}_images_per_s_1_thread"] = max(wall for wall, _ in one)
            out[f"{kind}_images_per_s_all_threads"] = max(wall for wall, _ in every)
    print(
        f"bench_image_pipeline: {cores} usable core(s), 224x224 from {out['mean_jpeg_bytes'] / 1e3:.0f} kB JPEGs; "
        + "; ".join(
            f"{kind} {out[f'{kind}_images_per_cpu_s']:.0f} img/CPU-s, wall {out[f'{kind}_images_per_s_1_thread']:.0f} "
            f"img/s on 1 thread, {out[f'{kind}_images_per_s_all_threads']:.0f} on {cores}"
            for kind in KINDS
        )
    )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    measure(args.images, args.passes, repeats=args.repeats)
