"""The CMA-ES mode: constants encoded and decoded, ask/tell through the proposer hooks, resumable."""

from __future__ import annotations

import random

import pytest

from algoperf.search import check, seeds
from algoperf.search.cmaes import decode, encode

cma = pytest.importorskip("cma", reason="the optional extra: pip install 'algoperf[search]'")

from algoperf.search.cmaes import CMAProposer  # noqa: E402


def test_encode_decode_round_trip_keeps_decay_rates_in_range():
    program = seeds.seed_program("adamw")
    x = encode(program)
    assert len(x) == len(program.constants()) + 1
    back = decode(program, x)
    assert back.constants() == pytest.approx(program.constants()) and back.schedule.lr == pytest.approx(program.schedule.lr)
    moved = decode(program, [xi + 3.0 for xi in x])
    for c, d in zip(program.constants(), moved.constants(), strict=True):
        if 0 < c < 1:
            assert d < 1.0  # 1 - e^x stays below 1


def test_proposals_are_told_their_fitness_and_the_state_resumes():
    program = seeds.seed_program("sgd_momentum")
    proposer = CMAProposer(program, sigma=0.2, popsize=4, seed=0)
    proposals = proposer.propose([], 0, random.Random(0))
    assert len(proposals) == 4 and all(p.origin == "cmaes" for p in proposals)
    assert all(check.check(p.program) == [] for p in proposals)
    candidates = {check.canonical_hash(p.program): {"fitness": {"score": i / 4, "speedup": 1.0}} for i, p in enumerate(proposals)}
    proposer.observe(candidates)
    saved = proposer.state()
    first = [p.program for p in proposer.propose([], 0, random.Random(0))]
    again = CMAProposer(program, sigma=0.2, popsize=4, seed=0)
    again.load(saved)
    assert [p.program for p in again.propose([], 0, random.Random(0))] == first
