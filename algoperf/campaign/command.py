"""``algoperf run``: one campaign of one or more submissions on workloads.

Registered by :mod:`algoperf.cli`. A campaign is one MLflow experiment: every submission
named with ``-s`` (repeatable) records its studies and trials there, so the dashboard and
``algoperf score --experiment NAME`` compare them on one page. ``--experiment NAME`` names
that experiment (and lets later runs join it); by default it is the campaign's folder name.

Folders: one submission keeps its ``<experiment-dir>/<experiment-name>/`` (default
``<submission>_<ruleset>``); several submissions write AlgoPerf's tree
``<experiment-dir>/<campaign>/<submission>/[study_<k>/]<workload>_jax/trial_<n>``.

Heavy imports (JAX, Ray, MLflow) happen inside, after Ray has started.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
stdout = Console()

_NOT_OK = ("failed", "error", "refused", "lost")  # error/refused/lost: Ray trials that did not run to their end


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


def _result_table(results: list[dict[str, Any]], several: bool) -> Table:
    table = Table(title="Trials")
    columns = (["submission"] if several else []) + ["workload", "study", "trial", "status", "time to result (s)", "steps", "submission time (s)", "best validation"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("submission", "workload", "status") else "right")
    for r in results:
        ttr = r.get("time_to_result")
        best = r.get("best_validation")
        table.add_row(
            *([r["submission"]] if several else []),
            r["workload"], str(r.get("study", "") if r.get("study") is not None else "-"), str(r.get("trial", 1)),
            {"reached_target": "[green]reached target[/]", "missed": "[yellow]missed[/]",
             "diverged": "[red]diverged[/]", "failed": "[red]failed[/]"}.get(r["status"], r["status"]),
            f"{ttr:.2f}" if ttr is not None else "-",
            str(r["global_step"]), f"{r['accumulated_submission_time']:.2f}",
            f"{best:.4f}" if best is not None else "-",
        )
    return table


def _campaign_names(submissions: list[str], ruleset: str, experiment_name: str | None, experiment: str | None) -> tuple[str | None, str | None]:
    """(the campaign's folder name, or None for the one-submission default; the MLflow experiment)."""
    if len(submissions) == 1:
        return experiment_name, experiment
    if len(set(submissions)) != len(submissions):
        raise fail(f"--submission names one submission twice ({', '.join(submissions)}): give each once")
    folder = experiment_name or experiment or "_vs_".join(Path(s).name for s in submissions) + f"_{ruleset}"
    return folder, experiment or folder


def _plan(submissions: list[str], names: list[str], folder: str | None, opts: dict[str, Any]) -> list[tuple[Any, list]]:
    """[(loaded submission, its TrialConfigs)] of every submission of the campaign."""
    from algoperf.campaign.plan import plan_trials
    from algoperf.submission.batch_size import parse_overrides
    from algoperf.submission.loading import SubmissionError, load_submission

    try:
        batch_sizes = parse_overrides(opts.pop("batch_size"))
        unknown = [n for n in batch_sizes if n not in names]
        if unknown:
            raise fail(f"--batch-size names {', '.join(unknown)}, which this run does not include ({', '.join(names)})")
        hparams = _parse_hparams(opts.pop("hparams"))
        size = opts.pop("size")
        search_space, style = opts.pop("tuning_search_space"), opts.pop("submission_style")
        experiment_dir = Path(opts.pop("experiment_dir"))
        planned = []
        for submission in submissions:
            loaded = load_submission(submission, search_space_path=search_space, style=style)
            several = len(submissions) > 1
            configs = plan_trials(
                loaded, names, experiment_dir=experiment_dir / folder if several else experiment_dir,
                experiment_name=loaded.name if several else folder, hyperparameters=hparams,
                workload_kwargs={"size": size} if size != 1.0 else None, batch_sizes=batch_sizes, **opts,
            )
            planned.append((loaded, configs))
        return planned
    except (SubmissionError, ValueError) as e:
        raise fail(str(e)) from e


def _execute(planned: list[tuple[Any, list]], tracker: Any, use_ray: bool, ray_opts: dict[str, Any]) -> list[dict[str, Any]]:
    """Run every trial (Ray: all submissions' trials in one schedule); one row per trial."""
    from algoperf import registry
    from algoperf.campaign import cluster
    from algoperf.campaign.plan import MixedHardwareError, run_local
    from algoperf.hardware import HardwareSpecError
    from algoperf.runner.observers import ConsoleObserver, combine_observers
    from algoperf.spec import DataNotFoundError
    from algoperf.submission.loading import SubmissionError

    def on_skip(config, done):
        console.print(f"{config.path}: already finished ({done['status']}); delete the folder to run it again")

    rows = []
    try:
        if use_ray:
            from algoperf.campaign.ray_executor import run_campaign

            configs = [c for _, cs in planned for c in cs]
            outcomes = run_campaign(configs, observer_factory=tracker.observer_for if tracker else None, console=console, **ray_opts)
            results = [(c, o.row()) for c, o in zip(configs, outcomes, strict=True)]
        else:
            results = []
            for loaded, configs in planned:
                def observer_for(config, name=loaded.name):
                    info = registry.workload_info(config.workload)
                    label = f"{name} on {config.workload}" + (f" study {config.study_index}" if config.study_index is not None else "") + f" trial {config.trial_index}"
                    shown = ConsoleObserver(console, label, f"validation/{info['target_metric_name']}", info["validation_target_value"], info["max_allowed_runtime_sec"] * config.budget_factor)
                    return combine_observers(shown, tracker.observer_for(config)) if tracker else shown

                done = run_local(configs, loaded, observer_for, on_skip, allow_mixed_hardware=ray_opts["allow_mixed_hardware"])
                results += list(zip(configs, done, strict=True))
    except (DataNotFoundError, SubmissionError, cluster.SchedulerError, HardwareSpecError, MixedHardwareError) as e:
        raise fail(str(e)) from e
    names = {id(c): loaded.name for loaded, cs in planned for c in cs}
    for config, r in results:
        row = r if isinstance(r, dict) else r.to_dict()
        rows.append({"submission": names[id(config)], **row, "study": config.study_index, "trial": config.trial_index})
    return rows


def _report(rows: list[dict[str, Any]], planned: list[tuple[Any, list]], tracker: Any, json_output: bool) -> None:
    from algoperf.runner.trial_log import TRACEBACK_FILE

    first = planned[0][1][0]
    if json_output:
        stdout.print_json(json.dumps(rows))
    else:
        stdout.print(_result_table(rows, several=len(planned) > 1))
        folder = Path(first.experiment_dir) if len(planned) > 1 else Path(first.experiment_dir) / first.experiment_name
        console.print(f"Logs (AlgoPerf format): {folder}")
        if tracker:
            score = f"algoperf score --experiment {tracker.experiment_name}"
            console.print(f"MLflow: experiment {tracker.experiment_name!r} in {tracker.store_uri or tracker.tracking_uri}; "
                          f"score it with `{score}`, open it with `algoperf ui`", highlight=False)
    failed = [row for row in rows if row["status"] in _NOT_OK]
    for row in failed:
        reason = row.get("error_summary") or next(iter(str(row.get("error") or "").strip().splitlines()), "")
        where = f" (traceback: {Path(row['trial_dir']) / TRACEBACK_FILE})" if row.get("error_summary") else ""
        console.print(f"[red]{row['submission']} on {row['workload']} trial {row['trial']} {row['status']}:[/] {reason}{where}", highlight=False)
    if failed:
        console.print(f"[red]{len(failed)} of {len(rows)} trials did not run to their end[/] (each is recorded in its trial folder; rerunning the command runs them again)", highlight=False)
        raise typer.Exit(1)


def run(
    ctx: typer.Context,
    submission: Annotated[list[str], typer.Option("--submission", "-s", help="A built-in submission name, a folder holding submission.py, or a module path. Repeatable: several submissions form one campaign, compared in one MLflow experiment.")],
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
    experiment_name: Annotated[str | None, typer.Option(help="Folder name of this campaign (default <submission>_<ruleset>; several submissions: <a>_vs_<b>_<ruleset>, or --experiment).")] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="MLflow experiment of the campaign (default: its folder name). Runs naming the same experiment are compared together by `algoperf score --experiment NAME`.")] = None,
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
    """Run one or more submissions on workloads under the benchmark's timing rules."""
    from algoperf import suites
    from algoperf.campaign import cluster
    from algoperf.hardware import HardwareSpecError

    folder, mlflow_experiment = _campaign_names(submission, ruleset, experiment_name, experiment)
    # Ray starts before anything imports JAX (the registry and submissions do).
    num_trials = len(submission) * len(dict.fromkeys([*workload, *suites.SUITES.get(suite or "", [])])) * studies * (1 if ruleset == "self" else trials)
    try:
        use_ray = cluster.choose_executor(executor, address=address, hardware=hardware, num_trials=num_trials) == "ray"
        if use_ray and cluster.connect(address):
            import ray

            ctx.call_on_close(ray.shutdown)  # also when the command fails; this process may go on (tests)
    except (cluster.SchedulerError, HardwareSpecError) as e:
        raise fail(str(e)) from e
    names = _workloads_for(workload, suite)
    planned = _plan(submission, names, folder, dict(
        ruleset=ruleset, studies=studies, trials=trials, seed=seed, max_steps=max_steps, data_dir=data_dir,
        budget_factor=budget_factor, batch_size=batch_size, hparams=hparams, size=size,
        tuning_search_space=tuning_search_space, submission_style=submission_style, experiment_dir=experiment_dir,
    ))
    tracker = _tracker(tracking, tracking_uri, planned, mlflow_experiment, ctx if use_ray else None, address)
    ray_opts = dict(hardware=hardware, allow_mixed_hardware=allow_mixed_hardware, max_retries=max_retries)
    rows = _execute(planned, tracker, use_ray, ray_opts)
    _report(rows, planned, tracker, json_output)


def _tracker(enabled: bool, uri: str | None, planned: list[tuple[Any, list]], experiment: str | None, workers_ctx=None, address=None):
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
        tracker = TrackerFactory(worker_uri, experiment or planned[0][1][0].experiment_name, store_uri=store_uri)
        for loaded, configs in planned:
            tracker.prepare(configs, loaded.name)
    except TrackingError as e:
        raise fail(str(e)) from e
    except Exception as e:  # noqa: BLE001 - store down: trials still run, their observers retry
        if tracker is None:
            raise fail(f"MLflow tracking could not be set up ({type(e).__name__}: {e}); pass --no-tracking to run without it") from e
        warn(f"MLflow store {tracker.tracking_uri} not reachable ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
             "the trials run anyway and retry logging")
    return tracker


def _node_ip() -> str:
    import ray

    return ray.util.get_node_ip_address()
