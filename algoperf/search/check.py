"""Before any training: simplify a program, hash it canonically, and check it statically.

``simplify`` drops dead statements (those that reach neither ``update`` nor a slot that
``update`` depends on, over any number of steps) and slots nothing reads. ``canonical_hash``
hashes the simplified program with temporaries and slots renamed in order of first
assignment and the arguments of commutative ops sorted, so renamings and reorderings of
one rule count once. ``check`` lists what is wrong: a malformed program, dead code, an
update that does not depend on the gradient, a result of the wrong shape, or NaN/inf from
random inputs over a few steps.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from algoperf.search.language import (
    INPUTS,
    OPS,
    OUTPUT,
    Program,
    ProgramError,
    format_arg,
    validate,
)


def _live_statements(program: Program) -> set[int]:
    """Indices of statements whose value reaches ``update`` now or through slots later."""
    needed = {OUTPUT}
    live: set[int] = set()
    while True:  # a slot read by live code makes the slot's assignment live (next step)
        before = (len(live), len(needed))
        wanted = set(needed)
        for i in range(len(program.body) - 1, -1, -1):
            s = program.body[i]
            if s.target in wanted:
                live.add(i)
                wanted.discard(s.target)
                wanted |= {a for a in s.args if isinstance(a, str)}
        needed |= {name for name in wanted if name in program.slots}
        if (len(live), len(needed)) == before:
            return live


def simplify(program: Program) -> Program:
    """The program without dead statements and unread slots."""
    live = _live_statements(program)
    body = tuple(s for i, s in enumerate(program.body) if i in live)
    read = {a for s in body for a in s.args if isinstance(a, str)}
    slots = tuple(s for s in program.slots if s in read)
    return replace(program, slots=slots, body=body)


def canonical_hash(program: Program) -> str:
    """12 hex digits identifying the simplified program up to renaming and commuted arguments."""
    program = simplify(program)
    names = {n: n for n in INPUTS} | {OUTPUT: OUTPUT}
    for i, slot in enumerate(program.slots):
        names[slot] = f"s{i}"
    rows = []
    for i, s in enumerate(program.body):
        args = [names[a] if isinstance(a, str) else format_arg(a) for a in s.args]
        if OPS[s.op].commutative:
            args.sort()
        if s.target not in names:
            names[s.target] = f"t{i}"
        rows.append([names[s.target], s.op, *args])
    sch = program.schedule
    data = {"body": rows, "slots": len(program.slots), "schedule": [sch.kind, format_arg(sch.lr), format_arg(sch.warmup)]}
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:12]


def _depends_on_gradient(program: Program) -> bool:
    tainted = {"g"}
    for _ in range(len(program.slots) + 1):  # through slots, over steps
        for s in program.body:
            if any(a in tainted for a in s.args if isinstance(a, str)):
                tainted.add(s.target)
    return OUTPUT in tainted


def check(program: Program, steps: int = 5, seed: int = 0) -> list[str]:
    """What is wrong with ``program`` (an empty list: it may be trained)."""
    try:
        validate(program)
    except ProgramError as e:
        return [str(e)]
    problems = []
    dead = [i + 1 for i in range(len(program.body)) if i not in _live_statements(program)]
    if dead:
        problems.append(f"dead code: statement(s) {dead} reach neither {OUTPUT} nor a slot it reads")
    if not _depends_on_gradient(program):
        problems.append(f"{OUTPUT} does not depend on the gradient g")
    if problems:
        return problems
    return _numeric_problems(program, steps, seed)


def _numeric_problems(program: Program, steps: int, seed: int) -> list[str]:
    """Run the compiled program on random tensors: shapes kept, values finite, g matters."""
    import jax
    import jax.numpy as jnp

    from algoperf.search.compile import to_optax

    key = jax.random.PRNGKey(seed)
    params = {"w": jax.random.normal(key, (4, 3)) * 0.1, "b": jnp.zeros(3)}
    try:
        opt = to_optax(program, step_hint=100)
        state = opt.init(params)
        update = jax.jit(opt.update)
        for t in range(steps):
            grads = jax.tree.map(lambda x, t=t: jax.random.normal(jax.random.fold_in(key, t), x.shape), params)
            updates, state = update(grads, state, params)
            for name in params:
                u = updates[name]
                if u.shape != params[name].shape:
                    return [f"{OUTPUT} has shape {u.shape} for a parameter of shape {params[name].shape}"]
                if not bool(jnp.all(jnp.isfinite(u))):
                    return [f"{OUTPUT} is NaN or inf at step {t + 1} on random inputs"]
            params = jax.tree.map(lambda p, u: p + u, params, updates)
        zero = jax.tree.map(jnp.zeros_like, params)
        other = jax.tree.map(lambda x: x + 1.0, zero)
        u0, _ = opt.update(zero, state, params)
        u1, _ = opt.update(other, state, params)
        if all(bool(jnp.allclose(a, b)) for a, b in zip(jax.tree.leaves(u0), jax.tree.leaves(u1), strict=False)):
            return [f"{OUTPUT} does not change when the gradient does"]
    except Exception as e:  # noqa: BLE001 - any failure to trace or run is a reason to reject
        return [f"does not run: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"]
    return []
