"""``algoperf data prepare mnist``: the four official MNIST IDX files into ``<data_dir>/MNIST``.

Reads ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``
and ``t10k-labels-idx1-ubyte`` (plain or ``.gz``) from a local folder, or downloads the
gzipped ones from a public mirror. Writes them unchanged into ``<data_dir>/MNIST``, one of
the folders ``input_pipeline`` looks in (its docstring describes the format and splits).
"""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

from algoperf.spec import DataNotFoundError

from .input_pipeline import FILES, find_files

MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Put the four IDX files into ``<data_dir>/MNIST``: copied from the folder ``source``
    (gzipped or not), or downloaded when ``source`` is None (needs a network). No options."""
    if options:
        raise ValueError(f"mnist takes no --option (got {', '.join(sorted(options))})")
    target = Path(data_dir) / "MNIST"
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        if source is not None:
            found = [p for p in (Path(source) / name, Path(source) / f"{name}.gz") if p.exists()]
            if not found:
                raise DataNotFoundError(f"{source} has no {name}(.gz); download the four MNIST IDX files there")
            shutil.copy(found[0], target / found[0].name)
            continue
        path = target / f"{name}.gz"
        if not path.exists():
            tmp = path.with_suffix(".part")
            try:
                urllib.request.urlretrieve(MIRROR + f"{name}.gz", tmp)
            except OSError as e:
                raise DataNotFoundError(
                    f"downloading {MIRROR}{name}.gz failed ({e}); download the four IDX files by hand "
                    f"and run `algoperf data prepare mnist --source THAT_FOLDER --data-dir {data_dir}`"
                ) from e
            tmp.rename(path)
    find_files(data_dir)
    return target
