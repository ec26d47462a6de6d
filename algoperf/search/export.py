"""A program as a submission folder that runs like any other.

``submission.py`` inlines the program's Python (``rule``) and the runtime that turns it
into an optax transformation (``compile.RUNTIME``: the same text the search ran), builds
the optimizer from the ``learning_rate`` hyperparameter and the program's schedule, and
takes the training step, batch sizes and data selection from the NAdamW baseline (the
shared optax training step). ``tuning_search_space.json`` spans the program's learning
rate / 3 .. x 3 (log); ``README.md`` holds the program, its lineage and its fitness.
The search evaluates every candidate through such a folder, so a found program is
exactly what was measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from algoperf.search.compile import RUNTIME
from algoperf.search.language import Program

LR_SPREAD = 3.0

_TEMPLATE = '''"""{title}: an update rule found by `algoperf search` (see README.md).

{program_text}"""
{runtime}

# --- the searched program ---------------------------------------------------------------
{rule}

SCHEDULE = {schedule_kind}
SCHEDULE_WARMUP = {warmup!r}
SLOTS = {n_slots}

# --- AlgoPerf's functions ----------------------------------------------------------------
from algoperf.submissions.nadamw.submission import (  # noqa: E402 - the shared optax training step
    data_selection,
    get_batch_size,
    prepare_for_eval,
    update_params,
)


def make_optimizer(hyperparameters, step_hint):
    """The rule as an optax transformation, peak learning rate from the hyperparameters."""
    return transformation(rule, SLOTS, SCHEDULE(hyperparameters.learning_rate, SCHEDULE_WARMUP, step_hint))


def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    del model_state, rng
    optimizer = make_optimizer(hyperparameters, workload.step_hint)
    return optimizer.init(model_params), optimizer.update


__all__ = ["data_selection", "get_batch_size", "init_optimizer_state", "prepare_for_eval", "update_params"]
'''


def submission_source(program: Program, title: str) -> str:
    rule, _ = program.to_text().rsplit("\n\n\n", 1)
    return _TEMPLATE.format(
        title=title, program_text=_indent(program.to_text()), runtime=RUNTIME, rule=rule,
        schedule_kind=program.schedule.kind, warmup=program.schedule.warmup, n_slots=len(program.slots),
    )


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.splitlines()) + "\n"


def search_space(program: Program) -> dict[str, Any]:
    lr = program.schedule.lr
    return {"learning_rate": {"min": lr / LR_SPREAD, "max": lr * LR_SPREAD, "scaling": "log"}}


def write_submission(program: Program, folder: str | Path, title: str, readme: str | None = None) -> Path:
    """Write ``folder``/submission.py, tuning_search_space.json, program.json (and README.md)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "submission.py").write_text(submission_source(program, title))
    (folder / "tuning_search_space.json").write_text(json.dumps(search_space(program), indent=2) + "\n")
    (folder / "program.json").write_text(json.dumps(program.to_json(), indent=2) + "\n")
    if readme is not None:
        (folder / "README.md").write_text(readme)
    return folder


def readme_text(name: str, program: Program, lineage: list[dict[str, Any]], fitness: dict[str, Any]) -> str:
    """The README of an exported program: the rule, where it came from, how it scored."""
    lines = [f"# {name}", "", "Found by `algoperf search`.", "", "## Program", "", "```python", program.to_text().rstrip(), "```", "",
             "## Fitness", "", f"score (performance profile against the search's field, exact area): {fitness.get('score')}",
             f"speedup against the first seed (geometric mean): {fitness.get('speedup')}", "",
             "| workload | time to target (s) |", "| --- | --- |"]
    lines += [f"| {w} | {t if t is not None else 'missed'} |" for w, t in fitness.get("times", {}).items()]
    lines += ["", "## Lineage (oldest first)", ""]
    lines += [f"- `{c['hash']}` generation {c['generation']}: {c['origin']}" for c in lineage]
    lines += ["", "Run it: `algoperf run --submission <this folder> --suite small`.", ""]
    return "\n".join(lines)
