"""Proposers: where new candidate programs come from (plug-ins).

A proposer has ``propose(population, n, rng) -> [Proposal]``; ``population`` is the
current candidates' records (program JSON, fitness), oldest first. Optional hooks:
``observe(proposals, fitnesses)`` after evaluation, ``state()`` / ``load(state)`` for
checkpoints. Every proposal goes through the same static check and deduplication.

* ``MutationProposer`` (default): tournament selection (best of ``tournament`` random
  members), one mutation (``mutate.py``), dead code removed.
* ``LLMProposer``: asks an OpenAI-compatible ``/v1/chat/completions`` endpoint, with
  EvoLLM's prompt: the population sorted from worst to best with its fitness, asked for
  an improved program in the same Python form. Off unless a URL is given.
"""

from __future__ import annotations

import json
import random
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

from algoperf.search.check import simplify
from algoperf.search.fitness import rank_key
from algoperf.search.language import OPS, Program, ProgramError, from_json, from_text
from algoperf.search.mutate import mutate


@dataclass
class Proposal:
    program: Program | None  # None: the proposer's answer was not a program (``error`` says why)
    parent: str | None
    origin: str
    error: str | None = None


class Proposer(Protocol):
    def propose(self, population: list[dict[str, Any]], n: int, rng: random.Random) -> list[Proposal]: ...


def tournament(population: list[dict[str, Any]], size: int, rng: random.Random) -> dict[str, Any]:
    """The fittest of ``size`` members drawn without replacement."""
    sample = rng.sample(population, min(size, len(population)))
    return max(sample, key=lambda c: rank_key(c.get("fitness")))


class MutationProposer:
    def __init__(self, tournament_size: int = 4) -> None:
        self.tournament_size = tournament_size

    def propose(self, population: list[dict[str, Any]], n: int, rng: random.Random) -> list[Proposal]:
        out = []
        for _ in range(n):
            parent = tournament(population, self.tournament_size, rng)
            program = from_json(parent["program"])
            child, kind = mutate(program, rng)
            out.append(Proposal(simplify(child), parent["hash"], f"mutation:{kind}"))
        return out


SYSTEM_PROMPT = (
    "You improve optimizers for neural-network training. An optimizer is a Python function "
    "`rule(g, p, step, lr, <state slots>)` applied to each parameter tensor: g gradient, p parameter, "
    "step (1, 2, ...), lr the scheduled learning rate, slots zero before the first step. Every line is "
    "`name = op(args)` with one operation of: " + ", ".join(OPS) + " (as `a + b`, `a - b`, `a * b`, `a / b`, "
    "`a ** b`, `-a`, jnp.sign/abs/sqrt/exp/log/square/maximum/minimum, clip(x, c), interpolate(a, b, w) = "
    "w a + (1 - w) b, norm(x)); args are names or numbers. It returns `update, (slots...)`; update is "
    "added to the parameter. After the function one line sets the schedule: "
    "`schedule = constant|warmup_cosine|warmup_linear(lr=..., warmup=...)`."
)


def llm_prompt(population: list[dict[str, Any]]) -> str:
    """EvoLLM-style: the population from worst to best, then the request."""
    ranked = sorted(population, key=lambda c: rank_key(c.get("fitness")))
    parts = ["Programs from worst to best (fitness: profile score in [0, 1], then speedup vs the seed):"]
    for c in ranked:
        f = c.get("fitness") or {}
        parts.append(f"# fitness: score={f.get('score')}, speedup={f.get('speedup')}\n```python\n{from_json(c['program']).to_text()}```")
    parts.append("Write one new program that trains faster than the best one. Answer with one ```python block only.")
    return "\n\n".join(parts)


def parse_answer(text: str) -> Program:
    """The program in an answer (the first ```python block, or the whole text)."""
    match = re.search(r"```(?:python)?\s*\n(.*?)```", text, re.DOTALL)
    return from_text(match.group(1) if match else text)


class LLMProposer:
    def __init__(self, url: str, key: str | None = None, model: str = "default", timeout_s: float = 120.0,
                 temperature: float = 0.8) -> None:
        self.url = url.rstrip("/")
        if not self.url.endswith("/chat/completions"):
            self.url += "/v1/chat/completions" if not self.url.endswith("/v1") else "/chat/completions"
        self.key, self.model, self.timeout_s, self.temperature = key, model, timeout_s, temperature

    def _ask(self, prompt: str) -> str:
        body = {"model": self.model, "temperature": self.temperature,
                "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]}
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - the user's endpoint
            return json.loads(response.read())["choices"][0]["message"]["content"]

    def propose(self, population: list[dict[str, Any]], n: int, rng: random.Random) -> list[Proposal]:
        del rng
        best = max(population, key=lambda c: rank_key(c.get("fitness")))
        prompt = llm_prompt(population)
        out = []
        for _ in range(n):
            try:
                out.append(Proposal(parse_answer(self._ask(prompt)), best["hash"], "llm"))
            except ProgramError as e:
                out.append(Proposal(None, best["hash"], "llm", f"answer is not a program: {e}"))
            except (urllib.error.URLError, OSError, KeyError, IndexError, ValueError) as e:
                out.append(Proposal(None, best["hash"], "llm", f"endpoint {self.url} failed: {type(e).__name__}: {e}"))
        return out


class MixedProposer:
    """Each proposal from ``first`` with probability ``fraction``, else from ``second``."""

    def __init__(self, first: Proposer, second: Proposer, fraction: float) -> None:
        self.first, self.second, self.fraction = first, second, fraction

    def propose(self, population: list[dict[str, Any]], n: int, rng: random.Random) -> list[Proposal]:
        k = sum(rng.random() < self.fraction for _ in range(n))
        return self.first.propose(population, k, rng) + self.second.propose(population, n - k, rng)
