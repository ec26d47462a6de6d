'''A program -> an ``optax.GradientTransformation``.

The program's printed Python (``Program.to_text``) is what runs: it is executed together
with ``RUNTIME`` (the helpers it calls and the optax wrapper), and an exported submission
inlines the same two texts, so what was searched is exactly what is submitted.
The wrapper applies ``rule`` to each parameter tensor with its own slots:
    count_0 = 0; per step: step = count + 1, lr = schedule(count),
    (update, slots') = rule(g, p, step, lr, *slots), count <- count + 1.
'''

from __future__ import annotations

from typing import Any

from algoperf.search.language import Program

RUNTIME = '''
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


def clip(x, c):
    """x limited to [-|c|, |c|]."""
    c = jnp.abs(c)
    return jnp.clip(x, -c, c)


def interpolate(a, b, w):
    """w a + (1 - w) b."""
    return w * a + (1 - w) * b


def norm(x):
    """The L2 norm of the whole tensor (a scalar)."""
    return jnp.sqrt(jnp.sum(jnp.square(x)))


def constant(lr, warmup, step_hint):
    del warmup, step_hint
    return optax.constant_schedule(lr)


def warmup_cosine(lr, warmup, step_hint):
    warmup_steps = int(warmup * step_hint)
    return optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps, max(step_hint, warmup_steps + 1), 0.0)


def warmup_linear(lr, warmup, step_hint):
    warmup_steps = int(warmup * step_hint)
    return optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup_steps), optax.linear_schedule(lr, 0.0, max(step_hint - warmup_steps, 1))],
        [warmup_steps],
    )


class RuleState(NamedTuple):
    count: jax.Array
    slots: tuple


def transformation(rule, n_slots, schedule):
    """The optax transformation applying ``rule`` to every parameter tensor."""

    def init(params):
        zeros = tuple(jax.tree.map(jnp.zeros_like, params) for _ in range(n_slots))
        return RuleState(count=jnp.zeros([], jnp.int32), slots=zeros)

    def update(grads, state, params=None):
        leaves, treedef = jax.tree.flatten(grads)
        param_leaves = treedef.flatten_up_to(params)
        slot_leaves = [treedef.flatten_up_to(s) for s in state.slots]
        step = (state.count + 1).astype(jnp.float32)
        lr = jnp.asarray(schedule(state.count), jnp.float32)
        outs = [rule(g, p, step, lr, *s) for g, p, *s in zip(leaves, param_leaves, *slot_leaves)]
        updates = treedef.unflatten([u.astype(g.dtype) for (u, _), g in zip(outs, leaves)])
        slots = tuple(
            treedef.unflatten([new[i].astype(old.dtype) for (_, new), old in zip(outs, slot_leaves[i])])
            for i in range(n_slots)
        )
        return updates, RuleState(count=state.count + 1, slots=slots)

    return optax.GradientTransformation(init, update)
'''


def namespace(program: Program) -> dict[str, Any]:
    """RUNTIME and the program's text, executed: ``rule``, ``schedule`` and the helpers."""
    ns: dict[str, Any] = {"__name__": "algoperf_search_program"}
    exec(compile(RUNTIME, "<algoperf.search.RUNTIME>", "exec"), ns)  # noqa: S102 - our own text
    rule_text = program.to_text().rsplit("\n\n\n", 1)[0]  # the schedule line is data, read below
    exec(compile(rule_text, "<searched rule>", "exec"), ns)  # noqa: S102 - a validated program's text
    return ns


def to_optax(program: Program, step_hint: int = 1000, lr: float | None = None) -> Any:
    """The program as an optax.GradientTransformation (``lr`` overrides the schedule's peak)."""
    ns = namespace(program)
    sch = program.schedule
    schedule = ns[sch.kind](sch.lr if lr is None else lr, sch.warmup, step_hint)
    return ns["transformation"](ns["rule"], len(program.slots), schedule)
