"""``algoperf data prepare fastmri``: the official fastMRI knee archives into AlgoPerf's layout.

Reads ``knee_singlecoil_train.tar.xz`` and ``knee_singlecoil_val.tar.xz`` (fastMRI's
single-coil knee data, behind a data use agreement: no direct download) from a local
folder. Writes their ``.h5`` volumes flat into
``<data_dir>/fastmri/knee_singlecoil_{train,val}/``, AlgoPerf's renamed folders (the
volume format and the splits are in ``input_pipeline``'s docstring).
"""

from __future__ import annotations

import glob
import os
import shutil
import tarfile
from pathlib import Path

from algoperf.spec import DataNotFoundError

from .input_pipeline import SETUP_HINT, TRAIN_DIR, VAL_DIR, slice_index

ARCHIVES = {TRAIN_DIR: "knee_singlecoil_train.tar.xz", VAL_DIR: "knee_singlecoil_val.tar.xz"}


def _extract_volumes(archive: Path, out_dir: Path) -> int:
    """Stream the ``.h5`` members of a tar.xz into ``out_dir`` (flat, as AlgoPerf's renamed folders)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    try:
        with tarfile.open(archive, "r|*") as tar:  # streaming: one pass over the archive
            for member in tar:
                name = os.path.basename(member.name)
                if not member.isfile() or not name.endswith(".h5"):
                    continue
                part = out_dir / f"{name}.part"
                src = tar.extractfile(member)
                assert src is not None
                with src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 24)
                part.replace(out_dir / name)
                count += 1
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"reading {archive} failed ({e}): re-download it") from e
    if count == 0:
        raise ValueError(f"{archive} holds no .h5 volumes: is it the fastMRI knee single-coil archive?")
    return count


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Extract the official archives into ``<data_dir>/fastmri/knee_singlecoil_{train,val}/``.

    ``source``: a folder with ``knee_singlecoil_train.tar.xz`` and
    ``knee_singlecoil_val.tar.xz`` (their ``singlecoil_train/``, ``singlecoil_val/``
    folders become AlgoPerf's renamed ``knee_singlecoil_*``). The test archive is not
    needed: AlgoPerf's test split is half of the val set. No options.
    """
    if options:
        raise TypeError(f"fastmri takes no options, got {', '.join(sorted(options))}")
    if source is None:
        raise DataNotFoundError(f"fastMRI needs a signed data use agreement, so it has no direct download. {SETUP_HINT}")
    source = Path(source)
    archives = {folder: source / name for folder, name in ARCHIVES.items()}
    missing = [str(p) for p in archives.values() if not p.is_file()]
    if missing:
        raise DataNotFoundError(f"missing {', '.join(missing)}. {SETUP_HINT}")
    out = Path(data_dir) / "fastmri"
    for folder, archive in archives.items():
        _extract_volumes(archive, out / folder)
        slice_index(sorted(glob.glob(str(out / folder / "*.h5")))[:1])  # the right kind of file
    return out
