"""The second mode: CMA-ES over the constants (and learning rate) of one fixed program.

Needs the ``cma`` package (``pip install "algoperf[search]"``). A program's constants c_i
and its schedule's lr are mapped to an unconstrained vector x:
    c in (0, 1) (decay rates):  x = log(1 - c)      (c = 1 - e^x)
    any other c:                 x = log|c|          (c = sign(c) e^x; the sign is kept)
    lr:                          x = log lr
CMA-ES (Hansen's ``cma``) asks for a generation of x, each becomes a candidate that goes
through the same check, funnel and fitness as in evolution, and is told the loss
    L = -(score + 0.01 log speedup)     (1 for a candidate rejected or pruned)
The optimizer's state is pickled into the search's checkpoint, so a resumed search asks
for the same generation again.
"""

from __future__ import annotations

import base64
import math
import pickle
import random
from dataclasses import replace
from typing import Any

from algoperf.search.check import canonical_hash
from algoperf.search.language import Program, Schedule
from algoperf.search.proposers import Proposal


def encode(program: Program) -> list[float]:
    xs = [math.log(1.0 - c) if 0.0 < c < 1.0 else math.log(abs(c)) if c != 0 else -20.0 for c in program.constants()]
    return xs + [math.log(program.schedule.lr)]


def decode(template: Program, x: list[float]) -> Program:
    values = []
    for c, xi in zip(template.constants(), x[:-1], strict=True):
        values.append(1.0 - math.exp(xi) if 0.0 < c < 1.0 else math.copysign(math.exp(xi), c) if c != 0 else 0.0)
    sch = template.schedule
    return replace(template.with_constants(values), schedule=Schedule(sch.kind, math.exp(x[-1]), sch.warmup))


class CMAProposer:
    def __init__(self, program: Program, sigma: float = 0.3, popsize: int | None = None, seed: int = 0) -> None:
        try:
            import cma
        except ImportError as e:
            raise ValueError('--mode cmaes needs the cma package: pip install "algoperf[search]"') from e
        self.template = program
        options = {"seed": seed + 1, "verbose": -9}
        if popsize:
            options["popsize"] = popsize
        self.es = cma.CMAEvolutionStrategy(encode(program), sigma, options)
        self.pending: list[tuple[list[float], str]] = []

    def propose(self, population: list[dict[str, Any]], n: int, rng: random.Random) -> list[Proposal]:
        del population, n, rng  # CMA-ES sizes its own generations
        out = []
        self.pending = []
        for x in self.es.ask():
            program = decode(self.template, list(x))
            self.pending.append((list(x), canonical_hash(program)))
            out.append(Proposal(program, canonical_hash(self.template), "cmaes"))
        return out

    def observe(self, candidates: dict[str, dict[str, Any]]) -> None:
        losses = []
        for _, h in self.pending:
            fitness = (candidates.get(h) or {}).get("fitness")
            losses.append(1.0 if not fitness else -(fitness["score"] + 0.01 * math.log(max(fitness["speedup"], 1e-9))))
        if self.pending:
            self.es.tell([x for x, _ in self.pending], losses)
        self.pending = []

    def state(self) -> dict[str, Any]:
        return {"es": base64.b64encode(pickle.dumps(self.es)).decode()}

    def load(self, state: dict[str, Any]) -> None:
        if state.get("es"):
            self.es = pickle.loads(base64.b64decode(state["es"]))  # noqa: S301 - our own checkpoint
