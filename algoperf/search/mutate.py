"""Mutations of a program: insert, delete or modify a statement, perturb a constant.

Each returns a new program (maybe invalid: the caller checks it). Constants are perturbed
multiplicatively, c' = c exp(0.5 z), z ~ N(0, 1), or, for c in (0, 1) (decay rates),
on 1 - c, so 0.9 moves towards 0.8 or 0.95 and never past 1. The schedule's lr is
perturbed the same way and its kind sometimes changes.
"""

from __future__ import annotations

import random
from dataclasses import replace

from algoperf.search.language import INPUTS, OPS, OUTPUT, SCHEDULES, Arg, Program, Schedule, Stmt

CONSTANTS = (0.5, 0.9, 0.99, 0.999, 1.0, 2.0, 1e-3, 1e-8)
MUTATIONS = ("insert", "delete", "modify", "constant", "schedule")


def perturb(c: float, rng: random.Random, scale: float = 0.5) -> float:
    factor = 2.718281828459045 ** (scale * rng.gauss(0.0, 1.0))
    if 0.0 < c < 1.0:
        return 1.0 - min((1.0 - c) * factor, 0.999)
    return c * factor


def _names_before(program: Program, index: int) -> list[str]:
    return list(INPUTS) + list(program.slots) + [s.target for s in program.body[:index]]


def _random_args(rng: random.Random, names: list[str], arity: int) -> tuple[Arg, ...]:
    args: list[Arg] = [rng.choice(names) for _ in range(arity)]
    if arity > 1 and rng.random() < 0.5:
        args[rng.randrange(arity)] = rng.choice(CONSTANTS)
    return tuple(args)


def insert(program: Program, rng: random.Random) -> Program:
    """A new statement at a random place, read by a later one or assigning a slot."""
    i = rng.randrange(len(program.body) + 1)
    op = rng.choice(list(OPS))
    names = _names_before(program, i)
    later = program.body[i:]
    target = f"t{len(program.body)}"
    while target in names or any(s.target == target for s in program.body):
        target += "_"
    if program.slots and rng.random() < 0.2:
        target = rng.choice(program.slots)  # update a slot
    new = Stmt(target, op, _random_args(rng, names, OPS[op].arity))
    if later and target not in program.slots:  # make a later statement read the new value
        j = rng.randrange(len(later))
        s = later[j]
        k = rng.randrange(len(s.args))
        later = later[:j] + (replace(s, args=s.args[:k] + (target,) + s.args[k + 1:]),) + later[j + 1:]
    return replace(program, body=program.body[:i] + (new,) + later)


def delete(program: Program, rng: random.Random) -> Program:
    """Remove a statement; later reads of its name read one of its arguments' names instead."""
    if len(program.body) < 2:
        return program
    i = rng.randrange(len(program.body))
    gone = program.body[i]
    stand_in = next((a for a in gone.args if isinstance(a, str)), "g")
    if gone.target == OUTPUT:
        return program
    body = [replace(s, args=tuple(stand_in if a == gone.target else a for a in s.args)) for s in program.body[i + 1:]]
    return replace(program, body=program.body[:i] + tuple(body))


def modify(program: Program, rng: random.Random) -> Program:
    """Change one statement's op (to one of the same arity) or one of its arguments."""
    if not program.body:
        return program
    i = rng.randrange(len(program.body))
    s = program.body[i]
    if rng.random() < 0.5:
        ops = [o for o in OPS.values() if o.arity == len(s.args)]
        new = replace(s, op=rng.choice(ops).name)
    else:
        k = rng.randrange(len(s.args))
        arg: Arg = rng.choice(_names_before(program, i) + list(CONSTANTS))
        new = replace(s, args=s.args[:k] + (arg,) + s.args[k + 1:])
    return replace(program, body=program.body[:i] + (new,) + program.body[i + 1:])


def perturb_constant(program: Program, rng: random.Random) -> Program:
    values = program.constants()
    if not values:
        return perturb_schedule(program, rng)
    k = rng.randrange(len(values))
    values[k] = perturb(values[k], rng)
    return program.with_constants(values)


def perturb_schedule(program: Program, rng: random.Random) -> Program:
    sch = program.schedule
    kind = rng.choice(SCHEDULES) if rng.random() < 0.3 else sch.kind
    lr = sch.lr * 2.718281828459045 ** (0.5 * rng.gauss(0.0, 1.0))
    return replace(program, schedule=Schedule(kind, lr, sch.warmup))


def mutate(program: Program, rng: random.Random) -> tuple[Program, str]:
    """One random mutation of ``program``; returns the child and the mutation's name."""
    kind = rng.choice(MUTATIONS)
    fn = {"insert": insert, "delete": delete, "modify": modify, "constant": perturb_constant, "schedule": perturb_schedule}[kind]
    return fn(program, rng), kind
