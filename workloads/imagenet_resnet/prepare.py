"""``algoperf data prepare imagenet``: the official archives into AlgoPerf's PyTorch layout.

Reads, from one local folder: ``ILSVRC2012_img_train.tar`` and ``ILSVRC2012_img_val.tar``
(image-net.org), the validation labels (the devkit ``ILSVRC2012_devkit_t12.tar.gz`` or
Kaggle's ``LOC_val_solution.csv``) and ImageNet-v2's ``imagenetv2-matched-frequency.tar.gz``
(downloaded from its public URL when absent). Writes ``<data_dir>/imagenet/pytorch/`` with
the class folders ``train/``, ``val/`` and ``imagenetv2-matched-frequency-format-val/``: the
folder layout of AlgoPerf's PyTorch setup, one of the sources ``input_pipeline``'s docstring
lists. ``prepare``'s docstring gives the details.
"""

from __future__ import annotations

import io
import re
import sys
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

from algoperf.spec import DataNotFoundError

from .input_pipeline import FOLDERS, find_source

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
DEVKIT = "ILSVRC2012_devkit_t12.tar.gz"
KAGGLE_VAL_LABELS = "LOC_val_solution.csv"
V2_ARCHIVE = "imagenetv2-matched-frequency.tar.gz"
V2_URL = "https://huggingface.co/datasets/vaishaal/ImageNetV2/resolve/main/imagenetv2-matched-frequency.tar.gz"
PREPARE_HINT = (
    f"Put {TRAIN_TAR} and {VAL_TAR} (image-net.org, ILSVRC2012), the validation labels ({DEVKIT} from the "
    f"same page, or {KAGGLE_VAL_LABELS} from Kaggle's ImageNet Object Localization Challenge) and, "
    f"optionally, {V2_ARCHIVE} (downloaded when missing) in one folder and pass it as --source."
)
WNID_PATTERN = re.compile(r"n\d{8}")


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Write AlgoPerf's PyTorch ImageNet layout under ``<data_dir>/imagenet/pytorch`` and return it.

    * ``train/<wnid>/*.JPEG`` from ``ILSVRC2012_img_train.tar`` (a tar of 1,000 per-class
      tars ``<wnid>.tar``);
    * ``val/<wnid>/*.JPEG`` from ``ILSVRC2012_img_val.tar`` (50,000 flat JPEGs), each moved
      to its class folder by the labels file: the devkit (``data/meta.mat`` maps
      ILSVRC2012_ID -> wnid, ``data/ILSVRC2012_validation_ground_truth.txt`` gives the ID of
      val image i on line i) or Kaggle's ``LOC_val_solution.csv`` (``ImageId`` and a
      ``PredictionString`` starting with the wnid);
    * ``imagenetv2-matched-frequency-format-val/<label>/*.jpeg`` from ImageNet-v2's
      archive (the test split; downloaded from its public URL when not in ``source``).

    ``source`` is the folder with those files; option ``val_labels=FILE`` names the labels
    file when it is elsewhere. Every input is checked before the long extraction starts;
    each split is written to ``<split>.partial`` and renamed when complete, and a split
    already present is kept, so an interrupted run can be resumed.
    """
    unknown = sorted(set(options) - {"val_labels"})
    if unknown:
        raise TypeError(f"imagenet takes the option val_labels=FILE, not {', '.join(unknown)}")
    if source is None:
        raise DataNotFoundError(f"ImageNet has no public download. {PREPARE_HINT}")
    src = Path(source)
    if not src.is_dir():
        raise DataNotFoundError(f"--source {src} is not a folder. {PREPARE_HINT}")
    out = Path(data_dir) / "imagenet" / "pytorch"
    out.mkdir(parents=True, exist_ok=True)
    train_dir, val_dir, test_dir = (out / FOLDERS[split] for split in ("train", "validation", "test"))
    train_tar, val_tar = src / TRAIN_TAR, src / VAL_TAR
    # Everything a missing split needs is checked (and ImageNet-v2 fetched) before hours of extraction.
    for folder, tar in ((train_dir, train_tar), (val_dir, val_tar)):
        if not folder.is_dir() and not tar.is_file():
            raise DataNotFoundError(f"{tar} not found. {PREPARE_HINT}")
    labels_file = Path(options["val_labels"]) if "val_labels" in options else None
    val_labels = None if val_dir.is_dir() else read_val_labels(src, labels_file)
    v2 = None if test_dir.is_dir() else _v2_archive(src, out)

    if not train_dir.is_dir():
        _write_split(train_dir, lambda tmp: _extract_train(train_tar, tmp))
    if val_labels is not None:
        _write_split(val_dir, lambda tmp: _extract_val(val_tar, val_labels, tmp))
    if v2 is not None:
        _write_split(test_dir, lambda tmp: _extract_v2(v2, tmp))
    train_classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    val_classes = sorted(d.name for d in val_dir.iterdir() if d.is_dir())
    if train_classes != val_classes:
        # Labels are the rank of the wnid within each folder: both must list the same classes.
        raise ValueError(
            f"train has {len(train_classes)} classes and val {len(val_classes)} "
            f"(e.g. {sorted(set(train_classes) ^ set(val_classes))[:3]}); the labels would not match: "
            f"check {TRAIN_TAR} and the validation labels file, delete {out} and prepare again"
        )
    for split in ("train", "validation", "test"):
        find_source(out, split)  # the layout the workloads read
    return out


def _write_split(final: Path, write: Any) -> None:
    """Run ``write(tmp)`` into ``<final>.partial``, then rename it to ``final``."""
    import shutil

    tmp = final.with_name(final.name + ".partial")
    if tmp.exists():  # left by an interrupted run
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    tmp.rename(final)


def _open_tar(path: Path, mode: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode)
    except (tarfile.TarError, OSError) as e:
        raise DataNotFoundError(f"{path} is not a readable tar archive ({e}); re-download it. {PREPARE_HINT}") from e


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    data = tar.extractfile(member)
    (folder / Path(member.name).name).write_bytes(data.read() if data is not None else b"")


def _extract_train(train_tar: Path, out: Path) -> None:
    """Each ``<wnid>.tar`` member of the train tar becomes ``out/<wnid>/``."""
    classes = 0
    with _open_tar(train_tar, "r|") as outer:  # stream: the archive is read once, in order
        for member in outer:
            if not member.isfile():
                continue
            name = Path(member.name).name
            wnid = name[:-4] if name.endswith(".tar") else ""
            if not WNID_PATTERN.fullmatch(wnid):
                raise DataNotFoundError(
                    f"{train_tar} holds {member.name}, not per-class <wnid>.tar files: it is not {TRAIN_TAR}"
                )
            with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                for image in inner:
                    if image.isfile():
                        _write_member(inner, image, out / wnid)
            classes += 1
            if classes % 100 == 0:
                print(f"imagenet: train, {classes} classes extracted", file=sys.stderr, flush=True)
    if classes == 0:
        raise DataNotFoundError(f"{train_tar} holds no <wnid>.tar files: it is not {TRAIN_TAR}")


def _extract_val(val_tar: Path, labels: dict[str, str], out: Path) -> None:
    """Each ``ILSVRC2012_val_*.JPEG`` of the val tar goes to ``out/<its wnid>/``."""
    count = 0
    with _open_tar(val_tar, "r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            stem = Path(member.name).stem
            if stem not in labels:
                raise DataNotFoundError(
                    f"{val_tar} holds {member.name}, which the validation labels do not list: is it {VAL_TAR}, "
                    "and the labels file the ILSVRC2012 one?"
                )
            _write_member(tar, member, out / labels[stem])
            count += 1
            if count % 10_000 == 0:
                print(f"imagenet: val, {count} images sorted into class folders", file=sys.stderr, flush=True)
    if count != len(labels):
        raise DataNotFoundError(f"{val_tar} holds {count} images but the labels list {len(labels)}: re-download {VAL_TAR}")


def _extract_v2(archive: Path, out: Path) -> None:
    """The archive's ``imagenetv2-matched-frequency-format-val/<label>/*`` files into ``out/<label>/``."""
    count = 0
    with _open_tar(archive, "r|*") as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2:
                continue
            label = parts[-2]
            if not label.isdigit() or not 0 <= int(label) < 1000:
                raise DataNotFoundError(f"{archive} holds {member.name}, not <label 0..999>/<image>: it is not {V2_ARCHIVE}")
            _write_member(tar, member, out / label)
            count += 1
    if count == 0:
        raise DataNotFoundError(f"{archive} holds no images: it is not {V2_ARCHIVE}")


def _v2_archive(src: Path, out: Path) -> Path:
    """ImageNet-v2's archive: from ``src``, else downloaded (public) next to the output."""
    if (src / V2_ARCHIVE).is_file():
        return src / V2_ARCHIVE
    target = out / V2_ARCHIVE
    if not target.is_file():
        part = target.with_name(target.name + ".part")
        print(f"imagenet: downloading {V2_URL}", file=sys.stderr, flush=True)
        try:
            urllib.request.urlretrieve(V2_URL, part)
        except OSError as e:  # URLError included
            raise DataNotFoundError(f"downloading {V2_URL} failed ({e}); download it by hand. {PREPARE_HINT}") from e
        part.replace(target)
    return target


def read_val_labels(src: Path, labels_file: Path | None = None) -> dict[str, str]:
    """{'ILSVRC2012_val_00000001': wnid, ...} from the devkit archive or Kaggle's CSV."""
    candidates = [labels_file] if labels_file is not None else [src / DEVKIT, src / KAGGLE_VAL_LABELS]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise DataNotFoundError(f"no validation labels: {' or '.join(str(p) for p in candidates)} not found. {PREPARE_HINT}")
    labels = _kaggle_val_labels(path) if path.suffix == ".csv" else _devkit_val_labels(path)
    if not labels:
        raise DataNotFoundError(f"{path} lists no validation labels. {PREPARE_HINT}")
    return labels


def _kaggle_val_labels(path: Path) -> dict[str, str]:
    import csv

    labels = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                image_id, wnid = row["ImageId"], row["PredictionString"].split()[0]
            except (KeyError, IndexError, AttributeError):
                raise DataNotFoundError(
                    f"{path} is not Kaggle's {KAGGLE_VAL_LABELS} (rows 'ImageId,PredictionString' with the wnid first)"
                ) from None
            labels[image_id] = wnid
    return labels


def _devkit_val_labels(path: Path) -> dict[str, str]:
    """Line i of the ground truth is the ILSVRC2012_ID of val image i; meta.mat maps IDs to wnids."""
    import scipy.io

    meta = truth = None
    with _open_tar(path, "r:*") as tar:
        for member in tar:
            if member.name.endswith("data/meta.mat"):
                meta = scipy.io.loadmat(io.BytesIO(tar.extractfile(member).read()), squeeze_me=True)
            elif member.name.endswith("data/ILSVRC2012_validation_ground_truth.txt"):
                truth = tar.extractfile(member).read().decode().split()
    if meta is None or truth is None or "synsets" not in meta:
        raise DataNotFoundError(
            f"{path} lacks data/meta.mat or data/ILSVRC2012_validation_ground_truth.txt: it is not {DEVKIT}"
        )
    synsets = meta["synsets"]
    wnids = {int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"], strict=True)}
    return {f"ILSVRC2012_val_{i:08d}": wnids[int(t)] for i, t in enumerate(truth, start=1)}
