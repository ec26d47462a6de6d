"""The command line: ``algoperf run | workloads | submissions | score | data``.

Heavy imports (JAX, Ray, MLflow) happen inside the commands that need them, so
``algoperf --help`` is instant and Ray can start before JAX is imported.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

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


def _parse_hparams(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    # Inline JSON first: a long JSON object is no valid path (Path.exists raises on it).
    try:
        data = json.loads(value)
    except json.JSONDecodeError as inline_error:
        path = Path(value)
        try:
            is_file = path.is_file()
        except OSError:
            is_file = False
        if not is_file:
            raise fail(f"--hparams {value!r}: neither inline JSON ({inline_error.msg}) nor an existing JSON file") from None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise fail(f"--hparams {value!r}: the file is not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(data, dict):
        raise fail(f"--hparams {value!r}: expected a JSON object of name -> value"
                   + ("; a list of points is a search space: pass it as --tuning-search-space" if isinstance(data, list) else ""))
    ranged = [k for k, v in data.items() if isinstance(v, dict) and ({"min", "max", "feasible_points"} & set(v))]
    if ranged:
        raise fail(f"--hparams {value!r} is a search space ({ranged[0]} has {'/'.join(sorted({'min', 'max', 'feasible_points'} & set(data[ranged[0]])))}), "
                   "not one point: pass it as --tuning-search-space FILE, or give fixed values like {\"learning_rate\": 0.001}")
    return data


def _workloads_for(workloads: list[str], suite: str | None) -> list[str]:
    from algoperf import registry, suites

    names = list(workloads)
    if suite:
        if suite not in suites.SUITES:
            raise fail(f"unknown suite {suite!r}; known suites: {', '.join(suites.SUITES)}")
        names += [w for w in suites.SUITES[suite] if w not in names]
    if not names:
        raise fail("name at least one --workload (or a --suite); `algoperf workloads` lists them")
    for name in names:
        try:
            registry.get_workload_class(name)
        except registry.UnknownNameError as e:
            raise fail(str(e)) from e
    return names


def _result_table(results: list[dict[str, Any]]) -> Table:
    table = Table(title="Trials")
    for column in ("workload", "study", "trial", "status", "time to result (s)", "steps", "submission time (s)", "best validation"):
        table.add_column(column, justify="right" if column not in ("workload", "status") else "left")
    for r in results:
        ttr = r.get("time_to_result")
        best = r.get("best_validation")
        table.add_row(
            r["workload"], str(r.get("study", "") if r.get("study") is not None else "-"), str(r.get("trial", 1)),
            {"reached_target": "[green]reached target[/]", "missed": "[yellow]missed[/]",
             "diverged": "[red]diverged[/]", "failed": "[red]failed[/]"}.get(r["status"], r["status"]),
            f"{ttr:.2f}" if ttr is not None else "-",
            str(r["global_step"]), f"{r['accumulated_submission_time']:.2f}",
            f"{best:.4f}" if best is not None else "-",
        )
    return table


@app.command()
def run(
    ctx: typer.Context,
    submission: Annotated[str, typer.Option("--submission", "-s", help="A built-in submission name, a folder holding submission.py, or a module path.")],
    workload: Annotated[list[str], typer.Option("--workload", "-w", help="Workload name (repeatable).")] = [],  # noqa: B006
    suite: Annotated[str | None, typer.Option(help="Run every workload of a suite (e.g. 'small').")] = None,
    ruleset: Annotated[str, typer.Option(help="external (tuned hyperparameters) or self (no hyperparameters, budget x1.5).")] = "external",
    studies: Annotated[int, typer.Option(help="Independent studies (AlgoPerf: 3 external, 5 self-tuning).")] = 1,
    trials: Annotated[int, typer.Option(help="Trials per study in external tuning (AlgoPerf: 5).")] = 1,
    hparams: Annotated[str | None, typer.Option(help="Hyperparameters for every trial: a JSON file or inline JSON object.")] = None,
    tuning_search_space: Annotated[Path | None, typer.Option("--tuning-search-space", help="The search space (AlgoPerf's --tuning_search_space): a JSON file anywhere; default tuning_search_space.json beside the submission.")] = None,
    batch_size: Annotated[list[str], typer.Option("--batch-size", help="WORKLOAD=N: global batch size for that workload, over the submission's get_batch_size (repeatable).")] = [],  # noqa: B006
    submission_style: Annotated[str, typer.Option("--submission-style", help="auto: read from the submission's source whether it is pmap-style (v0.5: replicated params, per-device batches) or jit-style (v0.6); jit or pmap: force it.")] = "auto",
    experiment_dir: Annotated[Path, typer.Option(help="Where experiments are written.")] = Path("experiments"),
    experiment_name: Annotated[str | None, typer.Option(help="Folder name of this campaign (default <submission>_<ruleset>).")] = None,
    seed: Annotated[int, typer.Option(help="Campaign seed: the same seed gives the same trials.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop each trial after this many steps (with a final eval).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Data folder for workloads that read files (e.g. mnist).")] = None,
    size: Annotated[float, typer.Option(help="Model size multiplier of small-suite workloads (1.0 = as calibrated).")] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db).")] = None,
    tracking: Annotated[bool, typer.Option("--tracking/--no-tracking", help="Record every trial in MLflow (see `algoperf ui`).")] = True,
    executor: Annotated[str, typer.Option(help="local: trials one after another in this process (fastest for one trial); ray: each trial a Ray task in a fresh process, with retries and resume; auto: ray when --address, RAY_ADDRESS or --hardware is given or there is more than one trial, else local.")] = "auto",
    address: Annotated[str | None, typer.Option(help="Ray cluster to join (the address `ray start --head` printed); default RAY_ADDRESS, else an embedded Ray sized to this machine.")] = None,
    hardware: Annotated[str | None, typer.Option(help="What every trial runs on: cpu:N, NxTYPE (1xH100, 8xA100), +cpu:C, @LABEL (docs/cluster.md). Default: all cores of a node, or one GPU.")] = None,
    allow_mixed_hardware: Annotated[bool, typer.Option("--allow-mixed-hardware", help="Let one campaign's trials run on different kinds of hardware.")] = False,
    max_retries: Annotated[int, typer.Option(help="Times a trial whose process or node died is retried (it resumes from its checkpoint).")] = 3,
    budget_factor: Annotated[float | None, typer.Option(help="Multiply each workload's time budget (default: 1.0 external, 1.5 self-tuning as in AlgoPerf v0.6).")] = None,
) -> None:
    """Run a submission on workloads under the benchmark's timing rules."""
    from algoperf import suites
    from algoperf.campaign import cluster
    from algoperf.hardware import HardwareSpecError

    # Ray starts before anything imports JAX (the registry and submissions do).
    num_trials = len(dict.fromkeys([*workload, *suites.SUITES.get(suite or "", [])])) * studies * (1 if ruleset == "self" else trials)
    try:
        use_ray = cluster.choose_executor(executor, address=address, hardware=hardware, num_trials=num_trials) == "ray"
        if use_ray and cluster.connect(address):
            import ray

            ctx.call_on_close(ray.shutdown)  # also when the command fails; this process may go on (tests)
    except (cluster.SchedulerError, HardwareSpecError) as e:
        raise fail(str(e)) from e
    from algoperf import registry
    from algoperf.campaign.plan import MixedHardwareError, plan_trials, run_local
    from algoperf.runner.observers import ConsoleObserver, combine_observers
    from algoperf.runner.trial_log import TRACEBACK_FILE
    from algoperf.spec import DataNotFoundError
    from algoperf.submission.batch_size import parse_overrides as parse_batch_size_overrides
    from algoperf.submission.loading import SubmissionError, load_submission

    names = _workloads_for(workload, suite)
    try:
        batch_sizes = parse_batch_size_overrides(batch_size)
        unknown = [n for n in batch_sizes if n not in names]
        if unknown:
            raise fail(f"--batch-size names {', '.join(unknown)}, which this run does not include ({', '.join(names)})")
        loaded = load_submission(submission, search_space_path=tuning_search_space, style=submission_style)
        configs = plan_trials(
            loaded, names, ruleset=ruleset, studies=studies, trials=trials, seed=seed,
            experiment_dir=experiment_dir, experiment_name=experiment_name,
            hyperparameters=_parse_hparams(hparams), max_steps=max_steps, data_dir=data_dir,
            workload_kwargs={"size": size} if size != 1.0 else None, budget_factor=budget_factor,
            batch_sizes=batch_sizes,
        )
    except (SubmissionError, ValueError) as e:
        raise fail(str(e)) from e

    def observer_for(config):
        info = registry.workload_info(config.workload)
        label = f"{loaded.name} on {config.workload}" + (f" study {config.study_index}" if config.study_index is not None else "") + f" trial {config.trial_index}"
        shown = ConsoleObserver(console, label, f"validation/{info['target_metric_name']}", info["validation_target_value"], info["max_allowed_runtime_sec"] * config.budget_factor)
        return combine_observers(shown, tracker.observer_for(config)) if tracker else shown

    tracker = _tracker(tracking, tracking_uri, configs, loaded.name, ctx if use_ray else None, address)

    def on_skip(config, done):
        console.print(f"{config.path}: already finished ({done['status']}); delete the folder to run it again")

    try:
        if use_ray:
            from algoperf.campaign.ray_executor import run_campaign

            outcomes = run_campaign(
                configs, hardware=hardware, allow_mixed_hardware=allow_mixed_hardware, max_retries=max_retries,
                observer_factory=tracker.observer_for if tracker else None, console=console,
            )
            results = [o.row() for o in outcomes]
        else:
            results = run_local(configs, loaded, observer_for, on_skip, allow_mixed_hardware=allow_mixed_hardware)
    except DataNotFoundError as e:
        raise fail(str(e)) from e
    except SubmissionError as e:
        raise fail(str(e)) from e
    except (cluster.SchedulerError, HardwareSpecError, MixedHardwareError) as e:
        raise fail(str(e)) from e
    rows = []
    for config, r in zip(configs, results, strict=True):
        row = r if isinstance(r, dict) else r.to_dict()
        rows.append({**row, "study": config.study_index, "trial": config.trial_index})
    if json_output:
        stdout.print_json(json.dumps(rows))
    else:
        stdout.print(_result_table(rows))
        console.print(f"Logs (AlgoPerf format): {Path(configs[0].experiment_dir) / configs[0].experiment_name}")
        if tracker:
            console.print(f"MLflow: experiment {tracker.experiment_name!r} in {tracker.store_uri or tracker.tracking_uri}; open it with `algoperf ui`", highlight=False)
    not_ok = ("failed", "error", "refused", "lost")  # error/refused/lost: Ray trials that did not run to their end
    failed = [row for row in rows if row["status"] in not_ok]
    for row in failed:
        reason = row.get("error_summary") or next(iter(str(row.get("error") or "").strip().splitlines()), "")
        where = f" (traceback: {Path(row['trial_dir']) / TRACEBACK_FILE})" if row.get("error_summary") else ""
        console.print(f"[red]{row['workload']} trial {row['trial']} {row['status']}:[/] {reason}{where}", highlight=False)
    if failed:
        console.print(f"[red]{len(failed)} of {len(rows)} trials did not run to their end[/] (each is recorded in its trial folder; rerunning the command runs them again)", highlight=False)
        raise typer.Exit(1)


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


def _tracker(enabled: bool, uri: str | None, configs: list, submission_name: str, workers_ctx=None, address=None):
    """The MLflow TrackerFactory of a run (None with --no-tracking).

    With Ray workers (``workers_ctx`` given) a SQLite store is served by a local mlflow
    server for the command's lifetime: many processes must not write one SQLite file.
    """
    if not enabled:
        return None
    from algoperf.tracking import (
        TrackerFactory,
        TrackingError,
        ensure_server_for_workers,
        resolve_tracking_uri,
        sqlite_path,
    )
    from algoperf.tracking.observer import warn

    tracker = None
    try:
        store_uri = resolve_tracking_uri(uri)
        worker_uri = store_uri
        if workers_ctx is not None and sqlite_path(store_uri) is not None:
            console.print(f"Starting an MLflow server over {store_uri} for the Ray workers ...", highlight=False)
            remote = {"host": "0.0.0.0", "advertise_host": _node_ip()} if address else {}
            worker_uri, server = ensure_server_for_workers(store_uri, **remote)
            workers_ctx.call_on_close(server.stop)
        tracker = TrackerFactory(worker_uri, configs[0].experiment_name, store_uri=store_uri)
        tracker.prepare(configs, submission_name)
    except TrackingError as e:
        raise fail(str(e)) from e
    except Exception as e:  # noqa: BLE001 - store down: trials still run, their observers retry
        if tracker is None:
            raise fail(f"MLflow tracking could not be set up ({type(e).__name__}: {e}); pass --no-tracking to run without it") from e
        warn(f"MLflow store {tracker.tracking_uri} not reachable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
             "the trials run anyway and retry logging")
    return tracker


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


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()


def _register_optional_commands() -> None:
    from algoperf.leaderboards.command import leaderboard_app
    from algoperf.tracking.commands import mlflow_app, ui

    app.command("ui")(ui)
    app.add_typer(mlflow_app, name="mlflow")
    app.add_typer(leaderboard_app, name="leaderboard")
    app.add_typer(__import__("algoperf.search.command", fromlist=["search_app"]).search_app, name="search")
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
