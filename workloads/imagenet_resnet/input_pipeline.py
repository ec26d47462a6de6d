"""ImageNet input pipeline without TensorFlow: AlgoPerf's on-disk layouts, PIL decoding.

Sources, found under ``--data-dir`` (also under ``imagenet/``, ``jax/``, ``pytorch/``,
``imagenet/jax/``, ``imagenet/pytorch/`` below it, so ``$DATA_DIR``, ``$DATA_DIR/imagenet``
and AlgoPerf's ``--data_dir`` all work):

* TFDS shards from AlgoPerf's JAX setup:
  ``imagenet2012/5.1.0/imagenet2012-{train,validation}.tfrecord-*`` and
  ``imagenet_v2/matched-frequency/3.0.0/imagenet_v2-test.tfrecord-*`` (features
  ``image`` = JPEG bytes, ``label`` = int64), read with ``tfrecord`` (no TensorFlow);
* image folders from AlgoPerf's PyTorch setup: ``train/<wnid>/*.JPEG``,
  ``val/<wnid>/*.JPEG`` (label = rank of the wnid, which is also TFDS's label), and
  ImageNet-v2's own archive layout ``imagenetv2-matched-frequency-format-val/<label>/*``
  (what ``algoperf data prepare imagenet``, ``prepare.py``, writes under ``imagenet/pytorch/``).

Preprocessing (spec section 5) is ``preprocessing.py``; the train stream draws each
epoch's order, each example's augmentation and each batch's mixup from (seed, position).

Batches are assembled by a thread pool (PIL releases the GIL while decoding and
resizing) one batch ahead of the consumer, and put on the devices split along the
batch axis.
"""

from __future__ import annotations

import concurrent.futures
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np

from algoperf.array_workload import BatchQueue
from algoperf.data import tfrecord
from algoperf.data.seeds import seed_from_rng
from algoperf.spec import DataNotFoundError

from .preprocessing import CENTER_CROP_SIZE, mixup, normalize, preprocess_eval, preprocess_train

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")


# --- where the data is -------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One split on disk: image files with labels, or TFRecord records with their index."""

    kind: str  # "folder" or "tfrecord"
    files: tuple[str, ...]
    labels: np.ndarray | None = None  # folder: one per file
    records: np.ndarray | None = None  # tfrecord: (file index, offset, length) per record
    root: str = ""

    def __len__(self) -> int:
        return len(self.files) if self.kind == "folder" else len(self.records)

    def load(self, i: int) -> tuple[bytes, int]:
        """Encoded image bytes and label of example ``i``."""
        if self.kind == "folder":
            return Path(self.files[i]).read_bytes(), int(self.labels[i])
        file_index, offset, length = self.records[i]
        example = tfrecord.parse_example(tfrecord.read_record(self.files[file_index], offset, length))
        return example["image"][0], int(example["label"][0])


def _candidates(data_dir: Path) -> list[Path]:
    subs = ("", "imagenet", "jax", "pytorch", "imagenet/jax", "imagenet/pytorch")
    return [data_dir / s if s else data_dir for s in subs]


def _tfrecord_source(files: list[Path], root: Path) -> Source:
    records = [(i, off, n) for i, f in enumerate(files) for off, n in tfrecord.index_records(f)]
    return Source("tfrecord", tuple(str(f) for f in files), records=np.array(records, np.int64).reshape(-1, 3), root=str(root))


def _folder_source(root: Path, numeric_labels: bool = False) -> Source:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files, labels = [], []
    for index, name in enumerate(classes):
        label = int(name) if numeric_labels else index
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(f))
                labels.append(label)
    return Source("folder", tuple(files), labels=np.array(labels, np.int64), root=str(root))


TFDS_PATTERNS = {
    "train": "imagenet2012/5.1.0/imagenet2012-train.tfrecord-*",
    "validation": "imagenet2012/5.1.0/imagenet2012-validation.tfrecord-*",
    "test": "imagenet_v2/matched-frequency/3.0.0/imagenet_v2-test.tfrecord-*",
}
FOLDERS = {"train": "train", "validation": "val", "test": "imagenetv2-matched-frequency-format-val"}


def find_source(data_dir: str | Path | None, split: str) -> Source:
    """The on-disk source of ``split`` ('train', 'eval_train', 'validation', 'test')."""
    split = "train" if split == "eval_train" else split
    if data_dir is None:
        raise DataNotFoundError(
            "the ImageNet workloads read ImageNet from disk: pass --data-dir DIR, where DIR holds "
            "AlgoPerf's prepared ImageNet (imagenet2012/5.1.0/*.tfrecord-* from its JAX setup, or "
            "train/ and val/ class folders from its PyTorch setup); see workloads/imagenet_resnet/README.md"
        )
    root = Path(data_dir)
    if not root.is_dir():
        raise DataNotFoundError(f"--data-dir {root} is not a folder; pass the folder that holds ImageNet")
    for base in _candidates(root):
        shards = sorted(base.glob(TFDS_PATTERNS[split]))
        if shards:
            return _tfrecord_source(shards, base)
        folder = base / FOLDERS[split]
        if folder.is_dir() and any(d.is_dir() for d in folder.iterdir()):
            return _folder_source(folder, numeric_labels=split == "test")
    raise DataNotFoundError(
        f"ImageNet {split} split not found under {root} (looked for {TFDS_PATTERNS[split]} and "
        f"{FOLDERS[split]}/<class>/ in ., imagenet/, jax/, pytorch/, imagenet/jax/, imagenet/pytorch/); "
        "prepare it with AlgoPerf's dataset_setup.py --imagenet, or see workloads/imagenet_resnet/README.md"
    )


# --- batching ------------------------------------------------------------------------------


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def epoch_order(n: int, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
    """The example order of ``epoch``: a permutation from ``default_rng([seed, epoch])``.

    Each epoch's order depends only on (seed, epoch), so any position of the stream is
    known without drawing the ones before it (``TrainBatches.seek``).
    """
    return np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)


class _Decoder:
    """Decodes and preprocesses examples on a thread pool (PIL releases the GIL)."""

    def __init__(self, source: Source, train: bool, example_seed: int, image_size: int, use_randaugment: bool,
                 num_threads: int | None):
        self.source, self.train, self.example_seed = source, train, example_seed
        self.image_size, self.use_randaugment = image_size, use_randaugment
        self.pool = concurrent.futures.ThreadPoolExecutor(num_threads or usable_cores())

    def _work(self, position: int, index: int) -> tuple[np.ndarray, int]:
        data, label = self.source.load(index)
        if self.train:
            # Per-example generator from (seed, position in the stream): order-independent.
            rng = np.random.default_rng([self.example_seed, position])
            return preprocess_train(data, rng, self.image_size, self.use_randaugment), label
        return preprocess_eval(data, self.image_size), label

    def submit(self, chunk: list[tuple[int, int]]) -> list[concurrent.futures.Future]:
        return [self.pool.submit(self._work, p, i) for p, i in chunk]

    @staticmethod
    def collect(futures: list[concurrent.futures.Future]) -> tuple[np.ndarray, np.ndarray]:
        results = [f.result() for f in futures]
        return normalize(np.stack([r[0] for r in results])), np.array([r[1] for r in results], np.int32)

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class TrainBatches:
    """The endless, shuffled, augmented train stream, one batch decoded ahead; ``seek(n)`` jumps.

    Batch ``b`` holds stream positions ``b B .. (b + 1) B - 1`` (B the batch size); position
    ``p`` is example ``epoch_order(.., p // N)[p % N]`` of the N in the split, augmented
    with a generator from (seed, p), and the batch mixed up with a lambda from (seed, b).
    So a resumed trial seeks to its next batch without decoding the ones before it.
    """

    def __init__(self, source: Source, batch_size: int, seed: int, *, use_mixup: bool, use_randaugment: bool,
                 image_size: int, num_threads: int | None):
        order_seed, example_seed, mixup_seed = (int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(3))
        self._source, self._batch_size, self._use_mixup = source, batch_size, use_mixup
        self._order_seed, self._mixup_seed = order_seed, mixup_seed
        self._decoder = _Decoder(source, True, example_seed, image_size, use_randaugment, num_threads)
        self._epoch, self._order = -1, np.empty(0, np.int64)
        self._next = 0  # the batch to hand out next
        self._pending: tuple[int, list[concurrent.futures.Future]] | None = None

    def __iter__(self) -> TrainBatches:
        return self

    def seek(self, n: int) -> None:
        """The next batch is batch ``n`` (0 = the first); what was decoded ahead is dropped."""
        if self._pending is not None:
            for future in self._pending[1]:
                future.cancel()
        self._pending, self._next = None, n

    def _chunk(self, b: int) -> list[tuple[int, int]]:
        n = len(self._source)
        chunk = []
        for position in range(b * self._batch_size, (b + 1) * self._batch_size):
            epoch, offset = divmod(position, n)
            if epoch != self._epoch:
                self._epoch, self._order = epoch, epoch_order(n, True, self._order_seed, epoch)
            chunk.append((position, int(self._order[offset])))
        return chunk

    def __next__(self) -> dict[str, np.ndarray]:
        b = self._next
        if self._pending is None or self._pending[0] != b:
            self._pending = (b, self._decoder.submit(self._chunk(b)))
        futures = self._pending[1]
        self._pending = (b + 1, self._decoder.submit(self._chunk(b + 1)))  # decode ahead
        self._next = b + 1
        images, labels = self._decoder.collect(futures)
        if self._use_mixup:
            images, mixed = mixup(images, labels, np.random.default_rng([self._mixup_seed, b]))
            return {"inputs": images, "targets": mixed}
        return {"inputs": images, "targets": labels}

    def close(self) -> None:
        """Stop the decoding threads (also when the stream is garbage collected)."""
        self._decoder.close()

    __del__ = close


def eval_batches(source: Source, batch_size: int, *, shuffle: bool, repeat: bool, seed: int, pad_last: bool = True,
                 image_size: int = CENTER_CROP_SIZE, num_threads: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Eval-preprocessed batches of ``source``, each with 'weights'; one batch decoded ahead.

    In order (validation, test) an epoch's last batch is padded with zero rows of weight 0
    up to ``batch_size`` when ``pad_last``; shuffled (eval_train) batches are full.
    """
    order_seed = int(np.random.SeedSequence(seed).spawn(3)[0].generate_state(1)[0])
    decoder = _Decoder(source, False, 0, image_size, False, num_threads)
    n = len(source)

    def chunks() -> Iterator[list[tuple[int, int]]]:
        epoch = 0
        chunk: list[tuple[int, int]] = []
        while True:
            for index in epoch_order(n, shuffle, order_seed, epoch):
                chunk.append((0, int(index)))
                # An in-order epoch ends the chunk at the split's end so that padding sits there.
                if len(chunk) == batch_size or (not shuffle and int(index) == n - 1):
                    yield chunk
                    chunk = []
            epoch += 1
            if not repeat:
                break
        if chunk:
            yield chunk

    def finish(futures: list[concurrent.futures.Future]) -> dict[str, np.ndarray]:
        images, labels = decoder.collect(futures)
        batch: dict[str, np.ndarray] = {"inputs": images, "targets": labels}
        count = len(labels)
        weights = np.ones(count, np.float32)
        if pad_last and count < batch_size:
            batch = {k: np.concatenate([v, np.zeros((batch_size - count, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
            weights = np.concatenate([weights, np.zeros(batch_size - count, np.float32)])
        batch["weights"] = weights
        return batch

    try:
        pending = None
        for chunk in chunks():
            nxt = decoder.submit(chunk)  # start decoding the next batch before handing this one out
            if pending is not None:
                yield finish(pending)
            pending = nxt
        if pending is not None:
            yield finish(pending)
    finally:
        decoder.close()


def batches(
    source: Source,
    batch_size: int,
    *,
    train: bool,
    shuffle: bool,
    repeat: bool,
    seed: int,
    pad_last: bool = True,
    use_mixup: bool = False,
    use_randaugment: bool = False,
    image_size: int = CENTER_CROP_SIZE,
    num_threads: int | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """Host batches of ``source``: {'inputs' (B, S, S, 3) float32, 'targets', ['weights']}.

    train: ``TrainBatches`` (shuffled, repeated, full batches, seekable; ``use_randaugment``
    and ``use_mixup`` act here only). Otherwise ``eval_batches``.
    """
    if train:
        if not (shuffle and repeat):
            raise ValueError("train batches are shuffled and repeated (AlgoPerf's train stream)")
        return TrainBatches(source, batch_size, seed, use_mixup=use_mixup, use_randaugment=use_randaugment,
                            image_size=image_size, num_threads=num_threads)
    return eval_batches(source, batch_size, shuffle=shuffle, repeat=repeat, seed=seed, pad_last=pad_last,
                        image_size=image_size, num_threads=num_threads)


def device_batches(host_batches: Iterator[dict[str, np.ndarray]], num_batches: int | None = None) -> BatchQueue:
    """Put host batches on the trial's devices, split along the batch axis (keeping ``seek``)."""
    return BatchQueue(host_batches, num_batches)


def build_input_queue(
    data_rng: Any,
    split: str,
    data_dir: str | Path | None,
    global_batch_size: int,
    *,
    use_mixup: bool = False,
    use_randaugment: bool = False,
    num_batches: int | None = None,
    image_size: int = CENTER_CROP_SIZE,
    sources: dict[str, Source] | None = None,
) -> Iterator[dict[str, jax.Array]]:
    """The device batches of ``split`` as AlgoPerf's ImageNet workloads consume them.

    train: shuffled, augmented (RandAugment and mixup only when asked), repeated.
    eval_train: train images with eval preprocessing, shuffled and repeated (each eval takes
    the next subset). validation/test: in order, repeated epoch after epoch, last batch of
    each epoch padded.
    """
    # eval_train reads the train source; the index is kept per (folder, split).
    key = f"{data_dir}:{'train' if split == 'eval_train' else split}"
    if sources is not None and key in sources:
        source = sources[key]
    else:
        source = find_source(data_dir, split)
        if sources is not None:
            sources[key] = source
    if split == "train" and len(source) < global_batch_size:
        raise ValueError(f"batch size {global_batch_size} is larger than the {len(source)} training images in {source.root}")
    is_train = split == "train"
    host = batches(
        source, global_batch_size, train=is_train, shuffle=split in ("train", "eval_train"), repeat=True,
        seed=seed_from_rng(data_rng), use_mixup=use_mixup and is_train, use_randaugment=use_randaugment and is_train,
        image_size=image_size,
    )
    return device_batches(host, num_batches)
