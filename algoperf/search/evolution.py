"""Regularised evolution with a funnel, checkpointed per generation.

Per generation: the proposer makes ``children`` programs (mutation: tournament selection
of a parent from the population); each is checked statically (``check.py``) and
deduplicated by its canonical hash; the survivors run a short trial on the first
workload (``funnel_budget`` x its budget) and only those reaching the target within
``funnel_threshold`` x the best seed's time there run the other workloads at their full
budgets (a trial that reaches the target under a shortened budget has the same time to
target as under the full one, so the first stage's time counts). Evaluated children join
the population; the oldest members leave when it is over ``population`` (Real et al.
2019: removal by age, not fitness). The seeds are evaluated first, on every workload,
and, with every candidate evaluated since, the field the fitness is measured against (``fitness.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from algoperf.search import check, export
from algoperf.search.evaluate import Evaluator, Job
from algoperf.search.fitness import passes_funnel, profile_fitness, rank_key
from algoperf.search.language import Program, from_json
from algoperf.search.proposers import Proposal, Proposer
from algoperf.search.seeds import seed_program
from algoperf.search.state import SearchState


class Search:
    def __init__(self, root: Path, state: SearchState, proposer: Proposer, evaluator: Evaluator,
                 log: Callable[[str], None] = print, recorder: Any = None) -> None:
        self.root, self.state, self.proposer, self.evaluator, self.log = root, state, proposer, evaluator, log
        self.recorder = recorder
        s = state.settings
        self.workloads: list[str] = s["workloads"]
        from algoperf import registry

        self.factor = float(s.get("budget_factor", 1.0))  # like `algoperf run --budget-factor`
        self.budgets = [registry.workload_info(w)["max_allowed_runtime_sec"] * self.factor for w in self.workloads]

    # --- candidates ------------------------------------------------------------------
    def _folder(self, h: str) -> Path:
        return self.root / "programs" / h

    def _add(self, program: Program | None, parent: str | None, origin: str, status: str, h: str | None = None, **extra: Any) -> dict[str, Any]:
        h = h or (check.canonical_hash(program) if program else f"invalid-{len(self.state.candidates)}")
        record = {"hash": h, "program": program.to_json() if program else None, "parent": parent, "origin": origin,
                  "generation": self.state.generation, "status": status, "times": {}, "fitness": None, **extra}
        self.state.candidates[h] = record
        if status != "proposed":  # counted when proposed (_admit), then as pruned / evaluated
            self.state.count(status)
        return record

    def _jobs(self, records: list[dict[str, Any]], workloads: list[str], factor: float) -> list[Job]:
        jobs = []
        for r in records:
            program = from_json(r["program"])
            folder = export.write_submission(program, self._folder(r["hash"]), f"candidate {r['hash']}")
            jobs += [Job(r["hash"], folder, w, program.schedule.lr, factor) for w in workloads]
        return jobs

    def _run(self, records: list[dict[str, Any]], workloads: list[str], factor: float = 1.0) -> None:
        jobs = self._jobs(records, workloads, factor * self.factor)
        for job, t in zip(jobs, self.evaluator.run(jobs, self.state.generation), strict=True):
            self.state.candidates[job.hash]["times"][job.workload] = t

    def _seed_times(self) -> list[dict[str, Any]]:
        return [c["times"] for c in self.state.candidates.values() if c["status"] == "seed"]

    def _rescore(self) -> None:
        """Every seed and fully evaluated candidate scored against the field as it is now:
        the seeds (the first: the speedup's baseline), then every evaluated candidate (fitness.py)."""
        scored = [c for c in self.state.candidates.values() if c["status"] in ("seed", "evaluated")]
        field = [c["times"] for c in scored if c["status"] == "seed"] + [c["times"] for c in scored if c["status"] == "evaluated"]
        for c in scored:
            c["fitness"] = profile_fitness(c["times"], field, self.workloads, self.budgets)

    # --- the loop ---------------------------------------------------------------------
    def start(self) -> None:
        """Evaluate the seeds (generation 0) unless a checkpoint has them."""
        if self.state.candidates:
            return
        started = time.monotonic()
        records = [self._add(seed_program(n), None, f"seed:{n}", "seed") for n in self.state.settings["seed_programs"]]
        self._run(records, self.workloads)
        for r in records:
            self.state.population.append(r["hash"])
        self._rescore()
        self._checkpoint(started)

    def generation(self) -> None:
        started = time.monotonic()
        s, st = self.state.settings, self.state
        st.generation += 1
        rng = st.rng()
        population = [st.candidates[h] for h in st.population]
        fresh: list[dict[str, Any]] = []
        for p in self.proposer.propose(population, s["children"], rng):
            fresh += self._admit(p)
        st.keep_rng(rng)
        first, rest = self.workloads[0], self.workloads[1:]
        self._run(fresh, [first], s["funnel_budget"])
        best_seed = min((t for t in (c.get(first) for c in self._seed_times()) if t is not None), default=None)
        passed = [r for r in fresh if passes_funnel(r["times"].get(first), best_seed, s["funnel_threshold"])]
        for r in fresh:
            if r not in passed:
                r["status"] = "pruned"
                st.count("pruned")
        self._run(passed, rest)
        for r in passed:
            r["status"] = "evaluated"
            st.count("evaluated")
            st.population.append(r["hash"])
        self._rescore()
        while len(st.population) > s["population"]:
            st.population.pop(0)  # the oldest leaves
        if hasattr(self.proposer, "observe"):
            self.proposer.observe(st.candidates)
        self._checkpoint(started)
        best = self.best()
        self.log(f"generation {st.generation}: {len(fresh)} trained, {len(passed)} past the funnel; best {best['hash']} "
                 f"score {best['fitness']['score']:.3f} speedup {best['fitness']['speedup']:.3f}; counts {st.counts}")

    def _admit(self, proposal: Proposal) -> list[dict[str, Any]]:
        """The proposal as a new candidate to train ([]), or recorded as rejected / duplicate."""
        st = self.state
        st.count("proposed")
        if proposal.program is None:
            self._add(None, proposal.parent, proposal.origin, "rejected", reasons=[proposal.error])
            return []
        problems = check.check(proposal.program)
        h = check.canonical_hash(proposal.program)
        if h in st.candidates:
            st.count("duplicate")
            return []
        if problems:
            self._add(proposal.program, proposal.parent, proposal.origin, "rejected", h, reasons=problems)
            return []
        return [self._add(proposal.program, proposal.parent, proposal.origin, "proposed", h)]

    def _checkpoint(self, started: float) -> None:
        self.state.elapsed_s += time.monotonic() - started
        best = self.best()
        self.state.history.append({"generation": self.state.generation, "elapsed_s": self.state.elapsed_s,
                                   "best": best["hash"], **(best["fitness"] or {})})
        if hasattr(self.proposer, "state"):
            self.state.proposer_state = self.proposer.state()
        self.state.save(self.root)
        if self.recorder is not None:
            self.recorder.record(self.state)

    def best(self) -> dict[str, Any]:
        scored = [c for c in self.state.candidates.values() if c["fitness"]]
        return max(scored, key=lambda c: rank_key(c["fitness"]))

    def run(self, budget_s: float | None, generations: int | None) -> None:
        if self.state.proposer_state and hasattr(self.proposer, "load"):
            self.proposer.load(self.state.proposer_state)
        self.start()
        while (generations is None or self.state.generation < generations) and (budget_s is None or self.state.elapsed_s < budget_s):
            self.generation()
