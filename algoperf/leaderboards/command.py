"""``algoperf leaderboard run | publish | validity``: the shipped reference leaderboards."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

leaderboard_app = typer.Typer(help="Reference leaderboards on the small suite: run, publish, validity.", no_args_is_help=True)
console = Console(stderr=True)
stdout = Console()


def _default_published() -> Path | None:
    """../shared/data/algoperf_v05 beside a source checkout, where the v0.5 entries are kept."""
    here = Path(__file__).resolve().parents[3] / "shared/data/algoperf_v05/submissions/external_tuning"
    return here if here.is_dir() else None


@leaderboard_app.command("run")
def run(
    out: Annotated[Path, typer.Option(help="Where the trial folders go (resumes what is there).")] = Path("experiments/leaderboard_v05"),
    published_entries: Annotated[Path | None, typer.Option(help="Folder of the published v0.5 JAX entries (external_tuning/<name>/submission.py).")] = None,
    entries: Annotated[str | None, typer.Option(help="Comma-separated entries (default: all 11).")] = None,
    workloads: Annotated[str | None, typer.Option(help="Comma-separated small-suite workloads (default: all 7).")] = None,
    trials: Annotated[int, typer.Option(help="Trials per study.")] = 5,
    studies: Annotated[int, typer.Option(help="Studies per workload.")] = 1,
    publish_to: Annotated[Path | None, typer.Option("--publish-to", help="Copy finished trials' CSV/JSON here after each run.")] = None,
) -> None:
    """Run (or resume) the v0.5 leaderboard campaign: every entry on the small suite."""
    from algoperf.leaderboards.campaign import (
        PORTED,
        PUBLISHED_JAX,
        WORKLOADS,
        CampaignPlan,
        run_campaign,
    )

    plan = CampaignPlan(
        out=out, published_entries=published_entries or _default_published(),
        entries=tuple(entries.split(",")) if entries else PUBLISHED_JAX + PORTED,
        workloads=tuple(workloads.split(",")) if workloads else WORKLOADS, trials=trials, studies=studies,
    )
    unknown = [e for e in plan.entries if e not in PUBLISHED_JAX + PORTED]
    if unknown:
        console.print(f"[bold red]error:[/] unknown entries {', '.join(unknown)}; known: {', '.join(PUBLISHED_JAX + PORTED)}")
        raise typer.Exit(2)
    failures = run_campaign(plan, lambda line: console.print(f"[campaign] {line}", highlight=False), publish_to)
    if failures:
        console.print(f"{failures} (entry, workload) runs had failed trials; rerun the command to retry them")
        raise typer.Exit(1)


@leaderboard_app.command("publish")
def publish_command(
    out: Annotated[Path, typer.Argument(help="The campaign's --out folder.")],
    dest: Annotated[Path | None, typer.Option(help="Default: the package's small_suite_v05/logs.")] = None,
) -> None:
    """Copy a campaign's finished trials (CSV/JSON, no checkpoints) into the shipped leaderboard."""
    from algoperf.leaderboards import get_leaderboard
    from algoperf.leaderboards.campaign import publish

    dest = dest or get_leaderboard("small-suite-v05").logs
    console.print(f"{publish(out, dest)} finished trials copied to {dest}")


@leaderboard_app.command("validity")
def validity(
    leaderboard: Annotated[str, typer.Option(help="A shipped leaderboard.")] = "small-suite-v05",
    bootstrap: Annotated[int, typer.Option(help="Bootstrap replicates over trials.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    out: Annotated[Path | None, typer.Option(help="Also write the report (Markdown) to this file.")] = None,
    full_logs: Annotated[Path | None, typer.Option(help="Full-scale AlgoPerf logs of some entries (a leaderboard tree): compare each small workload's ordering with each full workload's.")] = None,
    alias: Annotated[list[str] | None, typer.Option(help="NAME=ENTRY: a submission of --full-logs is this entry (e.g. shampoo=shampoo_submission); repeatable.")] = None,
) -> None:
    """How well the small-suite ranking predicts the published one: Kendall tau, Spearman rho, intervals."""
    from algoperf.leaderboards import get_leaderboard
    from algoperf.leaderboards.validity import render_markdown, validity_report
    from algoperf.scoring.errors import ScoringError

    aliases = {}
    for item in alias or []:
        name, sep, entry = item.partition("=")
        if not sep or not name or not entry:
            console.print(f"[bold red]error:[/] --alias {item!r}: give NAME=ENTRY, e.g. shampoo=shampoo_submission")
            raise typer.Exit(2)
        aliases[name] = entry
    if full_logs is not None and not full_logs.is_dir():
        console.print(f"[bold red]error:[/] --full-logs {full_logs}: no such folder (a tree of <submission>/study_<k>/<workload>_jax/trial_<n>/)")
        raise typer.Exit(2)
    try:
        board = get_leaderboard(leaderboard)
        report = validity_report(board, n_bootstrap=bootstrap, seed=seed, full_logs=full_logs, aliases=aliases)
    except (ScoringError, ValueError) as e:
        console.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from e
    text = render_markdown(report, board.published_proxy())
    stdout.print(text, highlight=False, markup=False)
    if out:
        out.write_text(text)
        console.print(f"wrote {out}")
