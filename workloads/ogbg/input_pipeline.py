"""ogbg-molpcba from the TFDS files AlgoPerf's dataset setup writes, read without TensorFlow.

Layout (``datasets/dataset_setup.py --ogbg`` or ``algoperf data prepare ogbg``):
``<data_dir>/ogbg/ogbg_molpcba/0.1.3/`` holding
``ogbg_molpcba-{train,validation,test}.tfrecord-XXXXX-of-YYYYY``. We also accept
``<data_dir>`` pointing at the ``ogbg`` folder or at the version folder itself. Each record
is TFDS's ogbg_molpcba Example: ``edge_feat`` [m, 3] and ``node_feat`` [n, 9] float32,
``edge_index`` [m, 2] and ``num_edges`` / ``num_nodes`` [1] int64, ``labels`` [128] float32
with NaN where unlabelled (tensors flattened).

Each molecule becomes a graph with both edge directions (the edge list, then its reverse,
features duplicated), as in the reference. Batches follow the reference's dynamic batching:
per device shard, graphs are added in stream order while the shard holds at most ``b``
graphs, ``26 b`` nodes and ``56 b`` edges (``b = global_batch_size / num_shards``); the shard
is then padded to exactly ``26 b + 1`` nodes, ``56 b`` edges and ``b + 1`` graphs (all
padding nodes and edges in one padding graph, further padding graphs empty), and the
shards are concatenated with global node indices. Unlike the reference, the last
incomplete group of shards of a finite split is emitted too (padded with empty shards),
so every eval example counts exactly once on any number of devices.

Differences (documented in README.md): training shuffles with a full per-epoch
permutation instead of TFDS file shuffling plus a 32,768-graph buffer.
"""

from __future__ import annotations

import gzip
import io
import re
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from algoperf import spec, tfds_writer, tfrecord

from .model import GraphsTuple

AVG_NODES_PER_GRAPH = 26
AVG_EDGES_PER_GRAPH = 56
NUM_TASKS = 128
TFDS_NAME = "ogbg_molpcba"
TFDS_VERSION = "0.1.3"


@dataclass
class Graph:
    """One molecule with bidirectional edges; labels [128] with NaN for missing."""

    nodes: np.ndarray  # [n, 9]
    edges: np.ndarray  # [2m, 3]
    senders: np.ndarray  # [2m]
    receivers: np.ndarray  # [2m]
    labels: np.ndarray  # [128]


def example_to_graph(example: dict[str, np.ndarray]) -> Graph:
    """A parsed TFDS ogbg_molpcba Example as a ``Graph`` (edges made bidirectional)."""
    nodes = np.asarray(example["node_feat"], np.float32).reshape(-1, 9)
    edge_feat = np.asarray(example["edge_feat"], np.float32).reshape(-1, 3)
    edge_index = np.asarray(example["edge_index"], np.int32).reshape(-1, 2)
    senders, receivers = edge_index[:, 0], edge_index[:, 1]
    return Graph(
        nodes=nodes,
        edges=np.concatenate([edge_feat, edge_feat]),
        senders=np.concatenate([senders, receivers]),
        receivers=np.concatenate([receivers, senders]),
        labels=np.asarray(example["labels"], np.float32).reshape(NUM_TASKS),
    )


def split_files(data_dir: str | None, split: str) -> list[Path]:
    """The TFRecord shards of ``split``; raises DataNotFoundError with what to do."""
    how = (
        "prepare it with `algoperf data prepare ogbg --data-dir DIR [--source pcba.zip]` or AlgoPerf's "
        "`python datasets/dataset_setup.py --data_dir DIR --ogbg` (TFDS ogbg_molpcba 0.1.3), "
        "and pass --data-dir DIR"
    )
    if not data_dir:
        raise DataNotFoundError(f"the ogbg workloads need --data-dir: {how}")
    root = Path(data_dir)
    candidates = [
        root / "ogbg" / TFDS_NAME / TFDS_VERSION,
        root / TFDS_NAME / TFDS_VERSION,
        root,
    ]
    for folder in candidates:
        files = sorted(folder.glob(f"{TFDS_NAME}-{split}.tfrecord*"))
        if files:
            return files
    raise DataNotFoundError(
        f"no {TFDS_NAME}-{split}.tfrecord* files under {root} "
        f"(looked in {', '.join(str(c) for c in candidates)}): {how}"
    )


DataNotFoundError = spec.DataNotFoundError


def load_split(data_dir: str | None, split: str) -> list[Graph]:
    """Every graph of ``split`` ('train', 'validation', 'test') in stored order."""
    return [example_to_graph(ex) for ex in tfrecord.read_examples(split_files(data_dir, split))]


def _pad_shard(graphs: list[Graph], b: int) -> dict[str, np.ndarray]:
    """One shard padded to ``26 b + 1`` nodes, ``56 b`` edges, ``b + 1`` graphs."""
    max_nodes = AVG_NODES_PER_GRAPH * b + 1
    max_edges = AVG_EDGES_PER_GRAPH * b
    n_node = np.zeros(b + 1, np.int32)
    n_edge = np.zeros(b + 1, np.int32)
    nodes = np.zeros((max_nodes, 9), np.float32)
    edges = np.zeros((max_edges, 3), np.float32)
    senders = np.zeros(max_edges, np.int32)
    receivers = np.zeros(max_edges, np.int32)
    labels = np.zeros((b + 1, NUM_TASKS), np.float32)
    weights = np.zeros((b + 1, NUM_TASKS), np.float32)
    node_at = edge_at = 0
    for i, g in enumerate(graphs):
        n, m = len(g.nodes), len(g.senders)
        nodes[node_at : node_at + n] = g.nodes
        edges[edge_at : edge_at + m] = g.edges
        senders[edge_at : edge_at + m] = g.senders + node_at
        receivers[edge_at : edge_at + m] = g.receivers + node_at
        n_node[i], n_edge[i] = n, m
        labeled = ~np.isnan(g.labels)
        labels[i] = np.where(labeled, g.labels, 0.0)
        weights[i] = labeled
        node_at += n
        edge_at += m
    # The padding graph (index len(graphs)) takes every padding node and edge; its edges
    # point at its first node. Later padding graphs stay empty.
    n_node[len(graphs)] = max_nodes - node_at
    n_edge[len(graphs)] = max_edges - edge_at
    senders[edge_at:] = node_at
    receivers[edge_at:] = node_at
    return {
        "nodes": nodes, "edges": edges, "senders": senders, "receivers": receivers,
        "n_node": n_node, "n_edge": n_edge, "targets": labels, "weights": weights,
    }


def _shard_batches(graphs: Iterable[Graph], b: int) -> Iterator[list[Graph]]:
    """Greedy dynamic batching: at most ``b`` graphs, ``26 b`` nodes, ``56 b`` edges."""
    max_nodes, max_edges = AVG_NODES_PER_GRAPH * b, AVG_EDGES_PER_GRAPH * b
    current: list[Graph] = []
    nodes = edges = 0
    for g in graphs:
        n, m = len(g.nodes), len(g.senders)
        if n > max_nodes or m > max_edges:
            raise ValueError(
                f"a graph with {n} nodes and {m} edges does not fit a shard budget of "
                f"{max_nodes} nodes and {max_edges} edges; use a larger batch size"
            )
        if len(current) == b or nodes + n > max_nodes or edges + m > max_edges:
            yield current
            current, nodes, edges = [], 0, 0
        current.append(g)
        nodes += n
        edges += m
    if current:
        yield current


def _concat_shards(shards: list[dict[str, np.ndarray]]) -> dict:
    """Shards joined into one global batch; node indices offset by each shard's start."""
    offsets = np.cumsum([0] + [len(s["nodes"]) for s in shards[:-1]])
    cat = {k: np.concatenate([s[k] for s in shards]) for k in shards[0] if k not in ("senders", "receivers")}
    for key in ("senders", "receivers"):
        cat[key] = np.concatenate([s[key] + off for s, off in zip(shards, offsets, strict=True)])
    inputs = GraphsTuple(
        nodes=cat["nodes"], edges=cat["edges"], senders=cat["senders"],
        receivers=cat["receivers"], n_node=cat["n_node"], n_edge=cat["n_edge"],
    )
    return {"inputs": inputs, "targets": cat["targets"], "weights": cat["weights"]}


def batches(graphs: Iterable[Graph], global_batch_size: int, num_shards: int) -> Iterator[dict]:
    """Global batches of ``num_shards`` padded shard-batches; a finite stream's last
    incomplete group is completed with empty shards, so no graph is dropped."""
    if global_batch_size % num_shards:
        raise ValueError(
            f"batch size {global_batch_size} is not divisible by the {num_shards} devices"
        )
    b = global_batch_size // num_shards
    group: list[dict[str, np.ndarray]] = []
    for shard in _shard_batches(graphs, b):
        group.append(_pad_shard(shard, b))
        if len(group) == num_shards:
            yield _concat_shards(group)
            group = []
    if group:
        group += [_pad_shard([], b) for _ in range(num_shards - len(group))]
        yield _concat_shards(group)


def shuffled_stream(graphs: list[Graph], seed: int) -> Iterator[Graph]:
    """Endless stream of ``graphs``, a fresh permutation every epoch."""
    rng = np.random.default_rng(seed)
    while True:
        for i in rng.permutation(len(graphs)):
            yield graphs[i]


# --- algoperf data prepare ogbg ---------------------------------------------------------
# OGB's ogbg-molpcba download (pcba.zip) holds pcba/raw/*.csv.gz (no header; one row per
# edge, node or graph, graphs concatenated; edge endpoints are per-graph node indices;
# unlabelled tasks are empty fields) and pcba/split/scaffold/{train,valid,test}.csv.gz
# (graph indices). TFDS's builder (0.1.3) yields graph idx with key idx for every idx in the
# split, features as below; tfds_writer orders and shards the records as TFDS does.

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
