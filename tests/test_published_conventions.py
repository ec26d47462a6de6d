"""Submissions written for AlgoPerf, not for us, run the small suite as they are.

Covers the batch-size rule for workloads AlgoPerf does not have, campaigns that go on past
a failed workload, AlgoPerf's command-line conventions (--tuning-search-space, imports
from the submission's project root) and the one-line failure report.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path

import pytest

from algoperf import registry
from algoperf.runner.failure import describe_failure
from algoperf.submission.batch_size import BatchSizeError, choose_batch_size, parse_overrides
from tests.cli import run_algoperf

pytestmark = pytest.mark.compat

REPO = Path(__file__).resolve().parents[1]
ALGOPERF_STYLE = REPO / "tests" / "fixtures" / "algoperf_style"


def algoperf_names_only(name: str) -> int:
    """get_batch_size of a published submission: AlgoPerf's names, half its baselines' ctr batch."""
    sizes = {"criteo1tb": 131_072, "ogbg": 512, "wmt": 128, "mnist": 16, "fastmri": 32}
    if name not in sizes:
        raise ValueError(f"Unsupported workload name: {name}.")
    return sizes[name]


def flat(text: str) -> str:
    """Terminal output with rich's line wrapping undone."""
    return " ".join(text.split())


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 400) -> subprocess.CompletedProcess:
    return run_algoperf("run", *args, cwd=cwd, timeout=timeout)


# --- the batch-size rule -------------------------------------------------------------------
def test_reference_answer_is_scaled_by_the_written_rule():
    ctr = registry.get_workload("ctr")
    choice = choose_batch_size(algoperf_names_only, ctr, "ctr")
    # 256 (ctr's default) x 131,072 / 262,144 (AlgoPerf's baseline batch on criteo1tb)
    assert choice.size == 128
    assert "criteo1tb" in choice.source and "256/262,144" in choice.source
    molgraph = registry.get_workload("molgraph")
    assert choose_batch_size(algoperf_names_only, molgraph, "molgraph").size == 64  # 64 x 512 / 512


def test_order_override_then_own_name_then_base_then_reference_then_default():
    variant = registry.get_workload("ctr_layernorm")
    knows_ctr = lambda name: {"ctr": 100}[name]  # noqa: E731 - KeyError for the rest
    assert choose_batch_size(knows_ctr, variant, "ctr_layernorm", {"ctr_layernorm": 7}).size == 7
    assert choose_batch_size(lambda n: {"ctr_layernorm": 9, "ctr": 100}[n], variant, "ctr_layernorm").size == 9
    base = choose_batch_size(knows_ctr, variant, "ctr_layernorm")
    assert (base.size, base.source) == (100, "get_batch_size('ctr')")
    nothing = choose_batch_size(lambda n: None, variant, "ctr_layernorm")
    assert nothing.size == 256 and "default" in nothing.source and "'criteo1tb'" in nothing.source


def test_a_workload_without_default_or_answer_is_a_clear_error():
    with pytest.raises(BatchSizeError, match=r"does not know workload 'cifar'.*--batch-size cifar=N"):
        choose_batch_size(algoperf_names_only, registry.get_workload("cifar"), "cifar", where="sub.py")
    with pytest.raises(BatchSizeError, match="returned 0"):
        choose_batch_size(lambda n: 0, registry.get_workload("ctr"), "ctr")


def test_overrides_parse_and_refuse_nonsense():
    assert parse_overrides(["ctr=512", " mnist1d = 64"]) == {"ctr": 512, "mnist1d": 64}
    for bad in ("ctr", "ctr=0", "=5", "ctr=x"):
        with pytest.raises(BatchSizeError, match="WORKLOAD=N"):
            parse_overrides([bad])


# --- a published-style submission runs mnist1d, ctr and molgraph ------------------------------
def test_algoperf_v06_submission_runs_ctr_and_molgraph_unmodified(tmp_path):
    proc = run_cli("--submission", str(ALGOPERF_STYLE), "--workload", "mnist1d", "--workload", "ctr",
                   "--workload", "molgraph", "--max-steps", "3", "--executor", "local", "--no-tracking",
                   "--experiment-dir", str(tmp_path), "--batch-size", "molgraph=32", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert [r["workload"] for r in rows] == ["mnist1d", "ctr", "molgraph"]
    assert all(r["status"] != "failed" and r["global_step"] == 3 for r in rows)
    meta = {r["workload"]: json.loads((Path(r["trial_dir"]) / "meta_data_0.json").read_text()) for r in rows}
    # The fixture knows mnist (16, scaled to mnist1d's 128) and not criteo1tb (ctr's default).
    assert meta["mnist1d"]["batch_size"] == 128 and "get_batch_size('mnist') = 16" in meta["mnist1d"]["batch_size_source"]
    assert meta["ctr"]["batch_size"] == 256 and "ctr's default" in meta["ctr"]["batch_size_source"]
    assert meta["molgraph"]["batch_size"] == 32 and meta["molgraph"]["batch_size_source"] == "--batch-size molgraph=32"
    assert "batch size 256 (ctr's default (get_batch_size knows none of 'ctr', 'criteo1tb'))" in flat(proc.stderr)


# --- a campaign never dies for one workload ----------------------------------------------------
RAISES_ON_CTR = """
import optax
from algoperf import spec

def get_batch_size(workload_name):
    return 32

def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return optax.sgd(0.01).init(model_params)

def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters,
                  batch, loss_type, optimizer_state, eval_results, global_step, rng):
    if workload.name == "ctr" and global_step == 1:
        raise ValueError("boom on ctr")
    return optimizer_state, current_param_container, model_state

def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state,
                   hyperparameters, global_step, rng):
    return next(input_queue)
"""


def test_failed_workloads_are_recorded_and_the_campaign_goes_on(write_submission, tmp_path):
    folder = write_submission(RAISES_ON_CTR, name="flaky", search_space=[{"learning_rate": 0.01}])
    missing_data = tmp_path / "no_data_here"
    proc = run_cli("--submission", str(folder), "--workload", "ctr", "--workload", "mnist", "--workload", "mnist1d",
                   "--max-steps", "3", "--executor", "local", "--no-tracking", "--data-dir", str(missing_data),
                   "--experiment-dir", str(tmp_path / "exp"))
    assert proc.returncode == 1, proc.stderr[-3000:]
    campaign = tmp_path / "exp" / "flaky_external"
    results = {w: json.loads((campaign / f"{w}_jax" / "trial_1" / "trial_result.json").read_text())
               for w in ("ctr", "mnist", "mnist1d")}
    assert results["mnist1d"]["status"] != "failed" and results["mnist1d"]["global_step"] == 3
    assert results["ctr"]["status"] == "failed" and results["ctr"]["global_step"] == 1
    assert results["mnist"]["status"] == "failed" and results["mnist"]["stop_reason"] == "setup"
    # One line each on the terminal: the exception, the submission's file and line.
    report = flat(proc.stderr)
    line = next(x for x in proc.stderr.splitlines() if "on ctr trial 1 failed" in x)
    assert f"ValueError: boom on ctr (at {folder / 'submission.py'}:" in line
    assert "DataNotFoundError" in report and "2 of 3 trials" in report
    assert "Traceback" not in proc.stderr + proc.stdout
    # The full traceback is in the trial folder.
    assert "Traceback (most recent call last)" in (campaign / "ctr_jax" / "trial_1" / "traceback.txt").read_text()
    # Rerunning runs the failed trials again and keeps the finished one.
    again = run_cli("--submission", str(folder), "--workload", "ctr", "--workload", "mnist1d", "--max-steps", "3",
                    "--executor", "local", "--no-tracking", "--experiment-dir", str(tmp_path / "exp"))
    assert again.returncode == 1 and "already finished" in flat(again.stderr)
    assert len(list((campaign / "ctr_jax" / ".failed").iterdir())) == 1


def test_failure_causes_are_recognised():
    def raised(exc: Exception) -> Exception:
        try:
            raise exc
        except Exception as e:  # noqa: BLE001
            return e

    pmap = describe_failure(raised(NameError("unbound axis name: batch")))
    assert "pmap-style submission" in pmap.summary() and "--submission-style pmap" in pmap.summary()
    old_jax = describe_failure(raised(AttributeError("module 'jax' has no attribute 'tree_map'")))
    assert "older JAX" in old_jax.summary() and "constraints/algoperf-v0.6.txt" in old_jax.summary()
    squeeze = describe_failure(raised(ValueError("cannot select an axis to squeeze out which has size not equal to one")))
    assert "pmap-style submission" in squeeze.summary()
    plain = describe_failure(raised(ValueError("nothing we know")))
    assert plain.cause is None and plain.summary().startswith("ValueError: nothing we know (at ")


# --- AlgoPerf's command-line conventions --------------------------------------------------------
def test_hparams_given_a_search_space_is_a_clear_error(tmp_path):
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"learning_rate": {"min": 1e-4, "max": 1e-2, "scaling": "log"}}))
    proc = run_cli("--submission", "nadamw", "--workload", "mnist1d", "--hparams", str(space), "--no-tracking",
                   "--experiment-dir", str(tmp_path))
    assert proc.returncode == 2
    assert "is a search space" in flat(proc.stderr) and "--tuning-search-space" in flat(proc.stderr)
    assert "Traceback" not in proc.stderr


PACKAGE_STYLE = """
from algorithms.mine.optimizer import make_optimizer  # imported from the project root, as in AlgoPerf

def get_batch_size(workload_name):
    raise ValueError(workload_name)  # knows no workload: the default batch sizes apply

def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng):
    return make_optimizer(hyperparameters.learning_rate).init(model_params)

def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters,
                  batch, loss_type, optimizer_state, eval_results, global_step, rng):
    from algorithms.mine import optimizer  # resolved at run time too
    assert optimizer.make_optimizer is make_optimizer
    return optimizer_state, current_param_container, model_state

def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state,
                   hyperparameters, global_step, rng):
    return next(input_queue)
"""


def test_package_style_submission_with_a_search_space_elsewhere(tmp_path):
    project = tmp_path / "project"
    sub = project / "algorithms" / "mine"
    sub.mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'mine'\n")
    (sub / "optimizer.py").write_text("import optax\n\ndef make_optimizer(lr):\n    return optax.sgd(lr)\n")
    (sub / "submission.py").write_text(textwrap.dedent(PACKAGE_STYLE))
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "space.json").write_text(json.dumps([{"learning_rate": 0.05}, {"learning_rate": 0.1}]))
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    proc = run_cli("--submission", str(sub / "submission.py"), "--tuning-search-space", str(spaces / "space.json"),
                   "--trials", "2", "--workload", "mnist1d", "--workload", "ctr",
                   "--max-steps", "2", "--executor", "local", "--no-tracking", "--experiment-dir", str(tmp_path / "exp"),
                   "--json", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout)
    assert len(rows) == 4 and all(r["global_step"] == 2 for r in rows)
    hparams = json.loads((tmp_path / "exp" / "mine_external" / "ctr_jax" / "trial_2" / "hparams.json").read_text())
    assert hparams == {"learning_rate": 0.1}
    assert "ctr's default" in flat(proc.stderr)


def test_missing_tuning_search_space_file_is_named(tmp_path):
    proc = run_cli("--submission", "nadamw", "--workload", "mnist1d", "--tuning-search-space",
                   str(tmp_path / "nope.json"), "--no-tracking", "--experiment-dir", str(tmp_path))
    assert proc.returncode == 2 and "nope.json: no such file" in flat(proc.stderr)


def test_a_failed_trial_is_in_mlflow_with_its_traceback(tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_cli("--submission", "nadamw", "--workload", "mnist", "--data-dir", str(tmp_path / "missing"),
                   "--tracking-uri", uri, "--experiment-dir", str(tmp_path / "exp"))
    assert proc.returncode == 1 and "DataNotFoundError" in proc.stderr and "Traceback" not in proc.stderr
    client = MlflowClient(uri)
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])
            if r.data.tags.get("algoperf.workload") == "mnist"]
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FAILED" and run.data.tags["algoperf.status"] == "failed"
    assert "DataNotFoundError" in run.data.tags["algoperf.error"]
    local = client.download_artifacts(run.info.run_id, "traceback.txt", str(tmp_path))
    assert "Traceback (most recent call last)" in Path(local).read_text()


def test_development_api_names_published_submissions_use(tmp_path):
    """get_replicate_sharding(mesh) / get_batch_sharding(mesh), and submission names."""
    import jax
    import numpy as np

    from algoperf import jax_sharding_utils
    from algoperf.submission.loading import submission_name

    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("batch",))
    assert jax_sharding_utils.get_replicate_sharding(mesh).spec == jax.sharding.PartitionSpec()
    assert jax_sharding_utils.get_batch_sharding(mesh).spec == jax.sharding.PartitionSpec("batch")
    assert jax_sharding_utils.get_batch_dim_sharding() == jax_sharding_utils.get_batch_sharding()
    folder = tmp_path / "adamw" / "jax"
    folder.mkdir(parents=True)
    assert submission_name(folder / "submission.py") == "adamw_jax"
    assert submission_name(tmp_path / "adamw" / "submission.py") == "adamw"


# Two workloads in the fast tier (one model compile each), the other five in the slow tier.
@pytest.mark.parametrize("name", ["mnist1d", "ctr", *(pytest.param(n, marks=pytest.mark.slow)
                                                      for n in ("molgraph", "speech", "charlm", "translate", "mri"))])
def test_model_fn_takes_use_running_average_bn(name):
    """model_fn's use_running_average_bn keyword (the development API) gives the eval output."""
    import jax
    import numpy as np

    from algoperf import spec

    workload = registry.get_workload(name)
    params, state = workload.init_model_fn(jax.random.PRNGKey(0))
    batch = next(workload._build_input_queue(jax.random.PRNGKey(0), "validation", None, 4))
    plain, _ = workload.model_fn(params, batch, state, spec.ForwardPassMode.EVAL, None, False)
    averaged, _ = workload.model_fn(params, batch, state, spec.ForwardPassMode.EVAL, None, False,
                                    use_running_average_bn=True)
    first = lambda out: out[0] if isinstance(out, tuple) else out  # noqa: E731 - speech gives (logits, paddings)
    np.testing.assert_allclose(np.asarray(first(plain)), np.asarray(first(averaged)), err_msg=name)
