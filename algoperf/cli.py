"""The command line: ``algoperf run | workloads | submissions | score | data``.

Heavy imports (JAX, Ray, MLflow) happen inside the commands that need them, so
``algoperf --help`` is instant and Ray can start before JAX is imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="algoperf",
    help="Benchmark training algorithms: run AlgoPerf submissions on JAX workloads, score them, track them in MLflow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Prepare datasets that need a download.", no_args_is_help=True)
app.add_typer(data_app, name="data")

console = Console(stderr=True)
stdout = Console()


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one clear error line and return the Exit to raise."""
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


@app.command()
def workloads(json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False) -> None:
    """List the workloads with their targets and budgets."""
    from algoperf import registry

    infos = [registry.workload_info(name) for name in registry.workload_names()]
    if json_output:
        for info in infos:
            info["num_params"] = _num_params(info["name"])
        stdout.print_json(json.dumps(infos))
        return
    table = Table(title="Workloads (descriptions: --json)")
    for column in ("name", "metric", "validation target", "test target", "budget (s)", "eval period (s)", "step hint", "data"):
        table.add_column(column, no_wrap=column == "name")
    for i in infos:
        table.add_row(
            i["name"], i["target_metric_name"], f"{i['validation_target_value']:.6g}", f"{i['test_target_value']:.6g}",
            f"{i['max_allowed_runtime_sec']:g}", f"{i['eval_period_time_sec']:g}", str(i["step_hint"]), i["data_source"],
        )
    stdout.print(table)


def _num_params(name: str) -> int:
    """Parameter count from shapes alone (jax.eval_shape: nothing is computed)."""
    import jax

    from algoperf import param_utils, registry

    workload = registry.get_workload(name)
    params, _ = jax.eval_shape(lambda: workload.init_model_fn(jax.random.PRNGKey(0)))
    return param_utils.num_params(params)


@app.command()
def submissions(json_output: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False) -> None:
    """List the built-in submissions."""
    from algoperf import registry

    rows = []
    for name in registry.submission_names():
        path = registry.resolve_submission(name)
        doc = _module_docstring(path)
        rows.append({"name": name, "path": str(path), "summary": doc.splitlines()[0] if doc else ""})
    if json_output:
        stdout.print_json(json.dumps(rows))
        return
    table = Table(title="Submissions")
    table.add_column("name")
    table.add_column("summary")
    for row in rows:
        table.add_row(row["name"], row["summary"])
    stdout.print(table)


def _module_docstring(path: Path) -> str:
    import ast

    return ast.get_docstring(ast.parse(path.read_text())) or ""


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Argument(help="Dataset to prepare (`algoperf data list`).")],
    data_dir: Annotated[Path, typer.Option(help="Folder to write into: the later `algoperf run --data-dir`.")] = Path("data"),
    source: Annotated[Path | None, typer.Option(help="What you downloaded (archive, folder or corpus); see `algoperf data list`.")] = None,
    option: Annotated[list[str] | None, typer.Option(help="A dataset setting, key=value (repeatable).")] = None,
) -> None:
    """Turn a dataset's official files into the layout the workloads read."""
    from algoperf.data import prepare as datasets
    from algoperf.spec import DataNotFoundError

    options = {}
    for item in option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"--option {item!r} is not key=value")
        options[key] = value
    try:
        prepare = datasets.get_prepare(dataset)
        path = prepare(data_dir, source, **options)
    except KeyError as e:
        raise fail(e.args[0]) from e
    except (DataNotFoundError, ValueError, OSError) as e:
        raise fail(f"preparing {dataset} failed: {e}") from e
    except TypeError as e:  # an --option the dataset does not take
        raise fail(f"preparing {dataset}: {e}") from e
    console.print(f"{dataset} is ready in {path}; run with --data-dir {data_dir}")


@data_app.command("list")
def data_list() -> None:
    """Datasets `algoperf data prepare` knows, their workloads and what --source takes."""
    from algoperf.data import prepare as datasets

    table = Table("dataset", "workloads", "--source")
    for d in datasets.DATASETS.values():
        table.add_row(d.name, d.workloads, d.source)
    stdout.print(table)


@app.command()
def targets(
    workload: Annotated[str, typer.Argument(help="The workload whose targets to set.")],
    trials: Annotated[int, typer.Option(help="Search points per target-setting optimizer.")] = 4,
    reruns: Annotated[int, typer.Option(help="Reruns of the best point (validation target = their median).")] = 5,
    steps: Annotated[int | None, typer.Option(help="Steps per trial (default: the workload's step_hint).")] = None,
    optimizers: Annotated[str, typer.Option(help="Comma-separated target-setting submissions.")] = "adamw,nadamw,sgd_nesterov,heavy_ball",
    seed: Annotated[int, typer.Option(help="Seed of the search and the reruns.")] = 0,
    experiment_dir: Annotated[Path, typer.Option(help="Where the trials' logs go.")] = Path("experiments/targets"),
    output: Annotated[Path, typer.Option(help="Where <workload>.json and <workload>.md are written.")] = Path("targets"),
    base_budget: Annotated[bool, typer.Option(help="A variant: keep the base workload's budget; targets are the best within it.")] = False,
) -> None:
    """Set a workload's targets and budget by AlgoPerf's procedure (see algoperf/target_setting.py)."""
    from algoperf import registry
    from algoperf.target_setting import set_targets, write_report

    try:
        cls = registry.get_workload_class(workload)
    except registry.UnknownNameError as e:
        raise fail(str(e)) from e
    budget = None
    if base_budget:
        if not cls.base_workload:
            raise fail(f"{workload} is not a variant (it has no base_workload); drop --base-budget")
        budget = registry.get_workload_class(cls.base_workload).max_allowed_runtime_sec
    try:
        report = set_targets(workload, experiment_dir / workload, tuple(optimizers.split(",")), trials, reruns, seed, steps,
                             log=lambda line: console.print(line, highlight=False), budget=budget)
    except (ValueError, RuntimeError) as e:
        raise fail(str(e)) from e
    json_path, md_path = write_report(report, output)
    stdout.print_json(json.dumps(report["result"]))
    console.print(f"wrote {json_path} and {md_path}")


@app.command("env")
def env_command(
    address: Annotated[str | None, typer.Option(help="Ray cluster whose every node to inspect (default: RAY_ADDRESS; none: this machine only).")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI to check (default: $MLFLOW_TRACKING_URI, else ./mlflow.db).")] = None,
    jax_on_nodes: Annotated[bool, typer.Option("--jax/--no-jax", help="List cluster nodes' devices with JAX (a CUDA context on each GPU), or with nvidia-smi only (safe while trials run).")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every node's report.")] = 120.0,
    strict: Annotated[bool, typer.Option(help="Exit with status 1 when there is any warning (mismatched nodes, refused credentials).")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")] = False,
) -> None:
    """What this machine (and every node of a Ray cluster) runs: devices, versions, image, endpoints."""
    from algoperf import environment

    try:
        report = environment.gather(address, tracking_uri, use_jax=jax_on_nodes, timeout_s=timeout)
    except environment.ClusterError as e:
        raise fail(str(e)) from e
    if json_output:
        stdout.print_json(json.dumps(report))
    else:
        environment.print_report(report, stdout)
    if strict and report["warnings"]:
        raise typer.Exit(1)


def _register_optional_commands() -> None:
    from algoperf.campaign.command import run
    from algoperf.leaderboards.command import leaderboard_app
    from algoperf.search.command import search_app
    from algoperf.tracking.commands import mlflow_app, ui

    app.command("run")(run)
    app.command("ui")(ui)
    app.add_typer(mlflow_app, name="mlflow")
    app.add_typer(leaderboard_app, name="leaderboard")
    app.add_typer(search_app, name="search")
    try:
        from algoperf.scoring.command import score
        from algoperf.scoring.compare import compare
    except ImportError:
        return
    app.command("score")(score)
    app.command("compare")(compare)


_register_optional_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
