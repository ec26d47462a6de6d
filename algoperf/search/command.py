"""`algoperf search` (find update rules) and `algoperf search export` (one as a submission)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

console = Console(stderr=True)
search_app = typer.Typer(help="Search for training algorithms with the benchmark as the fitness (docs/search.md).",
                         no_args_is_help=False, invoke_without_command=True)

SearchDir = Annotated[Path, typer.Option(help="Where searches keep their state, programs and trials.")]


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/] {message}", highlight=False)
    return typer.Exit(2)


@search_app.callback()
def search(
    ctx: typer.Context,
    experiment: Annotated[str, typer.Option(help="The search's name: its folder and its MLflow experiment.")] = "search",
    seed_program: Annotated[str, typer.Option(help="Comma-separated seeds: adamw, nadamw, sgd_momentum, lion.")] = "adamw",
    workloads: Annotated[str, typer.Option(help="Comma-separated workloads; the first is the funnel's first stage.")] = "mnist1d,ctr",
    population: Annotated[int, typer.Option(help="Population size (oldest removed beyond it).")] = 16,
    tournament: Annotated[int, typer.Option(help="Tournament size for parent selection.")] = 4,
    children: Annotated[int, typer.Option(help="New candidates per generation (run in parallel).")] = 2,
    budget_hours: Annotated[float | None, typer.Option(help="Stop after this much search time (resumes add to it).")] = None,
    generations: Annotated[int | None, typer.Option(help="Stop after this many generations.")] = None,
    funnel_budget: Annotated[float, typer.Option(help="First stage: this fraction of the first workload's budget.")] = 0.5,
    funnel_threshold: Annotated[float, typer.Option(help="Pass the first stage: time to target <= this x the best seed's.")] = 2.0,
    budget_factor: Annotated[float, typer.Option(help="Multiply every workload's budget (a loaded or slow machine), as `algoperf run --budget-factor`.")] = 1.0,
    max_steps: Annotated[int | None, typer.Option(help="Stop every trial at this step (smoke tests).")] = None,
    executor: Annotated[str, typer.Option(help="ray (a task per trial, pinned cores) or local (in this process).")] = "ray",
    hardware: Annotated[str, typer.Option(help="Hardware of each trial (as for `algoperf run`).")] = "cpu:1",
    search_dir: SearchDir = Path("searches"),
    seed: Annotated[int, typer.Option(help="Seed of the search's random choices.")] = 0,
    tracking: Annotated[bool, typer.Option(help="Record the search in MLflow.")] = True,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else ./mlflow.db).")] = None,
    mode: Annotated[str, typer.Option(help="evolution (programs) or cmaes (the constants of one program, CMA-ES).")] = "evolution",
    program: Annotated[Path | None, typer.Option(help="cmaes: the program to tune (its Python form); default: the first seed.")] = None,
    sigma: Annotated[float, typer.Option(help="cmaes: initial step size in the encoded space.")] = 0.3,
    llm_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (…/v1/chat/completions) for the LLM proposer; off if unset.")] = None,
    llm_model: Annotated[str, typer.Option(help="Model name sent to the endpoint.")] = "default",
    llm_fraction: Annotated[float, typer.Option(help="Share of proposals the LLM makes (the rest: mutation).")] = 0.5,
) -> None:
    """Evolve update rules (regularised evolution, static check, funnel); re-run to resume."""
    if ctx.invoked_subcommand is not None:
        return
    from algoperf.search.language import ProgramError
    from algoperf.search.state import load_state

    root = search_dir / experiment
    state = load_state(root)
    if state is None:
        state = _new_state(seed_program, workloads, mode, program, settings={
            "population": population, "tournament": tournament, "children": children, "funnel_budget": funnel_budget,
            "funnel_threshold": funnel_threshold, "max_steps": max_steps, "seed": seed, "budget_factor": budget_factor,
            "mode": mode, "sigma": sigma})
    else:
        console.print(f"Resuming {root} at generation {state.generation} (its settings: {state.settings})", highlight=False)
    if executor == "ray":
        from algoperf.campaign.cluster import connect

        connect()  # before JAX is imported (ray_executor's rule)
    from algoperf.search.evaluate import Evaluator
    from algoperf.search.evolution import Search

    recorder = None
    if tracking:
        from algoperf.search.records import Recorder
        from algoperf.tracking import TrackingError, resolve_tracking_uri

        try:
            recorder = Recorder(resolve_tracking_uri(tracking_uri), experiment)
        except TrackingError as e:
            raise _fail(str(e)) from e
    try:
        proposer = _proposer(state.settings, llm_url, llm_model, llm_fraction)
    except (ProgramError, ValueError) as e:
        raise _fail(str(e)) from e
    evaluator = Evaluator(root, executor, hardware, state.settings["max_steps"], console)
    try:
        run = Search(root, state, proposer, evaluator, log=lambda line: console.print(line, highlight=False), recorder=recorder)
        run.run(budget_hours * 3600 if budget_hours else None, generations)
    except (ProgramError, ValueError) as e:
        raise _fail(str(e)) from e
    _summary(run)


def _new_state(seed_program: str, workloads: str, mode: str, program: Path | None, settings: dict):
    """A new search's state from the options, or a clear refusal."""
    from algoperf import registry
    from algoperf.search.seeds import SEED_NAMES
    from algoperf.search.state import SearchState

    names = [n.strip() for n in seed_program.split(",") if n.strip()]
    unknown = [n for n in names if n not in SEED_NAMES]
    if unknown or not names:
        raise _fail(f"--seed-program {seed_program!r}: choose from {', '.join(SEED_NAMES)}")
    wl = [w.strip() for w in workloads.split(",") if w.strip()]
    bad = [w for w in wl if w not in registry.workload_names()]
    if bad or not wl:
        raise _fail(f"--workloads: unknown {', '.join(bad) or '(none given)'}; see `algoperf workloads`")
    if mode not in ("evolution", "cmaes"):
        raise _fail(f"--mode {mode!r}: choose evolution or cmaes")
    if min(settings["population"], settings["tournament"], settings["children"]) < 1 \
            or not 0 < settings["funnel_budget"] <= 1 or not settings["budget_factor"] > 0:
        raise _fail("--population, --tournament, --children must be >= 1, --funnel-budget in (0, 1], --budget-factor > 0")
    if program is not None and not program.is_file():
        raise _fail(f"--program {program}: no such file (a program in the Python form of docs/search.md)")
    return SearchState(settings={"seed_programs": names, "workloads": wl, **settings,
                                 "program": program.read_text() if program else None})


def _proposer(settings: dict, url: str | None, model: str, fraction: float):
    from algoperf.search.proposers import LLMProposer, MixedProposer, MutationProposer

    if settings.get("mode", "evolution") == "cmaes":
        from algoperf.search.cmaes import CMAProposer
        from algoperf.search.language import from_text
        from algoperf.search.seeds import seed_program

        fixed = from_text(settings["program"]) if settings.get("program") else seed_program(settings["seed_programs"][0])
        return CMAProposer(fixed, settings.get("sigma", 0.3), settings["children"], settings["seed"])
    if settings.get("mode", "evolution") != "evolution":
        raise ValueError(f"--mode {settings['mode']!r}: choose evolution or cmaes")
    mutation = MutationProposer(settings["tournament"])
    if not url:
        return mutation
    llm = LLMProposer(url, os.environ.get("ALGOPERF_LLM_KEY"), model)
    return MixedProposer(llm, mutation, fraction)


def _summary(run) -> None:
    from algoperf.search.language import from_json

    st = run.state
    best = run.best()
    seeds = [c for c in st.candidates.values() if c["status"] == "seed"]
    console.print(f"Search {run.root}: {st.generation} generations, {st.elapsed_s / 60:.1f} min; counts {st.counts}", highlight=False)
    for c in seeds + [best]:
        console.print(f"{c['origin']} {c['hash']}: times {c['times']} fitness {c['fitness']}", highlight=False)
    print(f"# best: {best['hash']} ({best['origin']}), fitness {best['fitness']}\n{from_json(best['program']).to_text()}")


@search_app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="The search (its --experiment name).")],
    out: Annotated[Path, typer.Option(help="Folder to write the submissions into.")] = Path("submissions_found"),
    top: Annotated[int, typer.Option(help="How many of the best programs to export.")] = 1,
    candidate: Annotated[str | None, typer.Option(help="Export this candidate (its hash, e.g. a seed) as OUT/<hash> instead.")] = None,
    search_dir: SearchDir = Path("searches"),
) -> None:
    """Write the best programs as submission folders: OUT/best, OUT/top2, ... (or OUT/<hash>)."""
    from algoperf.search import export
    from algoperf.search.fitness import rank_key
    from algoperf.search.language import from_json
    from algoperf.search.state import load_state

    state = load_state(search_dir / name)
    if state is None:
        raise _fail(f"no search {name!r} in {search_dir} (no {search_dir / name / 'state.json'}); check --search-dir")
    ranked = sorted((c for c in state.candidates.values() if c["fitness"]), key=lambda c: rank_key(c["fitness"]), reverse=True)
    if candidate is not None:
        if candidate not in state.candidates or not state.candidates[candidate]["program"]:
            raise _fail(f"--candidate {candidate}: no such program in {name} (hashes are in state.json and MLflow)")
        ranked, top = [state.candidates[candidate]], 1
    for i, c in enumerate(ranked[:top]):
        lineage, h = [], c["hash"]
        while h is not None:
            lineage.insert(0, state.candidates[h])
            h = state.candidates[h]["parent"]
        folder = out / (c["hash"] if candidate else "best" if i == 0 else f"top{i + 1}")
        program = from_json(c["program"])
        readme = export.readme_text(f"{name}: {folder.name} ({c['hash']})", program, lineage, {**(c["fitness"] or {}), "times": c["times"]})
        export.write_submission(program, folder, f"{name} {folder.name}", readme)
        console.print(f"{folder}: {c['hash']} fitness {c['fitness']}", highlight=False)
