"""The JAX port of the v0.5 shampoo_submission: its preconditioner against a hand-written
numpy Shampoo, blocking, the start / frequency rule, the schedule, and a short real run."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from algoperf.submission.loading import load_submission
from algoperf.submission.search_space import make_hyperparameters
from algoperf.submissions.leaderboard_v05.shampoo_submission import blocking, shampoo
from tests.cli import run_algoperf

FOLDER = Path(__file__).resolve().parents[1] / "submissions" / "leaderboard_v05" / "shampoo_submission"


# --- a hand-written numpy Shampoo (float64), independent of blocking.py / shampoo.py ----------
def np_inverse_root(a: np.ndarray, root: int, eps: float) -> np.ndarray:
    w, q = np.linalg.eigh(a)
    w = w - min(w.min(), 0.0) + eps
    return (q * w ** (-1.0 / root)) @ q.T


def np_blocks_2d(x: np.ndarray, b: int) -> list[tuple[slice, slice]]:
    rows = [slice(i, min(i + b, x.shape[0])) for i in range(0, x.shape[0], b)]
    cols = [slice(j, min(j + b, x.shape[1])) for j in range(0, x.shape[1], b)]
    return [(r, c) for r in rows for c in cols]


class NumpyShampoo:
    """Shampoo on one matrix W (blocked by hand, L/R factors, inverse 4th roots) and one
    vector b (one full-matrix factor, inverse square root), grafted per block."""

    def __init__(self, shapes, b1, b2, eps, freq, start, graft, graft_eps, nadam, max_dim):
        self.b1, self.b2, self.eps, self.freq, self.start = b1, b2, eps, freq, start
        self.graft, self.graft_eps, self.nadam, self.max_dim = graft, graft_eps, nadam, max_dim
        self.m = {k: np.zeros(s) for k, s in shapes.items()}
        self.v = {k: np.zeros(s) for k, s in shapes.items()}
        w = np.zeros(shapes["w"])
        self.w_blocks = np_blocks_2d(w, max_dim)
        self.L = [np.zeros((w[r, c].shape[0],) * 2) for r, c in self.w_blocks]
        self.R = [np.zeros((w[r, c].shape[1],) * 2) for r, c in self.w_blocks]
        self.PL = [np.zeros_like(x) for x in self.L]
        self.PR = [np.zeros_like(x) for x in self.R]
        n = shapes["b"][0]
        self.F, self.P = np.zeros((n, n)), np.zeros((n, n))
        self.t = 0

    def step(self, g: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.t = t = self.t + 1
        b1, b2 = self.b1, self.b2
        for i, (r, c) in enumerate(self.w_blocks):
            gb = g["w"][r, c]
            self.L[i] = b2 * self.L[i] + (1 - b2) * gb @ gb.T
            self.R[i] = b2 * self.R[i] + (1 - b2) * gb.T @ gb
        self.F = b2 * self.F + (1 - b2) * np.outer(g["b"], g["b"])
        if (t % self.freq == 0 and t > self.start) or t == self.start:
            bc = 1 - b2**t
            self.PL = [np_inverse_root(x / bc, 4, self.eps) for x in self.L]
            self.PR = [np_inverse_root(x / bc, 4, self.eps) for x in self.R]
            self.P = np_inverse_root(self.F / bc, 2, self.eps)
        out = {}
        for k in ("w", "b"):
            if b1:
                self.m[k] = b1 * self.m[k] + (1 - b1) * g[k]
                mh = (b1 * self.m[k] + (1 - b1) * g[k]) if self.nadam else self.m[k]
                mh = mh / (1 - b1**t)
            else:
                mh = g[k]
            self.v[k] = b2 * self.v[k] + (1 - b2) * g[k] ** 2
            if self.graft == "ADAM":
                graft = mh / (np.sqrt(self.v[k] / (1 - b2**t)) + self.graft_eps)
            elif self.graft == "RMSPROP":
                graft = mh / (np.sqrt(self.v[k]) + self.graft_eps)
            else:  # SGD
                graft = mh
            if t < self.start:
                out[k] = graft
                continue
            if k == "b":
                s = self.P @ mh
                out[k] = s * np.linalg.norm(graft) / (np.linalg.norm(s) + 1e-16)
                continue
            out[k] = np.zeros_like(mh)
            for i, (r, c) in enumerate(self.w_blocks):
                s = self.PL[i] @ mh[r, c] @ self.PR[i]
                out[k][r, c] = s * np.linalg.norm(graft[r, c]) / (np.linalg.norm(s) + 1e-16)
        return out


CASES = [
    dict(b1=0.9, graft="ADAM", nadam=True),
    dict(b1=0.9, graft="ADAM", nadam=False),
    dict(b1=0.0, graft="RMSPROP", nadam=False),
    dict(b1=0.95, graft="SGD", nadam=False),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['graft']}-b1={c['b1']}-nadam={c['nadam']}")
def test_preconditioner_matches_numpy_shampoo(case):
    shapes = {"w": (5, 3), "b": (3,)}
    b2, eps, freq, max_dim = 0.95, 1e-3, 2, 4  # w's first dim is cut into 4 + 1
    tx = shampoo.scale_by_distributed_shampoo(
        b1=case["b1"], b2=b2, epsilon=eps, max_preconditioner_dim=max_dim, precondition_frequency=freq,
        start_preconditioning_step=-1, use_nadam=case["nadam"], grafting_type=case["graft"],
        grafting_epsilon=1e-8,
    )
    ref = NumpyShampoo(shapes, case["b1"], b2, eps, freq, freq, case["graft"], 1e-8, case["nadam"], max_dim)
    rng = np.random.default_rng(0)
    params = {k: jnp.zeros(s, jnp.float32) for k, s in shapes.items()}
    state = tx.init(params)
    update = jax.jit(tx.update)
    for _ in range(7):
        g = {k: rng.normal(size=s) for k, s in shapes.items()}
        out, state = update({k: jnp.asarray(v, jnp.float32) for k, v in g.items()}, state)
        want = ref.step(g)
        for k in shapes:
            np.testing.assert_allclose(np.asarray(out[k]), want[k], rtol=2e-4, atol=1e-6, err_msg=f"step {ref.t} {k}")


def test_after_start_the_direction_is_not_the_grafting_direction():
    """Guards the comparison above: Shampoo's direction differs from Adam's once it starts."""
    shapes = {"w": (5, 3), "b": (3,)}
    ref = NumpyShampoo(shapes, 0.9, 0.95, 1e-3, 2, 2, "ADAM", 1e-8, True, 4)
    adam = NumpyShampoo(shapes, 0.9, 0.95, 1e-3, 2, 10**9, "ADAM", 1e-8, True, 4)
    rng = np.random.default_rng(1)
    for _ in range(3):
        g = {k: rng.normal(size=s) for k, s in shapes.items()}
        a, b = ref.step(g), adam.step(g)
    assert not np.allclose(a["w"], b["w"], rtol=1e-2)


# --- blocking ----------------------------------------------------------------------------
def test_merge_small_dims_as_the_original():
    assert blocking.merge_small_dims((1, 1), 1024) == (1,)
    assert blocking.merge_small_dims((), 1024) == (1,)
    assert blocking.merge_small_dims((3, 4, 100), 1024) == (12, 100)
    assert blocking.merge_small_dims((5, 1, 32, 32), 1024) == (160, 32)
    assert blocking.merge_small_dims((2000, 3), 1024) == (2000, 3)


@pytest.mark.parametrize("shape", [(2500, 7), (3, 3, 40, 70), (1,), (), (1, 1, 1), (2049, 1030), (18369, 16)])
def test_blocking_round_trips(shape):
    plan = blocking.BlockPlan.create([shape, (6, 2)], max_dim=1024)
    x = jnp.arange(math.prod(shape), dtype=jnp.float32).reshape(shape)
    y = jnp.arange(12, dtype=jnp.float32).reshape(6, 2) + 0.5
    groups = plan.to_groups([x, y])
    assert all(max(s) <= 1024 for s in groups)
    back = plan.from_groups(groups)
    np.testing.assert_array_equal(np.asarray(back[0]), np.asarray(x))
    np.testing.assert_array_equal(np.asarray(back[1]), np.asarray(y))
    assert sum(int(np.prod(g.shape)) for g in groups.values()) == x.size + y.size


def test_blocks_are_the_chunks_of_the_merged_tensor():
    plan = blocking.BlockPlan.create([(5, 7)], max_dim=3)
    x = np.arange(35.0).reshape(5, 7)
    groups = plan.to_groups([jnp.asarray(x)])
    assert plan.group_sizes() == {(3, 3): 2, (3, 1): 1, (2, 3): 2, (2, 1): 1}
    np.testing.assert_array_equal(np.asarray(groups[(3, 3)][1]), x[0:3, 3:6])
    np.testing.assert_array_equal(np.asarray(groups[(2, 1)][0]), x[3:5, 6:7])


# --- start step and frequency ------------------------------------------------------------
def test_start_step_and_frequency_are_honoured():
    tx = shampoo.scale_by_distributed_shampoo(b1=0.9, b2=0.99, epsilon=1e-6, precondition_frequency=2,
                                              start_preconditioning_step=4, grafting_type="ADAM")
    graft_only = shampoo.scale_by_distributed_shampoo(b1=0.9, b2=0.99, start_preconditioning_step=None,
                                                      grafting_type="ADAM")
    params = {"w": jnp.zeros((4, 3))}
    state, gstate = tx.init(params), graft_only.init(params)
    rng = np.random.default_rng(2)
    invs = []
    for t in range(1, 8):
        g = {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)}
        out, state = tx.update(g, state)
        gout, gstate = graft_only.update(g, gstate)
        invs.append(np.asarray(state.inv_factors[0][0]))
        if t < 4:
            np.testing.assert_allclose(np.asarray(out["w"]), np.asarray(gout["w"]), rtol=1e-6)
            assert not invs[-1].any()
        else:
            assert not np.allclose(np.asarray(out["w"]), np.asarray(gout["w"]), rtol=1e-3)
    assert invs[3].any()  # computed at t = start = 4
    np.testing.assert_array_equal(invs[4], invs[3])  # t = 5: kept
    assert not np.array_equal(invs[5], invs[4])  # t = 6: recomputed
    np.testing.assert_array_equal(invs[6], invs[5])
    assert gstate.factors == ()  # grafting only holds no factors


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="start_preconditioning_step 3 must be -1 or >= precondition_frequency"):
        shampoo.scale_by_distributed_shampoo(0.9, 0.99, precondition_frequency=5, start_preconditioning_step=3)
    with pytest.raises(ValueError, match="grafting_type 'LAMB'"):
        shampoo.scale_by_distributed_shampoo(0.9, 0.99, grafting_type="LAMB")


def test_one_compiled_update_serves_every_step():
    tx = shampoo.scale_by_distributed_shampoo(b1=0.9, b2=0.99, precondition_frequency=2)
    params = {"a": jnp.zeros((6, 4)), "b": jnp.zeros((6, 4)), "c": jnp.zeros((4,))}
    update = jax.jit(tx.update)
    state = tx.init(params)
    assert len(state.factors) == 2  # (6, 4) twice -> one stacked group of 2 blocks; (4,) another
    for _ in range(5):
        out, state = update(jax.tree.map(jnp.ones_like, params), state)
    assert update._cache_size() == 1
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(out))


# --- the submission: search space, schedule, weight decay + momentum ----------------------
def points():
    return json.loads((FOLDER / "tuning_search_space.json").read_text())


def test_search_space_is_the_published_one():
    published = Path("/work/shared/data/algoperf_v05/submissions/external_tuning/shampoo_submission")
    if not published.is_dir():
        published = Path(__file__).resolve().parents[2] / "shared/data/algoperf_v05/submissions/external_tuning/shampoo_submission"
    if not published.is_dir():
        pytest.skip("published v0.5 submissions not present (../shared/data/algoperf_v05)")
    assert points() == json.loads((published / "tuning_search_space.json").read_text())


def test_schedule_is_linear_lr_then_cosine_annealing():
    sub = load_submission(str(FOLDER)).module
    h = make_hyperparameters({**points()[1]})  # warmup 0.05, step_hint_factor 0.6
    sched = sub.learning_rate_schedule(h, 1000)
    lr, w, t_max = h.learning_rate, 30, 570  # horizon 600
    assert float(sched(0)) == pytest.approx(1e-10 * lr, rel=1e-4, abs=1e-12)
    assert float(sched(15)) == pytest.approx(lr * (1e-10 + (1 - 1e-10) * 0.5), rel=1e-5)
    assert float(sched(w)) == pytest.approx(lr, rel=1e-6)
    assert float(sched(w + 285)) == pytest.approx(lr * 0.5, rel=1e-4)
    assert float(sched(w + t_max)) == pytest.approx(0.0, abs=1e-9)
    # PyTorch's cosine does not stop at T_max: it rises again (the original ran past it)
    assert float(sched(w + t_max + 285)) == pytest.approx(lr * 0.5, rel=1e-4)


def test_weight_decay_and_ema_nesterov_momentum_as_the_original():
    sub = load_submission(str(FOLDER)).module
    point = {**points()[2], "start_preconditioning_step": 10**6, "precondition_frequency": 10**6}
    h = make_hyperparameters(point)  # SGD grafting, momentum 1 - 0.0315, b1 = 0 (one_minus_beta1 = 1)
    tx = sub.make_optimizer(h, 1000, {"w": jnp.zeros((3, 2))})
    p = jnp.asarray(np.random.default_rng(3).normal(size=(3, 2)), jnp.float32)
    state = tx.init({"w": p})
    sched = sub.learning_rate_schedule(h, 1000)
    mu, wd, buf, pn = 1 - h.one_minus_momentum, h.weight_decay, np.zeros((3, 2)), np.asarray(p, np.float64)
    rng = np.random.default_rng(4)
    for t in range(1, 4):
        g = rng.normal(size=(3, 2))
        upd, state = tx.update({"w": jnp.asarray(g, jnp.float32)}, state, {"w": jnp.asarray(pn, jnp.float32)})
        d = g + wd * pn  # SGD grafting before start: the gradient itself
        buf = mu * buf + (1 - mu) * d
        d = (1 - mu) * d + mu * buf
        want = -float(sched(t - 1)) * d
        np.testing.assert_allclose(np.asarray(upd["w"]), want, rtol=1e-5, atol=1e-12)
        pn = pn + want


def test_unported_option_is_a_clear_error():
    sub = load_submission(str(FOLDER)).module
    h = make_hyperparameters({**points()[0], "use_normalized_grafting": True})
    with pytest.raises(ValueError, match="use_normalized_grafting=True is not ported"):
        sub.make_optimizer(h, 100, {"w": jnp.zeros((2, 2))})


def test_huge_dims_get_grafting_only():
    sub = load_submission(str(FOLDER)).module
    h = make_hyperparameters(points()[0])
    params = {"table": jnp.zeros((1_000_000, 1)), "w": jnp.zeros((3, 2))}
    state = sub.make_optimizer(h, 100, params).init(params)
    inner = state[0].inner_states
    assert inner["large"].inner_state.factors == ()
    assert len(inner["shampoo"].inner_state.factors) == 1
    h = make_hyperparameters({**points()[0], "grafting_only_min_dim": 3})  # the port's knob
    inner = sub.make_optimizer(h, 100, params).init(params)[0].inner_states
    assert inner["shampoo"].inner_state.factors == ()  # no parameter left to Shampoo


def _hlo_computations(text: str) -> list[dict[str, str]]:
    """Each computation of an HLO module's text as {instruction name: its right-hand side}."""
    computations, current = [], None
    for line in text.splitlines():
        if line and not line.startswith(" ") and line.rstrip().endswith("{"):
            current = {}
        elif line.startswith("}") and current is not None:
            computations.append(current)
            current = None
        elif current is not None and (m := re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (.*)", line)):
            current[m.group(1)] = m.group(2)
    return computations


def test_batched_eighs_run_one_after_another():
    # jaxlib's batched CPU eigh blocks an XLA pool worker until the rest of its batch is done
    # in the same pool: two started side by side on a two-worker pool deadlock (the CLI trial
    # below hung in CI; gdb: both workers in ParallelBatchMap). XLA's CPU runtime orders its
    # thunks by the buffers they use, so each eigh's operand must be computed from the previous
    # eigh's result in the compiled program (an opt-barrier orders nothing there).
    sub = load_submission(str(FOLDER)).module
    params = {"w": jnp.ones((3, 6)), "b": jnp.ones((9,)), "c": jnp.ones((40,))}  # w merges to 18: 32, 16, 64
    optimizer = sub.make_optimizer(make_hyperparameters(points()[0]), 100, params)
    hlo = jax.jit(optimizer.update).lower(params, optimizer.init(params), params).compile().as_text()
    (body,) = [c for c in _hlo_computations(hlo) if sum("lapack_ssyevd" in rhs for rhs in c.values()) >= 2]
    eighs = [name for name, rhs in body.items() if "lapack_ssyevd" in rhs]
    assert len(eighs) == 3, "expected one batched eigh per padded size"

    def ancestors(name: str, seen: set[str]) -> set[str]:
        if not re.search(r"\bopt-barrier\(", body[name]):
            for operand in re.findall(r"%([\w.\-]+)", body[name]):
                if operand in body and operand not in seen:
                    seen.add(operand)
                    ancestors(operand, seen)
        return seen

    for earlier, later in itertools.pairwise(eighs):
        assert earlier in ancestors(later, set()), f"{later} may start beside {earlier}"


# --- a short real run ----------------------------------------------------------------------
def test_short_mnist1d_run_through_algoperf_run(tmp_path):
    proc = run_algoperf("run", "--submission", str(FOLDER), "--workload", "mnist1d", "--ruleset", "external",
                        "--trials", "1", "--max-steps", "120", "--experiment-dir", str(tmp_path),
                        "--executor", "local", "--no-tracking",
                        cwd=tmp_path, timeout=300)  # cwd: no store in the checkout; ~15 s on one core
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = list(tmp_path.rglob("trial_result.json"))
    assert len(results) == 1
    result = json.loads(results[0].read_text())
    assert result["global_step"] >= 120 or result["status"] == "reached_target", result
