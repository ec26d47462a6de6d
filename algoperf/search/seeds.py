"""Known optimizers written in the language (each equals optax's own; tests/test_search_language.py).

Constants are optax's defaults except where AlgoPerf's baselines differ (noted).
"""

from __future__ import annotations

from algoperf.search.language import Program, ProgramError, Schedule, from_text

_SEEDS_TEXT = {
    # optax.adamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4)
    "adamw": """
def rule(g, p, step, lr, m, v):
    m = interpolate(m, g, 0.9)
    g2 = jnp.square(g)
    v = interpolate(v, g2, 0.999)
    b1t = 0.9 ** step
    c1 = 1.0 - b1t
    mhat = m / c1
    b2t = 0.999 ** step
    c2 = 1.0 - b2t
    vhat = v / c2
    root = jnp.sqrt(vhat)
    den = root + 1e-08
    dir = mhat / den
    wd = p * 0.0001
    d = dir + wd
    s = lr * d
    update = -s
    return update, (m, v)
""",
    # optax.nadamw(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4): Nesterov momentum
    # m^ = b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)
    "nadamw": """
def rule(g, p, step, lr, m, v):
    m = interpolate(m, g, 0.9)
    g2 = jnp.square(g)
    v = interpolate(v, g2, 0.999)
    t1 = step + 1.0
    b1n = 0.9 ** t1
    c1n = 1.0 - b1n
    mn = m / c1n
    b1t = 0.9 ** step
    c1 = 1.0 - b1t
    gn = g / c1
    mhat = interpolate(mn, gn, 0.9)
    b2t = 0.999 ** step
    c2 = 1.0 - b2t
    vhat = v / c2
    root = jnp.sqrt(vhat)
    den = root + 1e-08
    dir = mhat / den
    wd = p * 0.0001
    d = dir + wd
    s = lr * d
    update = -s
    return update, (m, v)
""",
    # optax.sgd(lr, momentum=0.9): m = g + 0.9 m, update = -lr m
    "sgd_momentum": """
def rule(g, p, step, lr, m):
    mm = m * 0.9
    m = g + mm
    s = lr * m
    update = -s
    return update, (m,)
""",
    # optax.lion(lr, b1=0.9, b2=0.99, weight_decay=1e-3)
    "lion": """
def rule(g, p, step, lr, m):
    c = interpolate(m, g, 0.9)
    dir = jnp.sign(c)
    wd = p * 0.001
    d = dir + wd
    m = interpolate(m, g, 0.99)
    s = lr * d
    update = -s
    return update, (m,)
""",
}

# Peak learning rates and schedules the seeds start from (the built-in baselines' ranges).
_SEED_SCHEDULES = {
    "adamw": Schedule("warmup_cosine", 2e-3, 0.05),
    "nadamw": Schedule("warmup_cosine", 2e-3, 0.05),
    "sgd_momentum": Schedule("warmup_cosine", 0.1, 0.05),
    "lion": Schedule("warmup_cosine", 2e-4, 0.05),
}

SEED_NAMES = tuple(_SEEDS_TEXT)


def seed_program(name: str, schedule: Schedule | None = None) -> Program:
    """The seed ``name`` (adamw, nadamw, sgd_momentum, lion) with its default schedule or ``schedule``."""
    if name not in _SEEDS_TEXT:
        raise ProgramError(f"unknown seed program {name!r}; choose from {', '.join(SEED_NAMES)}")
    program = from_text(_SEEDS_TEXT[name])
    return Program(program.slots, program.body, schedule or _SEED_SCHEDULES[name])
