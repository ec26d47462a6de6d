"""``algoperf data prepare cifar``: the official ``cifar-10-python.tar.gz`` into AlgoPerf's layout.

Reads the "CIFAR-10 python version" archive (a local file, a folder holding it, or
downloaded from its official URL), whose ``cifar-10-batches-py/`` folder holds the pickle
batches ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``. Writes
``<data_dir>/cifar10/cifar-10-batches-py/``, the layout of AlgoPerf's PyTorch setup; the
batch format and the splits are described in ``input_pipeline``'s docstring.
"""

from __future__ import annotations

import sys
import tarfile
import urllib.request
from pathlib import Path

from algoperf.spec import DataNotFoundError

from .input_pipeline import load

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Extract ``cifar-10-python.tar.gz`` into ``<data_dir>/cifar10/cifar-10-batches-py``.

    That is the layout of AlgoPerf's PyTorch setup (torchvision's ``CIFAR10`` under
    ``$DATA_DIR/cifar10``), which ``load`` reads. ``source``: the archive, or a folder
    holding it; None downloads it from the official URL into ``<data_dir>/cifar10``.
    Takes no options. Returns the folder of the extracted batches.
    """
    if options:
        raise TypeError(f"cifar takes no --option, got {', '.join(sorted(options))}")
    target = Path(data_dir) / "cifar10"
    target.mkdir(parents=True, exist_ok=True)
    if source is None:
        archive = target / ARCHIVE_URL.rsplit("/", 1)[1]
        if not archive.exists():
            tmp = archive.with_suffix(".part")
            print(f"cifar: downloading {ARCHIVE_URL}", file=sys.stderr, flush=True)
            try:
                urllib.request.urlretrieve(ARCHIVE_URL, tmp)
            except OSError as e:  # URLError included
                raise DataNotFoundError(
                    f"downloading {ARCHIVE_URL} failed ({e}); download cifar-10-python.tar.gz by hand and "
                    f"run `algoperf data prepare cifar --source THAT_FILE --data-dir {data_dir}`"
                ) from e
            tmp.replace(archive)
    else:
        archive = Path(source)
        if archive.is_dir():
            archive = archive / ARCHIVE_URL.rsplit("/", 1)[1]
        if not archive.is_file():
            raise DataNotFoundError(
                f"{archive} not found: pass --source cifar-10-python.tar.gz (the 'CIFAR-10 python version' "
                f"from {ARCHIVE_URL.rsplit('/', 1)[0]}/cifar.html) or the folder holding it"
            )
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(target, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataNotFoundError(f"{archive} is not a readable .tar.gz ({e}); re-download cifar-10-python.tar.gz") from e
    if not (target / "cifar-10-batches-py").is_dir():
        raise DataNotFoundError(
            f"{archive} has no cifar-10-batches-py/ folder: it is not the CIFAR-10 python archive "
            "(cifar-10-python.tar.gz)"
        )
    load(target)  # fails clearly if a batch is missing or not a CIFAR-10 pickle
    return target / "cifar-10-batches-py"
