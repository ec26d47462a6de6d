"""Datasets that need preparing, and the one contract ``algoperf data prepare`` calls.

A dataset is prepared by a function in its workload package's ``prepare.py``::

    def prepare(data_dir: Path, source: Path | None = None, **options: str) -> Path

It writes the layout that AlgoPerf's dataset setup produces (so a folder a user already
made with AlgoPerf's ``dataset_setup.py`` works unchanged) under ``data_dir``, the folder
later passed as ``algoperf run --data-dir``, and returns the folder it wrote. ``source`` is
what the user downloaded (an official archive, a folder of them, or a text corpus);
where the dataset has a public download and ``source`` is None, ``prepare`` fetches it.
Missing or wrong sources raise ``spec.DataNotFoundError`` saying what to download and
where to put it. ``options`` are the dataset's own settings (``--option key=value``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Prepare(Protocol):
    def __call__(self, data_dir: Path, source: Path | None = None, **options: str) -> Path: ...


@dataclass(frozen=True)
class Dataset:
    name: str
    module: str  # the workload package's prepare module, which defines ``prepare``
    workloads: str
    source: str  # what ``--source`` takes


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("mnist", "algoperf.workloads.mnist.prepare", "mnist",
            "a folder with the four IDX files (downloaded when omitted)"),
    Dataset("cifar", "algoperf.workloads.cifar.prepare", "cifar",
            "cifar-10-python.tar.gz or a folder holding it (downloaded when omitted)"),
    Dataset("imagenet", "algoperf.workloads.imagenet_resnet.prepare", "imagenet_resnet, imagenet_vit",
            "a folder with ILSVRC2012_img_train.tar, ILSVRC2012_img_val.tar, the val labels "
            "(ILSVRC2012_devkit_t12.tar.gz or Kaggle's LOC_val_solution.csv) and "
            "imagenetv2-matched-frequency.tar.gz (downloaded when missing)"),
    Dataset("ogbg", "algoperf.workloads.ogbg.prepare", "ogbg",
            "the OGB molpcba archive (pcba.zip) or its extracted folder (downloaded when omitted)"),
    Dataset("wmt", "algoperf.workloads.wmt.prepare", "wmt",
            "a folder with the WMT17 de-en training corpora and newstest2013/2014"),
    Dataset("lm", "algoperf.workloads.lm.prepare", "lm",
            "a text file, a folder of .txt files, or a parquet file with a 'text' column"),
    Dataset("criteo1tb", "algoperf.workloads.criteo1tb.prepare", "criteo1tb",
            "a folder with the Criteo 1TB day_0 ... day_23 files (plain or .gz)"),
    Dataset("fastmri", "algoperf.workloads.fastmri.prepare", "fastmri",
            "a folder with knee_singlecoil_train.tar.xz and knee_singlecoil_val.tar.xz"),
    Dataset("librispeech", "algoperf.workloads.librispeech_conformer.prepare",
            "librispeech_conformer, librispeech_deepspeech",
            "a folder with the six LibriSpeech .tar.gz archives (train-clean-100, ..., test-clean; downloaded when omitted)"),
)}


def get_prepare(name: str) -> Prepare:
    """The ``prepare`` function of dataset ``name`` (KeyError naming the known ones)."""
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; preparable: {', '.join(DATASETS)}")
    module = importlib.import_module(DATASETS[name].module)
    return module.prepare
