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
    path = Path(value)
    try:
        data = json.loads(path.read_text()) if path.exists() else json.loads(value)
    except json.JSONDecodeError as e:
        raise fail(f"--hparams {value!r}: neither a JSON file nor inline JSON ({e.msg})") from e
    if not isinstance(data, dict):
        raise fail(f"--hparams {value!r}: expected a JSON object of name -> value")
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


class ConsoleObserver:
    """Prints one line per eval of a trial."""

    def __init__(self, label: str, target_key: str, target: float, budget: float):
        self.label, self.target_key, self.target, self.budget = label, target_key, target, budget

    def on_start(self, config, meta) -> None:
        console.print(f"[bold]{self.label}[/] on {meta['hardware_label']}, batch size {meta['batch_size']}, budget {self.budget:.0f} s")

    def on_eval(self, global_step: int, row: dict[str, float]) -> None:
        value = row.get(self.target_key, float("nan"))
        console.print(
            f"  step {global_step:>7}  submission time {row['accumulated_submission_time']:8.2f} / {self.budget:.0f} s  "
            f"{self.target_key} {value:.4f} (target {self.target})",
            highlight=False,
        )

    def on_submission_metrics(self, rows) -> None:
        pass

    def on_end(self, result) -> None:
        pass


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
    submission: Annotated[str, typer.Option("--submission", "-s", help="A built-in submission name, a folder holding submission.py, or a module path.")],
    workload: Annotated[list[str], typer.Option("--workload", "-w", help="Workload name (repeatable).")] = [],  # noqa: B006
    suite: Annotated[str | None, typer.Option(help="Run every workload of a suite (e.g. 'small').")] = None,
    ruleset: Annotated[str, typer.Option(help="external (tuned hyperparameters) or self (no hyperparameters, budget x1.5).")] = "external",
    studies: Annotated[int, typer.Option(help="Independent studies (AlgoPerf: 3 external, 5 self-tuning).")] = 1,
    trials: Annotated[int, typer.Option(help="Trials per study in external tuning (AlgoPerf: 5).")] = 1,
    hparams: Annotated[str | None, typer.Option(help="Hyperparameters for every trial: a JSON file or inline JSON object.")] = None,
    experiment_dir: Annotated[Path, typer.Option(help="Where experiments are written.")] = Path("experiments"),
    experiment_name: Annotated[str | None, typer.Option(help="Folder name of this campaign (default <submission>_<ruleset>).")] = None,
    seed: Annotated[int, typer.Option(help="Campaign seed: the same seed gives the same trials.")] = 0,
    max_steps: Annotated[int | None, typer.Option(help="Stop each trial after this many steps (with a final eval).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="Data folder for workloads that read files (e.g. mnist).")] = None,
    size: Annotated[float, typer.Option(help="Model size multiplier of small-suite workloads (1.0 = as calibrated).")] = 1.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the results as JSON on stdout.")] = False,
) -> None:
    """Run a submission on workloads under the benchmark's timing rules."""
    from algoperf import registry
    from algoperf.campaign import plan_trials, run_local
    from algoperf.spec import DataNotFoundError
    from algoperf.submission import SubmissionError, load_submission

    names = _workloads_for(workload, suite)
    try:
        loaded = load_submission(submission)
        configs = plan_trials(
            loaded, names, ruleset=ruleset, studies=studies, trials=trials, seed=seed,
            experiment_dir=experiment_dir, experiment_name=experiment_name,
            hyperparameters=_parse_hparams(hparams), max_steps=max_steps, data_dir=data_dir,
            workload_kwargs={"size": size} if size != 1.0 else None,
        )
    except (SubmissionError, ValueError) as e:
        raise fail(str(e)) from e

    def observer_for(config):
        info = registry.workload_info(config.workload)
        label = f"{loaded.name} on {config.workload}" + (f" study {config.study_index}" if config.study_index is not None else "") + f" trial {config.trial_index}"
        return ConsoleObserver(label, f"validation/{info['target_metric_name']}", info["validation_target_value"], info["max_allowed_runtime_sec"] * config.budget_factor)

    def on_skip(config, done):
        console.print(f"{config.path}: already finished ({done['status']}); delete the folder to run it again")

    try:
        results = run_local(configs, loaded, observer_for, on_skip)
    except DataNotFoundError as e:
        raise fail(str(e)) from e
    except SubmissionError as e:
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
    for row in rows:
        if row["status"] == "failed":
            console.print(f"[red]{row['workload']} trial {row['trial']} failed:[/] {row['error']}", highlight=False)
    if any(row["status"] == "failed" for row in rows):
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
    table = Table(title="Workloads")
    for column in ("name", "metric", "validation target", "test target", "budget (s)", "eval period (s)", "step hint", "data", "description"):
        table.add_column(column)
    for i in infos:
        table.add_row(
            i["name"], i["target_metric_name"], str(i["validation_target_value"]), str(i["test_target_value"]),
            f"{i['max_allowed_runtime_sec']:g}", f"{i['eval_period_time_sec']:g}", str(i["step_hint"]),
            i["data_source"], i["description"],
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
    dataset: Annotated[str, typer.Argument(help="Dataset to prepare: mnist.")],
    data_dir: Annotated[Path, typer.Option(help="Folder to write the dataset into.")] = Path("data"),
) -> None:
    """Download a dataset's official files into --data-dir (needs a network)."""
    if dataset != "mnist":
        raise fail(f"unknown dataset {dataset!r}; preparable: mnist")
    from algoperf.workloads.mnist import input_pipeline

    try:
        path = input_pipeline.download(data_dir)
    except OSError as e:
        raise fail(f"downloading MNIST failed ({e}); copy the four IDX files into {data_dir / 'MNIST'} by hand") from e
    console.print(f"MNIST is ready in {path}")


def _register_optional_commands() -> None:
    try:
        from algoperf.scoring.command import score
    except ImportError:
        return
    app.command("score")(score)


_register_optional_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
