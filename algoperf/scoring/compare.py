"""``algoperf compare A [B]``: is A really faster than B? Paired tests on scored logs.

A and B are each a log tree (``[self:|external:]DIR``, as ``--logs`` takes it) or an MLflow
campaign (``mlflow:NAME``, or a NAME that is not a folder). Both are read and scored
together by :func:`algoperf.scoring.pipeline.score_collected`, so the benchmark scores are
those of one profile; then every pair (each submission of A against each of B; with one
source, all pairs within it) gets :func:`algoperf.scoring.paired.compare_pair`, the score
p-values Holm-adjusted over the pairs. A submission name found in both sources is scored
as ``A/<name>`` and ``B/<name>``.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import replace
from itertools import combinations
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from algoperf.scoring.command import console_for_tables
from algoperf.scoring.errors import ScoringError
from algoperf.scoring.flags import (
    AsJsonOpt,
    BenchmarkVersionOpt,
    ConfidenceOpt,
    RulesetOpt,
    SeedOpt,
    TargetsOpt,
    TrackingUriOpt,
    WorkloadsOpt,
)
from algoperf.scoring.options import ScoreRequest, Warnings, rule_options
from algoperf.scoring.paired import PairResult, compare_all, verdict
from algoperf.scoring.pipeline import Collected, collect, score_collected
from algoperf.scoring.report import format_time


def _request_for(source: str, base: ScoreRequest) -> ScoreRequest:
    """A request reading one source: a folder (log tree) or an MLflow experiment."""
    name = source[len("mlflow:") :] if source.startswith("mlflow:") else None
    if name is None:
        head, sep, tail = source.partition(":")
        path = Path(tail if sep and head.lower() in ("self", "external", "self_tuning", "external_tuning") else source)
        if path.exists():
            return replace(base, logs=[source], experiments=[])
        if "/" in source or source.startswith("."):
            raise ScoringError(
                f"{source!r} is not a folder: give a log tree that exists, or an MLflow "
                "experiment as mlflow:NAME"
            )
        name = source
    if not name:
        raise ScoringError(f"{source!r}: name the MLflow experiment after mlflow:")
    return replace(base, logs=[], experiments=[name])


def read_sources(sources: list[str], base: ScoreRequest, warn: Warnings) -> tuple[Collected, list[list[str]]]:
    """Read each source on its own and merge them; (merged, each source's submissions)."""
    if not 1 <= len(sources) <= 2:
        raise ScoringError("compare takes one source (all pairs within it) or two (A B)")
    parts = [collect(_request_for(s, base), warn) for s in sources]
    names = [list(dict.fromkeys(sub for (_, sub) in c.origin)) for c in parts]
    clash = len(parts) == 2 and set(names[0]) & set(names[1])
    merged = Collected()
    for tag, part in zip("AB", parts, strict=False):
        for rs, records in part.by_ruleset.items():
            if clash:
                records = [replace(r, submission=f"{tag}/{r.submission}") for r in records]
            merged.add(rs, records, " + ".join(part.sources[rs]))
        merged.tree_paths += part.tree_paths
        merged.campaigns.update(part.campaigns)
        merged.tracking_uri = merged.tracking_uri or part.tracking_uri
    if clash:
        names = [[f"{tag}/{n}" for n in ns] for tag, ns in zip("AB", names, strict=True)]
    return merged, names


def pairs_of(names: list[list[str]], scored: list[str]) -> list[tuple[str, str]]:
    """Each submission of A against each of B (or all pairs of one source), if scored."""
    if len(names) == 1:
        pairs = list(combinations(names[0], 2))
    else:
        pairs = [(a, b) for a in names[0] for b in names[1] if a != b]
    return [(a, b) for a, b in pairs if a in scored and b in scored]


def pair_to_dict(r: PairResult) -> dict[str, Any]:
    def num(x: float) -> float | None:
        return float(x) if math.isfinite(float(x)) else None

    return {
        "a": r.a,
        "b": r.b,
        "verdict": verdict(r),
        "score_a": r.score_a,
        "score_b": r.score_b,
        "score_difference": r.score_diff,
        "score_difference_interval": [num(v) for v in r.score_diff_interval],
        "p_score": r.p_score,
        "p_score_holm": num(r.p_score_holm),
        "gm_speedup": num(r.gm_speedup),
        "gm_speedup_interval": [num(v) for v in r.gm_speedup_interval],
        "replicates": r.n,
        "confidence": r.confidence,
        "workloads": [
            {
                "workload": w,
                "units": u.kind,
                "n_units": u.n,
                "speedup": num(r.speedup[j]),
                "speedup_interval": [num(v) for v in r.speedup_interval[j]],
                "p": num(r.p_workload[j]),
                "p_holm": num(r.p_workload_holm[j]),
            }
            for j, (w, u) in enumerate(zip(r.workloads, r.units, strict=False))
        ],
        "notes": r.notes,
    }


def render_pair(r: PairResult, console: Console) -> None:
    """Per-workload speedups with intervals and p-values, the score line, the verdict."""
    ci = f"{r.confidence:.0%} CI"
    table = Table(title=f"{r.a} vs {r.b}", title_justify="left", header_style="bold")
    for col in ("workload", "paired units", f"time {r.a}", f"time {r.b}", f"speedup [{ci}]", "p", "p (Holm)"):
        table.add_column(col, justify="left" if col == "workload" else "right", no_wrap=True)
    for j, w in enumerate(r.workloads):
        u = r.units[j]
        if u.n == 0:
            table.add_row(w, "0", "-", "-", "-", "-", "-")
            continue
        lo, hi = r.speedup_interval[j]
        table.add_row(
            w, f"{u.n} {u.kind}", format_time(float(u.aggregate(u.a))), format_time(float(u.aggregate(u.b))),
            f"{r.speedup[j]:.2f}x [{lo:.2f}, {hi:.2f}]", f"{r.p_workload[j]:.3g}", f"{r.p_workload_holm[j]:.3g}",
        )
    lo, hi = r.score_diff_interval
    table.caption = (
        f"speedup: time of {r.b} / time of {r.a} (>1: {r.a} faster; misses count as budget + 1 s); "
        f"score {r.score_a:.4f} vs {r.score_b:.4f}, difference {r.score_diff:.4f} [{lo:.4f}, {hi:.4f}], "
        f"p = {r.p_score:.3g}" + (f" (Holm over pairs {r.p_score_holm:.3g})" if math.isfinite(r.p_score_holm) else "")
        + f"; paired bootstrap and permutation test, {r.n} replicates each"
    )
    table.caption_justify = "left"
    console.print(table)
    for note in r.notes:
        console.print(f"note: {note}")
    console.print(f"[bold]{verdict(r)}[/]")


def compare(
    a: Annotated[str, typer.Argument(help="A: a log tree ([self:|external:]DIR) or mlflow:EXPERIMENT.", show_default=False)],
    b: Annotated[str | None, typer.Argument(help="B, the same kinds (omit: all pairs within A).", show_default=False)] = None,
    tracking_uri: TrackingUriOpt = None,
    targets: TargetsOpt = None,
    ruleset: RulesetOpt = None,
    benchmark_version: BenchmarkVersionOpt = None,
    workloads: WorkloadsOpt = None,
    n_permutations: Annotated[int, typer.Option("--replicates", help="Bootstrap and permutation replicates.")] = 2000,
    seed: SeedOpt = 0,
    confidence: ConfidenceOpt = 0.95,
    as_json: AsJsonOpt = False,
) -> None:
    """Is A faster than B? Paired differences, intervals, p-values (Holm over pairs), verdict."""
    warn = Warnings()
    try:
        if n_permutations < 1:
            raise ScoringError(f"--replicates must be at least 1, not {n_permutations}")
        base = ScoreRequest(
            tracking_uri=tracking_uri, targets_path=targets, default_ruleset=ruleset,
            version_flag=benchmark_version, options_kw=rule_options(workloads=workloads),
            n_bootstrap=0, seed=seed, confidence=confidence,
        )
        collected, names = read_sources([a] if b is None else [a, b], base, warn)
        scored = score_collected(collected, base, warn)
        results = []
        for rep in scored.reports:
            pairs = pairs_of(names, rep.result.submissions)
            results += compare_all(rep.result, pairs, n_permutations, seed, confidence)
        if not results:
            raise ScoringError("no pair of submissions to compare: A and B need logs of the same ruleset")
    except ScoringError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(scored.version_note, err=True)
    if as_json:
        sys.stdout.write(json.dumps({"pairs": [pair_to_dict(r) for r in results]}, indent=2) + "\n")
        return
    console = console_for_tables()
    for r in results:
        render_pair(r, console)
