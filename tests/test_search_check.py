"""The static check, simplification, canonical hash and mutations."""

from __future__ import annotations

import random

import pytest

from algoperf.search import check, language, mutate, seeds
from algoperf.search.language import Schedule


def _prog(lines: str, slots: str = ""):
    args = "g, p, step, lr" + (", " + slots if slots else "")
    ret = "(" + slots + ("," if slots and "," not in slots else "") + ")"
    body = "".join(f"    {line}\n" for line in lines.strip().splitlines())
    return language.from_text(f"def rule({args}):\n{body}    return update, {ret}\n")


@pytest.mark.parametrize("name", seeds.SEED_NAMES)
def test_seeds_pass(name):
    assert check.check(seeds.seed_program(name)) == []


@pytest.mark.parametrize("lines, slots, message", [
    ("t = g - 10.0\nr = jnp.log(t)\nupdate = r * lr", "", "NaN or inf"),
    ("x = g * 0.0\nupdate = lr / x", "", "NaN or inf"),
    ("update = p * -0.1", "", "does not depend on the gradient"),
    ("unused = g * 2.0\nupdate = g * -0.1", "", "dead code"),
    ("m = g * 0.5\nupdate = g * -0.1", "m", "dead code"),
    ("z = g * 0.0\nupdate = z + lr", "", "does not change when the gradient does"),
    ("s = norm(g)\nupdate = s * lr", "", "has shape ()"),
])
def test_broken_programs_are_rejected(lines, slots, message):
    problems = check.check(_prog(lines, slots))
    assert problems and any(message in p for p in problems), problems


def test_simplify_drops_dead_code_and_unread_slots_but_keeps_slot_chains():
    program = _prog("a = m * 0.9\nm = a + g\nunused = g * 3.0\nv = v + g\nupdate = m * -0.1", "m, v")
    simple = check.simplify(program)
    assert [s.target for s in simple.body] == ["a", "m", "update"]
    assert simple.slots == ("m",)
    assert check.check(simple) == []


def test_hash_ignores_names_order_of_commutative_args_and_dead_code():
    a = _prog("t = g * 0.5\nupdate = lr * t")
    b = _prog("zz = 0.5 * g\nunused = g + g\nupdate = zz * lr")
    c = _prog("t = g * 0.6\nupdate = lr * t")
    d = _prog("t = g / 0.5\nupdate = lr * t")
    assert check.canonical_hash(a) == check.canonical_hash(b)
    assert len({check.canonical_hash(x) for x in (a, c, d)}) == 3
    e = language.Program(a.slots, a.body, Schedule("constant", 0.2))
    assert check.canonical_hash(e) != check.canonical_hash(a)


def test_mutations_change_the_program_and_keep_decay_rates_below_one():
    rng = random.Random(0)
    parent = seeds.seed_program("adamw")
    kinds = set()
    changed = 0
    for _ in range(60):
        child, kind = mutate.mutate(parent, rng)
        kinds.add(kind)
        changed += check.canonical_hash(child) != check.canonical_hash(parent)
    assert kinds == set(mutate.MUTATIONS)
    assert changed > 40
    for c in (0.9, 0.999):
        assert all(0 < mutate.perturb(c, rng) < 1 for _ in range(200))


def test_mutated_children_are_mostly_trainable():
    rng = random.Random(1)
    parent = seeds.seed_program("sgd_momentum")
    results = [check.check(check.simplify(mutate.mutate(parent, rng)[0])) for _ in range(20)]
    assert sum(not r for r in results) >= 10
    assert all(isinstance(p, str) and p for r in results for p in r)
