"""The search language: semantics, printing, parsing, JSON, compilation, and the seeds = optax."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from algoperf.search import language, seeds
from algoperf.search.compile import to_optax
from algoperf.search.language import Program, ProgramError, Schedule, Stmt


def _params():
    key = jax.random.PRNGKey(0)
    return {"w": jax.random.normal(key, (3, 4)), "b": jnp.ones(4)}


def _grads(params, t):
    return jax.tree.map(lambda x: jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(1), t), x.shape), params)


OPTAX = {
    "adamw": lambda: optax.adamw(1e-2, weight_decay=1e-4),
    "nadamw": lambda: optax.nadamw(1e-2, weight_decay=1e-4),
    "sgd_momentum": lambda: optax.sgd(1e-2, momentum=0.9),
    "lion": lambda: optax.lion(1e-2, weight_decay=1e-3),
}


@pytest.mark.parametrize("name", seeds.SEED_NAMES)
def test_seed_equals_optax(name):
    ref, mine = OPTAX[name](), to_optax(seeds.seed_program(name, Schedule("constant", 1e-2)))
    p_ref = p_mine = _params()
    s_ref, s_mine = ref.init(p_ref), mine.init(p_mine)
    step = jax.jit(mine.update)
    for t in range(6):
        g = _grads(p_ref, t)
        u_ref, s_ref = ref.update(g, s_ref, p_ref)
        u_mine, s_mine = step(g, s_mine, p_mine)
        p_ref, p_mine = optax.apply_updates(p_ref, u_ref), optax.apply_updates(p_mine, u_mine)
    for a, b in zip(jax.tree.leaves(p_ref), jax.tree.leaves(p_mine), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_seeds_cover_the_issue():
    assert set(seeds.SEED_NAMES) == {"adamw", "nadamw", "sgd_momentum", "lion"}
    with pytest.raises(ProgramError, match="unknown seed program"):
        seeds.seed_program("rmsprop")


@pytest.mark.parametrize("name", seeds.SEED_NAMES)
def test_text_and_json_round_trip(name):
    program = seeds.seed_program(name)
    assert language.from_text(program.to_text()) == program
    assert language.from_json(program.to_json()) == program
    assert language.from_json(__import__("json").loads(language.dumps(program))) == program


def test_slots_carry_values_between_steps_and_step_counts_from_one():
    # m accumulates step (1 + 2 + 3 ...); update = -(m * g) reads the new m
    program = language.from_text(
        "def rule(g, p, step, lr, m):\n    m = m + step\n    u = m * g\n    update = -u\n    return update, (m,)\n"
    )
    opt = to_optax(program)
    params = {"x": jnp.zeros(2)}
    state = opt.init(params)
    ones = {"x": jnp.ones(2)}
    seen = []
    for _ in range(3):
        updates, state = opt.update(ones, state, params)
        seen.append(float(updates["x"][0]))
    assert seen == [-1.0, -3.0, -6.0]


def test_ops_evaluate_as_documented():
    body = (
        Stmt("a", "interpolate", ("g", "p", 0.25)),  # 0.25 g + 0.75 p
        Stmt("b", "clip", ("a", 1.0)),
        Stmt("c", "norm", ("g",)),
        Stmt("d", "div", ("b", "c")),
        Stmt("update", "mul", ("d", "lr")),
    )
    program = Program((), body, Schedule("constant", 0.5))
    opt = to_optax(program)
    g, p = jnp.array([3.0, 4.0]), jnp.array([8.0, -8.0])
    updates, _ = opt.update({"x": g}, opt.init({"x": p}), {"x": p})
    a = 0.25 * g + 0.75 * p
    expected = np.clip(a, -1, 1) / 5.0 * 0.5
    np.testing.assert_allclose(updates["x"], expected, rtol=1e-6)


def test_schedules():
    program = seeds.seed_program("sgd_momentum", Schedule("warmup_cosine", 1.0, 0.1))
    ns = __import__("algoperf.search.compile", fromlist=["namespace"]).namespace(program)
    cosine = ns["warmup_cosine"](1.0, 0.1, 100)
    linear = ns["warmup_linear"](1.0, 0.1, 100)
    assert float(cosine(0)) == 0.0 and float(cosine(10)) == pytest.approx(1.0) and float(cosine(100)) == pytest.approx(0.0, abs=1e-6)
    assert float(linear(5)) == pytest.approx(0.5) and float(linear(55)) == pytest.approx(0.5)


@pytest.mark.parametrize("text, message", [
    ("def rule(g, p, step, lr):\n    update = q * g\n    return update, ()\n", "reads 'q' before"),
    ("def rule(g, p, step, lr):\n    update = jnp.tanh(g)\n    return update, ()\n", "not one operation"),
    ("def rule(g, p, step, lr):\n    x = g * 2.0\n    return x, ()\n", "never assigns 'update'"),
    ("def rule(g, p, lr):\n    update = -g\n    return update, ()\n", "must start with"),
    ("def rule(g, p, step, lr):\n    g = g * 2.0\n    update = -g\n    return update, ()\n", "read-only"),
    ("def rule(g, p, step, lr):\n    update = g * (p + 1.0)\n    return update, ()\n", "name or a number"),
    ("def rule(g, p, step, lr:\n", "not Python"),
])
def test_malformed_programs_are_refused_with_the_reason(text, message):
    with pytest.raises(ProgramError, match=message):
        language.from_text(text)
