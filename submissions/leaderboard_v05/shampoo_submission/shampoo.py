"""Distributed Shampoo's preconditioner as an optax GradientTransformation (one device).

Per step t (1-based), with g the gradient of one parameter and, for each block G of it
(``blocking.py``) of order k, Kronecker factors F_1..F_k:

    F_i <- b2 F_i + (1 - b2) G_(i) G_(i)^T          (G_(i): G unfolded along dim i; b2 = 1: sum)
    every ``precondition_frequency`` steps from ``start`` on (and at t = start):
        Q_i = eigvecs, l = eigvals of F_i / (1 - b2^t);  l <- l - min(min l, 0) + epsilon
        P_i = Q_i diag(l^(-exponent_multiplier / r)) Q_i^T,  r = 2k or ``inv_root_override``
    m <- b1 m + (1 - b1) g;  m^ = (b1 m + (1 - b1) g if NAdam else m) / (1 - b1^t)
    grafting direction (per element): Adam  m^ / (sqrt(v / (1 - b2^t)) + eps_g),
        RMSprop m^ / (sqrt(v) + eps_g), AdaGrad (v summed), SGD m^;  v <- b2 v + (1 - b2) g^2
    Shampoo direction of each block: S = M^ x_1 P_1 ... x_k P_k, rescaled to the grafting
        direction's norm on that block: S * ||graft_block|| / (||S|| + 1e-16)
    output: the grafting direction while t < start, the grafted Shampoo direction after.

Weight decay, momentum and the learning rate are applied after this (``submission.py``),
as in the original's ``_per_group_step_impl``. The statistics, eigendecompositions and
preconditioning run once per distinct block shape on stacked blocks; the root inverse is
recomputed inside ``lax.cond``, so one compiled update serves every step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from algoperf.submissions.leaderboard_v05.shampoo_submission.blocking import BlockPlan

GRAFTING_TYPES = ("NONE", "SGD", "ADAGRAD", "RMSPROP", "ADAM")
NORM_EPSILON = 1e-16  # the original's EPSILON in the grafting norm ratio


class ShampooState(NamedTuple):
    count: jax.Array
    filtered: Any  # first moment (tree), or () when b1 == 0
    graft: Any  # grafting second moment (tree), or () for SGD / NONE grafting
    factors: tuple[tuple[jax.Array, ...], ...]  # per block-shape group, per dim: [blocks, d, d]
    inv_factors: tuple[tuple[jax.Array, ...], ...]


def _outer_products(block: jax.Array) -> list[jax.Array]:
    """G_(i) G_(i)^T for every dim i of one block (contract all other dims)."""
    k = block.ndim
    return [
        jnp.tensordot(block, block, axes=[[j for j in range(k) if j != i]] * 2) for i in range(k)
    ]


def _precondition_block(block: jax.Array, invs: tuple[jax.Array, ...]) -> jax.Array:
    """block x_1 P_1 ... x_k P_k; each contraction moves dim 0 to the end, as the original."""
    for inv in invs:
        block = jnp.tensordot(block, inv, axes=[[0], [0]])
    return block


def matrix_inverse_root(a: jax.Array, root: float | jax.Array, epsilon: float, previous: jax.Array) -> jax.Array:
    """A^(-1/root) of symmetric PSD matrices [..., d, d] by float32 eigendecomposition.

    ``root``: a number or one per matrix ([..., 1]). Eigenvalues are shifted up by
    max(-min eigenvalue, 0) and by ``epsilon`` (the original's ``_matrix_root_eigen``). A
    result with a non-finite entry is replaced by ``previous`` (the original keeps the
    previous inverse when its eigh fails).
    """
    a = a.astype(jnp.float32)
    eigvals, eigvecs = jnp.linalg.eigh(a)
    shift = -jnp.minimum(jnp.min(eigvals, axis=-1, keepdims=True), 0.0)
    eigvals = eigvals + shift + epsilon
    inv = (eigvecs * (eigvals ** (-1.0 / root))[..., None, :]) @ jnp.swapaxes(eigvecs, -1, -2)
    ok = jnp.all(jnp.isfinite(inv), axis=(-2, -1), keepdims=True)
    return jnp.where(ok, inv, previous)


def _after(x: jax.Array, previous: jax.Array) -> jax.Array:
    """``x`` unchanged, computed only once ``previous`` is: x + 0 * (a finite entry of previous).

    A data dependency XLA keeps (it cannot fold 0 * y for floats); an optimization barrier
    orders HLO but not the CPU runtime's thunks, which follow buffers.
    """
    return x.at[(0,) * x.ndim].add(0.0 * jnp.nan_to_num(previous[(0,) * previous.ndim]))


def padded_size(d: int) -> int:
    """The size a d x d factor is padded to for the batched eigh: the next power of two."""
    return 1 << max(d - 1, 0).bit_length()


def _pad_identity(stack: jax.Array, size: int) -> jax.Array:
    """[n, d, d] -> [n, size, size] as blockdiag(A, I).

    Exact for the inverse root: f(blockdiag(A, I)) = blockdiag(f(A), f(1) I), and the
    eigenvalue shift max(-min eig, 0) is unchanged by the extra eigenvalues 1.
    """
    d = stack.shape[-1]
    if d == size:
        return stack
    pad = jnp.pad(stack, ((0, 0), (0, size - d), (0, size - d)))
    return pad + jnp.diag(jnp.arange(size) >= d).astype(stack.dtype)


def _block_norms(stack: jax.Array) -> jax.Array:
    """Frobenius norm of each block of a stack [blocks, ...], shaped to broadcast back."""
    axes = tuple(range(1, stack.ndim))
    return jnp.sqrt(jnp.sum(jnp.square(stack), axis=axes, keepdims=True))


def _preconditioning_start(start: int | None, precondition_frequency: int, grafting_type: str) -> int | None:
    """The first preconditioned step (None: grafting only), the arguments checked as the original does."""
    if grafting_type not in GRAFTING_TYPES:
        raise ValueError(f"grafting_type {grafting_type!r} is not one of {GRAFTING_TYPES}")
    if precondition_frequency < 1:
        raise ValueError(f"precondition_frequency must be >= 1, got {precondition_frequency}")
    if start is None:
        if grafting_type == "NONE":
            raise ValueError("grafting only (start_preconditioning_step=None) needs a grafting_type")
        return None
    first = precondition_frequency if start == -1 else start
    if first < precondition_frequency:
        raise ValueError(
            f"start_preconditioning_step {start} must be -1 or >= precondition_frequency ({precondition_frequency})"
        )
    return first


def scale_by_distributed_shampoo(
    b1: float,
    b2: float,
    epsilon: float = 1e-12,
    max_preconditioner_dim: int = 1024,
    precondition_frequency: int = 1,
    start_preconditioning_step: int | None = -1,
    inv_root_override: int = 0,
    exponent_multiplier: float = 1.0,
    use_nadam: bool = False,
    grafting_type: str = "ADAM",
    grafting_epsilon: float = 1e-8,
    use_bias_correction: bool = True,
) -> optax.GradientTransformation:
    """Shampoo with grafting; ``start_preconditioning_step=None``: grafting only, no factors.

    ``start_preconditioning_step = -1`` means ``precondition_frequency`` (the original's rule);
    any other start below ``precondition_frequency`` is rejected, as the original does.
    """
    start = _preconditioning_start(start_preconditioning_step, precondition_frequency, grafting_type)
    use_shampoo = start is not None
    has_graft_moment = grafting_type in ("ADAGRAD", "RMSPROP", "ADAM")
    graft_b2 = 1.0 if grafting_type == "ADAGRAD" else b2

    def plan_of(tree: Any) -> BlockPlan:
        return BlockPlan.create([x.shape for x in jax.tree.leaves(tree)], max_preconditioner_dim)

    def init_fn(params: Any) -> ShampooState:
        def zeros() -> tuple:  # called twice: factors and inverses must not share buffers (donation)
            if not use_shampoo:
                return ()
            sizes = plan_of(params).group_sizes()
            return tuple(
                tuple(jnp.zeros((n, d, d), jnp.float32) for d in shape) for shape, n in sizes.items()
            )
        return ShampooState(
            count=jnp.zeros([], jnp.int32),
            filtered=optax.tree.zeros_like(params) if b1 != 0.0 else (),
            graft=optax.tree.zeros_like(params) if has_graft_moment else (),
            factors=zeros(),
            inv_factors=zeros(),
        )

    def update_fn(updates: Any, state: ShampooState, params: Any = None):
        del params
        count = state.count + 1
        step = count.astype(jnp.float32)
        factors, inv_factors = state.factors, state.inv_factors
        if use_shampoo:
            plan = plan_of(updates)
            factors = _update_factors(plan, updates, factors, b2)
            inv_factors = jax.lax.cond(
                ((count % precondition_frequency == 0) & (count > start)) | (count == start),
                lambda: _root_inverses(plan, factors, inv_factors, b2, step, epsilon,
                                       inv_root_override, exponent_multiplier),
                lambda: inv_factors,
            )
        filtered, direction = _filtered_gradient(updates, state.filtered, b1, step, use_nadam,
                                                 use_bias_correction)
        graft, graft_dir = _grafting(updates, direction, state.graft, grafting_type, graft_b2,
                                     grafting_epsilon, step)
        if use_shampoo:
            shampoo_dir = _precondition(plan, direction, graft_dir, inv_factors)
            if graft_dir is not None:
                before_start = count < start
                out = jax.tree.map(lambda a, s: jnp.where(before_start, a, s), graft_dir, shampoo_dir)
            else:
                out = shampoo_dir
        else:
            out = graft_dir
        return out, ShampooState(count, filtered, graft, factors, inv_factors)

    return optax.GradientTransformation(init_fn, update_fn)


def _update_factors(plan: BlockPlan, grads: Any, factors: tuple, b2: float) -> tuple:
    """F_i <- b2 F_i + (1 - b2) G_(i) G_(i)^T for every block (b2 = 1: plain sum)."""
    groups = plan.to_groups([g.astype(jnp.float32) for g in jax.tree.leaves(grads)])
    new = []
    for stack, group_factors in zip(groups.values(), factors, strict=True):
        outers = jax.vmap(_outer_products)(stack)
        if b2 == 1.0:
            new.append(tuple(f + o for f, o in zip(group_factors, outers, strict=True)))
        else:
            new.append(tuple(b2 * f + (1.0 - b2) * o for f, o in zip(group_factors, outers, strict=True)))
    return tuple(new)


def _root_inverses(plan: BlockPlan, factors: tuple, inv_factors: tuple, b2: float, step: jax.Array,
                   epsilon: float, inv_root_override: int, exponent_multiplier: float) -> tuple:
    """P_i = (F_i / (1 - b2^t) + shift + eps)^(-exponent_multiplier / r) for every block.

    To compile few eighs, all factors are padded (``_pad_identity``) to the next power of
    two and each padded size is decomposed in one batched eigh. The batched eighs run one
    after another: on CPU, jaxlib's batched LAPACK call fans its batch out into XLA's
    intra-op pool and blocks until it is done; two such calls started side by side on a
    two-worker pool leave no worker for their parts, and the step never ends (gdb showed
    both workers in ``ParallelBatchMap``).
    """
    bias_correction = 1.0 - b2**step if b2 < 1.0 else 1.0
    entries = []  # (group index, dim index, stack, previous, root)
    for g, (shape, group_factors, group_invs) in enumerate(zip(plan.groups, factors, inv_factors, strict=True)):
        root = (2 * len(shape) if inv_root_override == 0 else inv_root_override) / exponent_multiplier
        for i, (f, p) in enumerate(zip(group_factors, group_invs, strict=True)):
            entries.append((g, i, f / bias_correction, p, root))
    out: dict[tuple[int, int], jax.Array] = {}
    inv = None
    for size in sorted({padded_size(e[2].shape[-1]) for e in entries}):
        bucket = [e for e in entries if padded_size(e[2].shape[-1]) == size]
        stacked = jnp.concatenate([_pad_identity(e[2], size) for e in bucket])
        if inv is not None:  # this eigh's input waits for the previous one's result
            stacked = _after(stacked, inv)
        roots = jnp.concatenate([jnp.full((e[2].shape[0], 1), e[4], jnp.float32) for e in bucket])
        previous = jnp.concatenate([_pad_identity(e[3], size) for e in bucket])
        inv = matrix_inverse_root(stacked, roots, epsilon, previous)
        offset = 0
        for g, i, f, _, _ in bucket:
            n, d = f.shape[0], f.shape[-1]
            out[(g, i)] = inv[offset:offset + n, :d, :d]
            offset += n
    return tuple(tuple(out[(g, i)] for i in range(len(fs))) for g, fs in enumerate(factors))


def _filtered_gradient(grads: Any, moment: Any, b1: float, step: jax.Array, use_nadam: bool,
                       use_bias_correction: bool) -> tuple[Any, Any]:
    """(new first moment, the direction to precondition: m^ as in the docstring, or g)."""
    if b1 == 0.0:
        return (), grads
    moment = optax.tree.update_moment(grads, moment, b1, 1)
    direction = optax.tree.update_moment(grads, moment, b1, 1) if use_nadam else moment
    if use_bias_correction:
        direction = jax.tree.map(lambda m: m / (1.0 - b1**step), direction)
    return moment, direction


def _grafting(grads: Any, direction: Any, moment: Any, grafting_type: str, b2: float,
              eps: float, step: jax.Array) -> tuple[Any, Any]:
    """(new grafting second moment, the grafting method's direction, or None for NONE)."""
    if grafting_type == "NONE":
        return (), None
    if grafting_type == "SGD":
        return (), direction
    if b2 == 1.0:
        moment = jax.tree.map(lambda v, g: v + jnp.square(g), moment, grads)
    else:
        moment = optax.tree.update_moment_per_elem_norm(grads, moment, b2, 2)
    bias_correction = 1.0 - b2**step if grafting_type == "ADAM" else 1.0
    graft_dir = jax.tree.map(
        lambda d, v: d / (jnp.sqrt(v / bias_correction) + eps), direction, moment
    )
    return moment, graft_dir


def _precondition(plan: BlockPlan, direction: Any, graft_dir: Any, inv_factors: tuple) -> Any:
    """Each block's Shampoo direction, rescaled to the grafting direction's norm on it."""
    leaves, treedef = jax.tree.flatten(direction)
    groups = plan.to_groups([x.astype(jnp.float32) for x in leaves])
    graft_groups = (
        plan.to_groups([x.astype(jnp.float32) for x in jax.tree.leaves(graft_dir)])
        if graft_dir is not None else None
    )
    out = {}
    for (shape, stack), invs in zip(groups.items(), inv_factors, strict=True):
        pre = jax.vmap(_precondition_block)(stack, invs)
        if graft_groups is not None:
            pre = pre * (_block_norms(graft_groups[shape]) / (_block_norms(pre) + NORM_EPSILON))
        out[shape] = pre
    merged = plan.from_groups(out)
    return jax.tree.unflatten(treedef, [m.astype(x.dtype) for m, x in zip(merged, leaves, strict=True)])
