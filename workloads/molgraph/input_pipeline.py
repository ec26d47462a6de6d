"""Molecule-like graphs with multi-label targets from a fixed teacher (generated, no download).

Molecules (``_molecule``): 6-24 heavy atoms of 8 elements with their usual valences. A
scaffold of 0-3 rings (5- or 6-membered; six-rings often aromatic, some hetero atoms;
rings fused on a shared bond or joined by a single bond) is grown by attaching atoms to
atoms with free valence (halogens are therefore terminal); finally some non-ring single
bonds are raised to double or triple bonds where both ends have the valence for it.
Implicit hydrogens fill the remaining valence.

Features, in the spirit of OGB's (one-hot rather than integer codes):
* atoms (``NODE_DIM`` = 19): element (8), degree 0-4 (5), hydrogens 0-3 (4), aromatic,
  in a ring;
* bonds (``EDGE_DIM`` = 5): single/double/triple/aromatic, in a ring.
Bonds are stored in both directions, as in AlgoPerf's ogbg pipeline.

Targets (``NUM_TASKS`` = 32), like ogbg-molpcba's assays: each task is the presence of a
substructure (an element-bond-element pair or an element-bond-element-bond-element path,
a ring kind) or of "at least k" of one, or an AND/OR of two such, chosen once from a pilot
sample so that 3-50% of molecules are positive; 2% of labels are flipped, and each task
leaves a fixed fraction (5-60%) of molecules unlabelled (NaN).

Each graph is stored padded to ``MAX_NODES`` nodes and ``MAX_EDGES`` directed edges (masks
mark the real ones); a batch is a stack of graphs. Generation (~1 ms per molecule) is
cached as an .npz file.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections import Counter
from pathlib import Path

import numpy as np

from algoperf.data import generated

ELEMENTS = ("C", "N", "O", "S", "F", "Cl", "Br", "P")
VALENCE = np.array([4, 3, 2, 2, 1, 1, 1, 3])
ELEMENT_FREQ = np.array([0.62, 0.12, 0.14, 0.04, 0.03, 0.03, 0.01, 0.01])
BOND_TYPES = ("single", "double", "triple", "aromatic")
BOND_SYMBOL = ("-", "=", "#", ":")
BOND_ORDER = (1.0, 2.0, 3.0, 1.5)
_VALENCE = tuple(int(v) for v in VALENCE)
_ELEMENT_FREQ = tuple(float(f) for f in ELEMENT_FREQ)
SINGLE, DOUBLE, TRIPLE, AROMATIC = range(4)

MAX_NODES = 24
MAX_BONDS = 28
MAX_EDGES = 2 * MAX_BONDS
NODE_DIM = len(ELEMENTS) + 5 + 4 + 2
EDGE_DIM = len(BOND_TYPES) + 1
NUM_TASKS = 32

NUM_TRAIN = 30_000
NUM_VALIDATION = 5_000
NUM_TEST = 5_000
SEED = 1_729
NUM_PILOT = 2_000
LABEL_NOISE = 0.02
VERSION = 2  # bump when the generator changes: it renames the cache file


class Molecule:
    """Atoms (element indices), bonds (i, j, type) and per-atom / per-bond ring flags."""

    def __init__(self) -> None:
        self.elements: list[int] = []
        self.bonds: list[tuple[int, int, int]] = []
        self.used: list[float] = []  # bond orders summed per atom
        self.degrees: list[int] = []
        self.ring_atoms: set[int] = set()
        self.ring_bonds: set[tuple[int, int]] = set()
        self.aromatic_atoms: set[int] = set()
        self.rings: list[tuple[int, bool, frozenset[int]]] = []  # (size, aromatic, elements)

    def free_valence(self, atom: int) -> float:
        return _VALENCE[self.elements[atom]] - self.used[atom]

    def add_atom(self, element: int) -> int:
        self.elements.append(element)
        self.used.append(0.0)
        self.degrees.append(0)
        return len(self.elements) - 1

    def add_bond(self, i: int, j: int, bond_type: int, ring: bool = False) -> None:
        self.bonds.append((i, j, bond_type))
        for a in (i, j):
            self.used[a] += BOND_ORDER[bond_type]
            self.degrees[a] += 1
        if ring:
            self.ring_bonds.add((min(i, j), max(i, j)))

    def set_bond_type(self, k: int, bond_type: int) -> None:
        i, j, old = self.bonds[k]
        for a in (i, j):
            self.used[a] += BOND_ORDER[bond_type] - BOND_ORDER[old]
        self.bonds[k] = (i, j, bond_type)


def _pick(rng: np.random.Generator, probs: np.ndarray | list[float]) -> int:
    """An index drawn with the given probabilities (faster than ``rng.choice`` for scalars)."""
    cdf = list(itertools.accumulate(probs))
    return min(bisect.bisect_right(cdf, rng.random() * cdf[-1]), len(cdf) - 1)


def _ring_elements(rng: np.random.Generator, size: int, aromatic: bool) -> list[int]:
    """Ring atoms: mostly carbon, sometimes one or two hetero atoms."""
    elements = [0] * size
    num_hetero = _pick(rng, [0.55, 0.35, 0.10])
    for pos in rng.permutation(size)[:num_hetero]:
        if aromatic and size == 6:
            elements[pos] = 1  # pyridine-like: aromatic six-rings take N only
        else:
            elements[pos] = 1 + _pick(rng, [0.5, 0.35, 0.15])
    return elements


def _add_ring(mol: Molecule, rng: np.random.Generator) -> None:
    """Add a 5/6-ring, fused to a previous ring's bond or joined to the molecule by a bond."""
    size = 5 + _pick(rng, [0.35, 0.65])
    aromatic = size == 6 and rng.random() < 0.6
    ring_type = AROMATIC if aromatic else SINGLE
    elements = _ring_elements(rng, size, aromatic)
    fusable = [
        (i, j)
        for i, j, t in mol.bonds
        if (min(i, j), max(i, j)) in mol.ring_bonds
        and t == ring_type
        and mol.elements[i] == 0
        and mol.elements[j] == 0
        and mol.degrees[i] == 2
        and mol.degrees[j] == 2
    ]
    if fusable and rng.random() < 0.4:
        i, j = fusable[rng.integers(len(fusable))]
        new = [mol.add_atom(e) for e in elements[2:]]
        cycle = [j, i] + new
    else:
        attach = [a for a in range(len(mol.elements)) if mol.free_valence(a) >= 1]
        cycle = [mol.add_atom(e) for e in elements]
        if attach:  # the linker bond starts at a ring carbon: it has valence to spare
            mol.add_bond(attach[rng.integers(len(attach))], cycle[elements.index(0)], SINGLE)
    for k in range(size):
        a, b = cycle[k], cycle[(k + 1) % size]
        if (min(a, b), max(a, b)) not in mol.ring_bonds:
            mol.add_bond(a, b, ring_type, ring=True)
    mol.ring_atoms.update(cycle)
    if aromatic:
        mol.aromatic_atoms.update(cycle)
    mol.rings.append((size, aromatic, frozenset(mol.elements[a] for a in cycle)))


def _molecule(rng: np.random.Generator) -> Molecule:
    """One random molecule-like graph (see the module docstring)."""
    mol = Molecule()
    num_atoms = int(np.clip(np.round(rng.normal(14.0, 4.0)), 6, MAX_NODES))
    num_rings = _pick(rng, [0.15, 0.4, 0.3, 0.15])
    for _ in range(num_rings):
        if len(mol.elements) + 6 > num_atoms:
            break
        _add_ring(mol, rng)
    if not mol.elements:
        mol.add_atom(0)
    while len(mol.elements) < num_atoms:
        attach = [a for a in range(len(mol.elements)) if mol.free_valence(a) >= 1]
        if not attach:
            break
        # Prefer chain ends a little: molecules get branches and chains, not only stars.
        parent = attach[_pick(rng, [1.0 + (mol.degrees[a] == 1) for a in attach])]
        element = _pick(rng, _ELEMENT_FREQ)
        mol.add_bond(parent, mol.add_atom(element), SINGLE)
    # Raise some chain bonds to double / triple where valence allows.
    for k, (i, j, t) in enumerate(mol.bonds):
        if t != SINGLE or (min(i, j), max(i, j)) in mol.ring_bonds:
            continue
        free = min(mol.free_valence(i), mol.free_valence(j))
        oxygen = 2 in (mol.elements[i], mol.elements[j])
        if free >= 2 and rng.random() < 0.05:
            mol.set_bond_type(k, TRIPLE)
        elif free >= 1 and rng.random() < (0.5 if oxygen else 0.15):
            mol.set_bond_type(k, DOUBLE)
    return mol


def _features(mol: Molecule) -> dict[str, np.ndarray]:
    """Padded per-graph arrays: node and edge features, senders, receivers, masks."""
    n, m = len(mol.elements), len(mol.bonds)
    nodes = np.zeros((MAX_NODES, NODE_DIM), np.float32)
    degree = np.zeros(n, int)
    used = np.zeros(n)
    for i, j, t in mol.bonds:
        degree[[i, j]] += 1
        used[[i, j]] += BOND_ORDER[t]
    for a, e in enumerate(mol.elements):
        hydrogens = int(max(0.0, np.floor(VALENCE[e] - used[a])))
        nodes[a, e] = 1.0
        nodes[a, len(ELEMENTS) + min(degree[a], 4)] = 1.0
        nodes[a, len(ELEMENTS) + 5 + min(hydrogens, 3)] = 1.0
        nodes[a, -2] = float(a in mol.aromatic_atoms)
        nodes[a, -1] = float(a in mol.ring_atoms)
    edges = np.zeros((MAX_EDGES, EDGE_DIM), np.float32)
    senders = np.zeros(MAX_EDGES, np.int32)
    receivers = np.zeros(MAX_EDGES, np.int32)
    for k, (i, j, t) in enumerate(mol.bonds):
        ring = float((min(i, j), max(i, j)) in mol.ring_bonds)
        for slot, (s, r) in ((2 * k, (i, j)), (2 * k + 1, (j, i))):
            edges[slot, t] = 1.0
            edges[slot, -1] = ring
            senders[slot], receivers[slot] = s, r
    node_mask = (np.arange(MAX_NODES) < n).astype(np.float32)
    edge_mask = (np.arange(MAX_EDGES) < 2 * m).astype(np.float32)
    return {
        "inputs": nodes,
        "edge_features": edges,
        "senders": senders,
        "receivers": receivers,
        "node_mask": node_mask,
        "edge_mask": edge_mask,
    }


def motif_counts(mol: Molecule) -> Counter:
    """Counts of the substructures tasks are built from.

    Keys: ``"C=O"``-style bonded pairs (elements sorted), ``"O=C-N"``-style two-bond paths
    (written from the lexically smaller end), ``"ring5"``, ``"ring6"``, ``"aromatic"``,
    ``"hetero_ring"``, ``"aromatic_N"``, ``"fused"`` and ``"halogen"``.
    """
    counts: Counter = Counter()
    names = [ELEMENTS[e] for e in mol.elements]
    neighbours: dict[int, list[tuple[int, int]]] = {a: [] for a in range(len(names))}
    for i, j, t in mol.bonds:
        a, b = sorted((names[i], names[j]))
        counts[f"{a}{BOND_SYMBOL[t]}{b}"] += 1
        neighbours[i].append((j, t))
        neighbours[j].append((i, t))
    for centre, nbrs in neighbours.items():
        for x in range(len(nbrs)):
            for y in range(x + 1, len(nbrs)):
                (i, ti), (j, tj) = nbrs[x], nbrs[y]
                left = f"{names[i]}{BOND_SYMBOL[ti]}"
                right = f"{BOND_SYMBOL[tj]}{names[j]}"
                path = left + names[centre] + right
                reverse = f"{names[j]}{BOND_SYMBOL[tj]}{names[centre]}{BOND_SYMBOL[ti]}{names[i]}"
                counts[min(path, reverse)] += 1
    for size, aromatic, elements in mol.rings:
        counts[f"ring{size}"] += 1
        counts["aromatic"] += aromatic
        counts["hetero_ring"] += any(e != 0 for e in elements)
        counts["aromatic_N"] += aromatic and 1 in elements
    shared = Counter(a for ring_bond in mol.ring_bonds for a in ring_bond)
    counts["fused"] = int(any(c >= 3 for c in shared.values()))
    counts["halogen"] = sum(n in ("F", "Cl", "Br") for n in names)
    return counts


class Teacher:
    """The 32 fixed tasks: (motif, at least k) literals combined by AND/OR, chosen on a pilot."""

    def __init__(self) -> None:
        rng = np.random.default_rng([SEED, 99])
        pilot = [motif_counts(_molecule(rng)) for _ in range(NUM_PILOT)]
        keys = sorted({k for c in pilot for k in c})
        # Literals "count(motif) >= k" with a useful positive rate.
        literals = []
        for key in keys:
            values = np.array([c.get(key, 0) for c in pilot])
            for k in (1, 2, 3):
                rate = np.mean(values >= k)
                if 0.05 <= rate <= 0.6:
                    literals.append((key, k, values >= k))
        self.tasks: list[tuple[str, list[tuple[str, int]]]] = []
        order = rng.permutation(len(literals))
        used: set[tuple] = set()
        for idx in order:
            if len(self.tasks) == NUM_TASKS:
                break
            key, k, hits = literals[idx]
            kind = rng.choice(["one", "and", "or"], p=[0.4, 0.3, 0.3])
            if kind == "one":
                task = ("one", [(key, k)])
                rate = hits.mean()
            else:
                key2, k2, hits2 = literals[order[rng.integers(len(order))]]
                if key2 == key:
                    continue
                combined = (hits & hits2) if kind == "and" else (hits | hits2)
                task = (str(kind), [(key, k), (key2, k2)])
                rate = combined.mean()
            signature = (task[0], tuple(sorted(task[1])))
            if 0.03 <= rate <= 0.5 and signature not in used:
                used.add(signature)
                self.tasks.append(task)
        if len(self.tasks) < NUM_TASKS:
            raise RuntimeError("the pilot sample yielded too few tasks")
        self.observed = rng.uniform(0.4, 0.95, NUM_TASKS)

    def labels(self, counts: Counter) -> np.ndarray:
        """The noiseless labels of one molecule, [NUM_TASKS] in {0, 1}."""
        out = np.zeros(NUM_TASKS, np.float32)
        for t, (kind, literals) in enumerate(self.tasks):
            values = [counts.get(key, 0) >= k for key, k in literals]
            out[t] = all(values) if kind == "and" else any(values)
        return out


@functools.lru_cache(maxsize=1)
def teacher() -> Teacher:
    """The fixed teacher (built once per process: its pilot sample takes about a second)."""
    return Teacher()


def generate(seed: int = SEED, sizes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """All splits' arrays, freshly generated.

    The teacher's tasks are fixed; ``seed`` draws the molecules, label noise and missing
    labels, and ``sizes`` (split -> count, default the workload's) sets how many.
    """
    tasks = teacher()
    sizes = sizes or {"train": NUM_TRAIN, "validation": NUM_VALIDATION, "test": NUM_TEST}
    out: dict[str, np.ndarray] = {}
    for offset, (split, n) in enumerate(sizes.items()):
        rng = np.random.default_rng([seed, offset])
        graphs, labels = [], []
        while len(graphs) < n:
            mol = _molecule(rng)
            if len(mol.bonds) > MAX_BONDS:
                continue
            graphs.append(_features(mol))
            labels.append(tasks.labels(motif_counts(mol)))
        y = np.stack(labels)
        flip = rng.random(y.shape) < LABEL_NOISE
        y = np.where(flip, 1.0 - y, y).astype(np.float32)
        y[rng.random(y.shape) >= tasks.observed] = np.nan
        for key in graphs[0]:
            out[f"{split}_{key}"] = np.stack([g[key] for g in graphs])
        out[f"{split}_targets"] = y
    return out


SPLIT_KEYS = (
    "inputs",
    "edge_features",
    "senders",
    "receivers",
    "node_mask",
    "edge_mask",
    "targets",
)


def load(data_dir: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Splits 'train', 'validation', 'test' as dicts of per-graph arrays (graph axis first).

    'inputs' [G, MAX_NODES, NODE_DIM], 'edge_features' [G, MAX_EDGES, EDGE_DIM],
    'senders'/'receivers' [G, MAX_EDGES] int32 (node index within the graph),
    'node_mask' [G, MAX_NODES], 'edge_mask' [G, MAX_EDGES], 'targets' [G, NUM_TASKS]
    float32 with NaN for missing labels.
    """
    return to_splits(_load_arrays(generated.cache_path(data_dir, "molgraph", VERSION, SEED, NUM_TRAIN, NUM_VALIDATION, NUM_TEST)))


@functools.lru_cache(maxsize=1)
def _load_arrays(path: Path) -> dict[str, np.ndarray]:
    """The cached arrays (generated and saved first if missing); read once per process."""
    return generated.cached_arrays(path, generate)


def to_splits(arrays: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """``generate``'s flat arrays as {split: {key: array}}."""
    splits = sorted({key.split("_", 1)[0] for key in arrays})
    return {split: {key: arrays[f"{split}_{key}"] for key in SPLIT_KEYS} for split in splits}
