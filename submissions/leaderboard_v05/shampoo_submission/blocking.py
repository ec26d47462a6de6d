"""Blocking of parameters for Shampoo: merge small dims, split large ones, stack equal blocks.

Distributed Shampoo (Shi et al. 2023, section 3) preconditions each parameter block by
block: a tensor of shape (n_1, ..., n_k) is first reshaped by merging neighbouring dims
while their product stays <= ``max_dim`` (dims of size 1 dropped), then every dim larger
than ``max_dim`` is cut into chunks of ``max_dim`` (the last chunk holds the remainder), and
each block of the cartesian product of chunks gets its own Kronecker factors.

To keep the compiled update small, blocks are not handled one by one: a merged tensor is
split into at most 2^k *regions* (per dim: the part covered by whole chunks, and the
remainder), each region is reshaped into a stack of equal blocks in one reshape/transpose,
and stacks of equal block shape from all parameters are concatenated into one array, so
the statistics, eigendecompositions and preconditioning run once per distinct block shape
(vmapped / batched) however many blocks there are.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Sequence

import jax.numpy as jnp


def merge_small_dims(shape: Sequence[int], max_dim: int) -> tuple[int, ...]:
    """Drop size-1 dims, then greedily merge neighbours while the product stays <= max_dim.

    (1, 1) -> (1,); (3, 4, 100) with max 1024 -> (12, 100); (2000, 3) -> (2000, 3).
    """
    squeezed = [d for d in shape if d > 1] or [1]
    merged = [squeezed[0]]
    for d in squeezed[1:]:
        if merged[-1] * d <= max_dim:
            merged[-1] *= d
        else:
            merged.append(d)
    return tuple(merged)


@dataclasses.dataclass(frozen=True)
class Region:
    """One region of a merged tensor: per dim a (start, block size, number of blocks)."""

    starts: tuple[int, ...]
    block: tuple[int, ...]
    counts: tuple[int, ...]

    @property
    def num_blocks(self) -> int:
        return math.prod(self.counts)


def _dim_parts(n: int, max_dim: int) -> list[tuple[int, int, int]]:
    """(start, block size, count) pieces of one dim: whole chunks, then the remainder."""
    if n <= max_dim:
        return [(0, n, 1)]
    whole, rest = divmod(n, max_dim)
    parts = [(0, max_dim, whole)]
    if rest:
        parts.append((whole * max_dim, rest, 1))
    return parts


@dataclasses.dataclass(frozen=True)
class ParamBlocking:
    """How one parameter is blocked: its shape, merged shape and regions."""

    shape: tuple[int, ...]
    merged: tuple[int, ...]
    regions: tuple[Region, ...]

    @classmethod
    def create(cls, shape: Sequence[int], max_dim: int) -> ParamBlocking:
        merged = merge_small_dims(shape, max_dim)
        regions = tuple(
            Region(
                starts=tuple(p[0] for p in combo),
                block=tuple(p[1] for p in combo),
                counts=tuple(p[2] for p in combo),
            )
            for combo in itertools.product(*(_dim_parts(n, max_dim) for n in merged))
        )
        return cls(tuple(shape), merged, regions)

    def split(self, x: jnp.ndarray) -> list[jnp.ndarray]:
        """The regions of ``x`` as stacks [num_blocks, *block], blocks in row-major order."""
        xm = x.reshape(self.merged)
        stacks = []
        for r in self.regions:
            idx = tuple(slice(s, s + b * c) for s, b, c in zip(r.starts, r.block, r.counts, strict=True))
            part = xm[idx]
            # [c1, b1, c2, b2, ...] -> [c1, c2, ..., b1, b2, ...]
            interleaved = [v for cb in zip(r.counts, r.block, strict=True) for v in cb]
            k = len(r.block)
            part = part.reshape(interleaved).transpose(
                [2 * i for i in range(k)] + [2 * i + 1 for i in range(k)]
            )
            stacks.append(part.reshape((r.num_blocks, *r.block)))
        return stacks

    def merge(self, stacks: Sequence[jnp.ndarray]) -> jnp.ndarray:
        """Inverse of :meth:`split`: stacks of blocks back to a tensor of ``shape``."""
        if len(self.regions) == 1 and self.regions[0].num_blocks == 1:  # the usual case: one block
            return stacks[0].reshape(self.shape)
        out = jnp.zeros(self.merged, stacks[0].dtype)
        k = len(self.merged)
        for r, stack in zip(self.regions, stacks, strict=True):
            part = stack.reshape((*r.counts, *r.block))
            order = [v for i in range(k) for v in (i, k + i)]
            part = part.transpose(order).reshape(tuple(b * c for b, c in zip(r.block, r.counts, strict=True)))
            idx = tuple(slice(s, s + b * c) for s, b, c in zip(r.starts, r.block, r.counts, strict=True))
            out = out.at[idx].set(part)
        return out.reshape(self.shape)


@dataclasses.dataclass(frozen=True)
class BlockPlan:
    """Every parameter's blocking and the groups of equal block shape they stack into.

    ``groups`` maps a block shape to the list of (param index, region index) whose stacks
    are concatenated, in that order, into that group's array.
    """

    params: tuple[ParamBlocking, ...]
    groups: dict[tuple[int, ...], tuple[tuple[int, int], ...]]

    @classmethod
    def create(cls, shapes: Sequence[Sequence[int]], max_dim: int) -> BlockPlan:
        params = tuple(ParamBlocking.create(s, max_dim) for s in shapes)
        groups: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for i, p in enumerate(params):
            for j, r in enumerate(p.regions):
                groups.setdefault(r.block, []).append((i, j))
        return cls(params, {k: tuple(v) for k, v in groups.items()})

    def group_sizes(self) -> dict[tuple[int, ...], int]:
        """Number of blocks in each group."""
        return {
            shape: sum(self.params[i].regions[j].num_blocks for i, j in members)
            for shape, members in self.groups.items()
        }

    def to_groups(self, leaves: Sequence[jnp.ndarray]) -> dict[tuple[int, ...], jnp.ndarray]:
        """Parameter-shaped leaves -> one stacked array [blocks, *shape] per block shape."""
        split = [p.split(x) for p, x in zip(self.params, leaves, strict=True)]
        return {
            shape: jnp.concatenate([split[i][j] for i, j in members], axis=0)
            for shape, members in self.groups.items()
        }

    def from_groups(self, groups: dict[tuple[int, ...], jnp.ndarray]) -> list[jnp.ndarray]:
        """Inverse of :meth:`to_groups`."""
        stacks: list[list[jnp.ndarray | None]] = [[None] * len(p.regions) for p in self.params]
        for shape, members in self.groups.items():
            offset = 0
            for i, j in members:
                n = self.params[i].regions[j].num_blocks
                stacks[i][j] = groups[shape][offset:offset + n]
                offset += n
        return [p.merge(s) for p, s in zip(self.params, stacks, strict=True)]
