"""``algoperf data prepare ogbg``: OGB's ogbg-molpcba download into AlgoPerf's TFDS files.

Reads OGB's ``pcba.zip`` (a local file, its extracted ``pcba`` folder, or downloaded from
OGB's public URL). It holds ``pcba/raw/*.csv.gz`` (no header; one row per edge, node or
graph, graphs concatenated; edge endpoints are per-graph node indices; unlabelled tasks
are empty fields) and ``pcba/split/scaffold/{train,valid,test}.csv.gz`` (graph indices).

Writes ``<data_dir>/ogbg/ogbg_molpcba/0.1.3/ogbg_molpcba-{train,validation,test}.tfrecord-*``
as TFDS's builder (0.1.3) does: graph ``idx`` under key ``idx`` for every ``idx`` of the
split, with the features ``input_pipeline``'s docstring describes; ``tfds_writer`` orders
and shards the records as TFDS does.
"""

from __future__ import annotations

import gzip
import io
import re
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from algoperf import spec
from algoperf.data import tfds_writer, tfrecord

from .input_pipeline import NUM_TASKS, TFDS_NAME, TFDS_VERSION

OGB_URL = "https://snap.stanford.edu/ogb/data/graphproppred/csv_mol_download/pcba.zip"
_RAW_FILES = {  # feature: (file, columns, dtype)
    "edge_index": ("edge.csv.gz", 2, np.int64),
    "num_nodes": ("num-node-list.csv.gz", 1, np.int64),
    "num_edges": ("num-edge-list.csv.gz", 1, np.int64),
    "node_feat": ("node-feat.csv.gz", 9, np.float32),
    "edge_feat": ("edge-feat.csv.gz", 3, np.float32),
    "labels": ("graph-label.csv.gz", NUM_TASKS, np.float32),
}
_SPLIT_FILES = {"train": "train.csv.gz", "validation": "valid.csv.gz", "test": "test.csv.gz"}
_EMPTY_FIELD = re.compile(rb"(?<![^,\n])(?![^,\n])")  # a field with nothing in it


def read_csv_gz(data: bytes, name: str, columns: int, dtype: type) -> np.ndarray:
    """A headerless gzipped CSV as a [rows, columns] array; empty fields become NaN (as
    pandas reads OGB's unlabelled entries). ValueError names ``name`` if it is malformed."""
    try:
        text = gzip.decompress(data).replace(b"\r\n", b"\n").rstrip(b"\n")
    except (OSError, EOFError) as e:
        raise ValueError(f"{name} is not a gzip file ({e}); download pcba.zip again") from e
    if not text:
        return np.zeros((0, columns), dtype)
    text = _EMPTY_FIELD.sub(b"nan", text)
    try:
        values = np.loadtxt(io.StringIO(text.decode("ascii")), delimiter=",", dtype=dtype, ndmin=2)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{name} is not a CSV of numbers ({e})") from e
    if values.shape[1] != columns:
        raise ValueError(f"{name} has {values.shape[1]} columns, expected {columns}")
    return values


def _ogb_reader(source: Path) -> Callable[[str], bytes]:
    """Reads 'raw/<file>' and 'split/scaffold/<file>' from pcba.zip or its extracted folder."""
    if source.is_file():
        try:
            archive = zipfile.ZipFile(source)
        except zipfile.BadZipFile as e:
            raise ValueError(f"{source} is not a zip file: pass OGB's pcba.zip or its extracted folder") from e
        names = archive.namelist()

        def read(relative: str) -> bytes:
            match = [n for n in names if n == relative or n.endswith("/" + relative)]
            if not match:
                raise spec.DataNotFoundError(f"{source} has no {relative}: is it OGB's pcba.zip ({OGB_URL})?")
            return archive.read(sorted(match, key=len)[0])

        return read
    candidates = [source / "pcba", source]
    folder = next((c for c in candidates if (c / "raw" / "edge.csv.gz").is_file()), None)
    if folder is None:
        if (source / "pcba.zip").is_file():
            return _ogb_reader(source / "pcba.zip")
        raise spec.DataNotFoundError(
            f"no raw/edge.csv.gz in {source} or {source / 'pcba'}: pass OGB's pcba.zip ({OGB_URL}) "
            "or the folder it extracts to"
        )

    def read_file(relative: str) -> bytes:
        path = folder / relative
        if not path.is_file():
            raise spec.DataNotFoundError(f"no {path}: the extracted pcba folder is incomplete ({OGB_URL})")
        return path.read_bytes()

    return read_file


def _graph_examples(data: dict[str, np.ndarray], indices: np.ndarray) -> Iterator[tuple[int, bytes]]:
    """(graph index, serialized TFDS ogbg_molpcba Example) of the graphs ``indices``."""
    node_at = np.concatenate([[0], np.cumsum(data["num_nodes"][:, 0])])
    edge_at = np.concatenate([[0], np.cumsum(data["num_edges"][:, 0])])
    for idx in np.unique(indices):  # TFDS tests membership: repeats count once
        nodes, edges = slice(node_at[idx], node_at[idx + 1]), slice(edge_at[idx], edge_at[idx + 1])
        yield int(idx), tfrecord.make_example({
            "edge_feat": data["edge_feat"][edges],
            "edge_index": data["edge_index"][edges],
            "labels": data["labels"][idx],
            "node_feat": data["node_feat"][nodes],
            "num_edges": data["num_edges"][idx],
            "num_nodes": data["num_nodes"][idx],
        })


def prepare(data_dir: str | Path, source: str | Path | None = None, **options: str) -> Path:
    """Write ``<data_dir>/ogbg/ogbg_molpcba/0.1.3/`` from OGB's ogbg-molpcba download.

    ``source``: ``pcba.zip``, the folder it extracts to (``pcba``, holding ``raw`` and
    ``split``) or a folder holding ``pcba.zip``; None downloads pcba.zip (about 40 MB).
    Splits are OGB's scaffold split (train / valid -> validation / test). No options.
    """
    if options:
        raise ValueError(f"ogbg takes no options (got {sorted(options)})")
    out = Path(data_dir) / "ogbg"
    if source is None:
        source = out / "downloads" / "pcba.zip"
        if not source.is_file():
            source.parent.mkdir(parents=True, exist_ok=True)
            partial = source.with_suffix(".part")
            try:
                urllib.request.urlretrieve(OGB_URL, partial)
            except OSError as e:
                raise spec.DataNotFoundError(
                    f"downloading {OGB_URL} failed ({e}); download it by hand and pass --source pcba.zip"
                ) from e
            partial.rename(source)
    source = Path(source)
    if not source.exists():
        raise spec.DataNotFoundError(f"--source {source} does not exist: pass OGB's pcba.zip ({OGB_URL})")
    read = _ogb_reader(source)
    data = {
        key: read_csv_gz(read(f"raw/{file}"), f"raw/{file}", columns, dtype)
        for key, (file, columns, dtype) in _RAW_FILES.items()
    }
    num_graphs = len(data["num_nodes"])
    checks = {
        "graph-label.csv.gz rows": (len(data["labels"]), num_graphs),
        "num-edge-list.csv.gz rows": (len(data["num_edges"]), num_graphs),
        "node-feat.csv.gz rows": (len(data["node_feat"]), int(data["num_nodes"].sum())),
        "edge.csv.gz rows": (len(data["edge_index"]), int(data["num_edges"].sum())),
        "edge-feat.csv.gz rows": (len(data["edge_feat"]), int(data["num_edges"].sum())),
    }
    for what, (got, expected) in checks.items():
        if got != expected:
            raise ValueError(f"{what}: {got}, but the node/edge lists imply {expected}; is the download complete?")
    folder = out / TFDS_NAME / TFDS_VERSION
    for split, file in _SPLIT_FILES.items():
        indices = read_csv_gz(read(f"split/scaffold/{file}"), f"split/scaffold/{file}", 1, np.int64)[:, 0]
        if indices.size and (indices.min() < 0 or indices.max() >= num_graphs):
            raise ValueError(f"split/scaffold/{file} names graphs outside 0..{num_graphs - 1}")
        tfds_writer.write_split(folder, TFDS_NAME, split, _graph_examples(data, indices))
    return out
