"""ogbg-molpcba from the TFDS files AlgoPerf's dataset setup writes, read without TensorFlow.

Layout (``datasets/dataset_setup.py --ogbg``, or ``algoperf data prepare ogbg``: ``prepare.py``):
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

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from algoperf import spec
from algoperf.data import tfrecord

from .model import GraphsTuple

AVG_NODES_PER_GRAPH = 26
AVG_EDGES_PER_GRAPH = 56
NUM_TASKS = 128
TFDS_NAME = "ogbg_molpcba"
TFDS_VERSION = "0.1.3"

T = TypeVar("T")


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


def _shards(items: Iterable[T], size: Callable[[T], tuple[int, int]], b: int) -> Iterator[list[T]]:
    """Greedy dynamic batching: at most ``b`` items, ``26 b`` nodes, ``56 b`` edges, where
    ``size(item)`` is (nodes, edges); items are graphs, or indices of graphs when a stream
    seeks (its batch boundaries then cost no graph copies)."""
    max_nodes, max_edges = AVG_NODES_PER_GRAPH * b, AVG_EDGES_PER_GRAPH * b
    current: list[T] = []
    nodes = edges = 0
    for item in items:
        n, m = size(item)
        if n > max_nodes or m > max_edges:
            raise ValueError(
                f"a graph with {n} nodes and {m} edges does not fit a shard budget of "
                f"{max_nodes} nodes and {max_edges} edges; use a larger batch size"
            )
        if len(current) == b or nodes + n > max_nodes or edges + m > max_edges:
            yield current
            current, nodes, edges = [], 0, 0
        current.append(item)
        nodes += n
        edges += m
    if current:
        yield current


def _graph_size(g: Graph) -> tuple[int, int]:
    return len(g.nodes), len(g.senders)


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


def _shard_size(global_batch_size: int, num_shards: int) -> int:
    if global_batch_size % num_shards:
        raise ValueError(f"batch size {global_batch_size} is not divisible by the {num_shards} devices")
    return global_batch_size // num_shards


def batches(graphs: Iterable[Graph], global_batch_size: int, num_shards: int) -> Iterator[dict]:
    """Global batches of ``num_shards`` padded shard-batches; a finite stream's last
    incomplete group is completed with empty shards, so no graph is dropped."""
    b = _shard_size(global_batch_size, num_shards)
    group: list[dict[str, np.ndarray]] = []
    for shard in _shards(graphs, _graph_size, b):
        group.append(_pad_shard(shard, b))
        if len(group) == num_shards:
            yield _concat_shards(group)
            group = []
    if group:
        group += [_pad_shard([], b) for _ in range(num_shards - len(group))]
        yield _concat_shards(group)


class TrainBatches:
    """Endless global batches of ``graphs``, a fresh permutation every epoch (the
    permutations drawn in turn from ``default_rng(seed)``).

    ``seek(n)`` makes batch ``n`` the next one: the shard boundaries before it are found from
    the graphs' node and edge counts alone, with no graph copied or padded.
    """

    def __init__(self, graphs: list[Graph], global_batch_size: int, num_shards: int, seed: int):
        self._b = _shard_size(global_batch_size, num_shards)
        self._graphs, self._num_shards, self._seed = graphs, num_shards, seed
        self._sizes = [_graph_size(g) for g in graphs]
        self.seek(0)

    def _order(self) -> Iterator[int]:
        rng = np.random.default_rng(self._seed)
        while True:
            yield from rng.permutation(len(self._graphs)).tolist()

    def seek(self, n: int) -> None:
        """The next batch is batch ``n`` (0 = the first)."""
        self._shard_indices = _shards(self._order(), self._sizes.__getitem__, self._b)
        for _ in range(n * self._num_shards):
            next(self._shard_indices)

    def __iter__(self) -> TrainBatches:
        return self

    def __next__(self) -> dict:
        shards = [next(self._shard_indices) for _ in range(self._num_shards)]
        return _concat_shards([_pad_shard([self._graphs[i] for i in shard], self._b) for shard in shards])
