"""v0.5-era (pmap-style) submissions run unmodified (algoperf.compat).

Our own submissions written in v0.5's conventions (tests/fixtures/v05_pmap: the
`algorithmic_efficiency` package, replicate + pmap + psum, jax.tree_map, a helper imported
by a competition-repository path; tests/fixtures/pmap_algoperf: imports `algoperf` but is
pmap-style) train mnist1d, ctr and molgraph through the unchanged v0.6 runner; the real
`jax` module is never changed; the published v0.5 JAX entries (read from ../shared) load.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import algoperf.spec
from algoperf import jax_sharding_utils
from algoperf.compat.imports import ModuleView, SubmissionImporter
from algoperf.compat.pmap_adapter import PmapAdapter
from algoperf.compat.style import choose_style, detect_style
from algoperf.runner.trial import TrialConfig, run_trial
from algoperf.runner.trial_log import read_evals
from algoperf.submission import SubmissionError, load_submission
from tests.cli import run_algoperf

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"
V05_PMAP = FIXTURES / "v05_pmap"
PMAP_ALGOPERF = FIXTURES / "pmap_algoperf"
PUBLISHED_V05 = REPO.parent / "shared" / "data" / "algoperf_v05" / "submissions"
pytestmark = pytest.mark.compat  # also run under AlgoPerf's pinned JAX (make test-compat)

PUBLISHED_JAX = ["external_tuning/amos", "external_tuning/baseline", "external_tuning/caspr_adaptive",
                 "external_tuning/generalized_adam", "external_tuning/nadamp", "self_tuning/baseline"]


def run_cli(*args: str, timeout: int = 400) -> subprocess.CompletedProcess:
    return run_algoperf("run", *args, cwd=REPO, timeout=timeout, env={"JAX_PLATFORMS": "cpu"})


# --- imports: v0.5 names and removed JAX names, for the submission's modules only ------------
def _jax_surface() -> dict:
    import jax.experimental.pjit as pjit

    return {"jax": dict(vars(jax)), "jax.numpy": dict(vars(jnp)), "pjit": dict(vars(pjit))}


def test_v05_names_resolve_inside_the_submission_and_real_jax_is_unchanged():
    before = _jax_surface()
    sub = load_submission(V05_PMAP)
    module = sub.module
    assert module.spec is algoperf.spec  # the same enums: ForwardPassMode.TRAIN means the same to our workloads
    assert module.jax.tree_map(lambda x: x + 1, {"a": 1}) == {"a": 2}
    assert module.jax.numpy.clip(jnp.arange(5), a_min=1, a_max=3).tolist() == [1, 1, 2, 3, 3]
    helper = sys.modules[module.clip_elementwise.__module__]
    assert Path(helper.__file__) == V05_PMAP / "pmap_helpers.py"
    # Nothing of this leaked into the process: the real modules are as they were.
    assert sys.modules["jax"] is jax and sys.modules["jax.numpy"] is jnp
    after = _jax_surface()
    for name in before:
        assert all(after[name][k] is before[name][k] for k in before[name] if not k.startswith("__")), name
        added = {k: v for k, v in after[name].items() if k not in before[name]}
        # Only submodules that imports loaded (jax.extend, ...), never a compatibility name.
        assert all(isinstance(v, types.ModuleType) for v in added.values()), (name, sorted(added))
    assert "algorithmic_efficiency" not in sys.modules
    if not hasattr(jax, "tree_map"):  # removed in JAX 0.6: only the submission's view has it
        assert isinstance(module.jax, ModuleView)
    if "a_min" not in inspect.signature(jnp.clip).parameters:
        with pytest.raises(TypeError):
            jnp.clip(jnp.arange(3), a_min=1)


def test_a_v05_module_that_is_not_emulated_is_refused_by_name(write_submission):
    folder = write_submission("""
        from algorithmic_efficiency import spec
        from algorithmic_efficiency import pytorch_utils
    """)
    with pytest.raises(SubmissionError, match=r"algorithmic_efficiency.pytorch_utils.*emulates only.*spec"):
        load_submission(folder)


def test_competition_paths_resolve_by_the_longest_matching_suffix(tmp_path):
    folder = tmp_path / "repo" / "external_tuning" / "caspr"
    folder.mkdir(parents=True)
    (folder / "helper.py").write_text("VALUE = 'mine'\n")
    (tmp_path / "repo" / "external_tuning" / "helper.py").write_text("VALUE = 'the parent folder'\n")
    importer = SubmissionImporter(folder, "algoperf_test_competition_paths")
    path = "submissions.submissions_algorithms_v0_5.Team_7.external_tuning.caspr.helper"
    assert importer(path, fromlist=("VALUE",)).VALUE == "mine"
    assert importer("helper", fromlist=()).VALUE == "mine"  # a plain sibling import: the same module
    assert importer(path, fromlist=()).submissions_algorithms_v0_5.Team_7.external_tuning.caspr.helper.VALUE == "mine"
    assert importer(path, fromlist=("VALUE",)) is importer("helper", fromlist=())
    with pytest.raises(ModuleNotFoundError):
        importer("submissions.other_team.elsewhere.helper_that_does_not_exist", fromlist=("x",))


def test_two_submissions_with_a_helper_of_the_same_name_do_not_share_it(tmp_path):
    loaded = []
    for name in ("first", "second"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "utils.py").write_text(f"WHO = {name!r}\n")
        (folder / "submission.py").write_text(textwrap.dedent(f"""
            import utils
            from submissions.x.{name}.utils import WHO
            from algoperf import spec
            def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng): return None
            def update_params(workload, current_param_container, current_params_types, model_state, hyperparameters,
                              batch, loss_type, optimizer_state, eval_results, global_step, rng):
                return optimizer_state, current_param_container, model_state
            def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state,
                               hyperparameters, global_step, rng): return next(input_queue)
            def get_batch_size(workload_name): return 8
        """))
        loaded.append(load_submission(folder))
    assert [s.module.utils.WHO for s in loaded] == ["first", "second"]
    assert [s.module.WHO for s in loaded] == ["first", "second"]


# --- style detection ------------------------------------------------------------------------
def test_style_is_read_from_what_the_code_does_not_from_its_imports(write_submission):
    assert detect_style(V05_PMAP / "submission.py").style == "pmap"
    assert detect_style(V05_PMAP / "submission.py").axis_name == "batch"
    algoperf_pmap = detect_style(PMAP_ALGOPERF / "submission.py")  # imports algoperf, still pmap-style
    assert (algoperf_pmap.style, algoperf_pmap.axis_name) == ("pmap", "devices")
    assert detect_style(REPO / "submissions" / "nadamw" / "submission.py").style == "jit"
    mentions = write_submission('''
        """Unlike v0.5 submissions we do not call jax.pmap or jax_utils.replicate."""
        import jax
        # pmap would be wrong here
    ''')
    assert detect_style(mentions / "submission.py").style == "jit"
    assert choose_style(mentions / "submission.py", "pmap").style == "pmap"
    with pytest.raises(ValueError, match="--submission-style 'vmap'"):
        choose_style(mentions / "submission.py", "vmap")


# --- the adapter, on its own ----------------------------------------------------------------
class _Recorder:
    """A pmap-style submission's functions that record what they were given."""

    def __init__(self):
        self.seen: dict[str, object] = {}

    def init_optimizer_state(self, workload, model_params, model_state, hyperparameters, rng):
        self.seen["init_params"] = model_params
        return {"count": jnp.zeros((jax.local_device_count(),))}

    def update_params(self, *, current_param_container, model_state, batch, optimizer_state, **_):
        self.seen.setdefault("first_update_params", current_param_container)
        self.seen["params"], self.seen["batch"], self.seen["optimizer_state"] = current_param_container, batch, optimizer_state
        new_params = jax.tree.map(lambda x: x + 1.0, current_param_container)
        new_state = {"mean": model_state["mean"] + jnp.arange(model_state["mean"].shape[0], dtype=jnp.float32)[:, None]}
        self.seen["returned_params"] = new_params
        return optimizer_state, new_params, new_state


def test_adapter_replicates_once_reshapes_batches_and_unreplicates_for_eval():
    rec = _Recorder()
    adapter = PmapAdapter(rec.init_optimizer_state, rec.update_params, None)
    n = jax.local_device_count()
    params, model_state = {"w": jnp.ones((3, 2))}, {"mean": jnp.zeros((2,))}
    adapter.init_optimizer_state(None, params, model_state, None, None)
    assert rec.seen["init_params"]["w"].shape == (n, 3, 2)
    batch = {"inputs": jax_sharding_utils.shard_along_batch_dim(jnp.arange(8.0 * n).reshape(4 * n, 2))}
    kwargs = dict(workload=None, current_params_types=None, hyperparameters=None, loss_type=None,
                  eval_results=[], rng=None)
    opt, p1, s1 = adapter.update_params(current_param_container=params, model_state=model_state, batch=batch,
                                        optimizer_state={"count": jnp.zeros((n,))}, global_step=0, **kwargs)
    assert rec.seen["batch"]["inputs"].shape == (n, 4, 2)
    np.testing.assert_array_equal(np.asarray(rec.seen["batch"]["inputs"]).reshape(4 * n, 2), np.asarray(batch["inputs"]))
    opt2, p2, s2 = adapter.update_params(current_param_container=p1, model_state=s1, batch=batch, optimizer_state=opt,
                                         global_step=1, **kwargs)
    assert rec.seen["params"] is p1  # what it returned comes back as it is, not replicated again
    assert rec.seen["optimizer_state"] is opt
    _, eval_params, eval_state = adapter.prepare_for_eval(
        workload=None, current_param_container=p2, current_params_types=None, model_state=s2, hyperparameters=None,
        loss_type=None, optimizer_state=opt2, eval_results=[], global_step=2, rng=None,
    )
    np.testing.assert_allclose(np.asarray(eval_params["w"]), np.full((3, 2), 3.0))  # one copy, unreplicated
    # Device i added 2*i to its statistics: eval sees their mean over devices.
    np.testing.assert_allclose(np.asarray(eval_state["mean"]), np.full((2,), float(n - 1)))
    # Training goes on from the replicated trees behind what eval got, not re-replicated averages.
    adapter.update_params(current_param_container=eval_params, model_state=eval_state, batch=batch,
                          optimizer_state=opt2, global_step=2, **kwargs)
    assert rec.seen["params"] is p2


def test_unreplicating_takes_params_from_one_device_and_averages_floating_model_state():
    adapter = PmapAdapter(lambda *a: None, lambda **k: None, None)
    adapter.init_optimizer_state(None, {"w": jnp.ones(2)}, None, None, None)
    n = 3  # any leading size: the rule, not the device count, is under test
    params = {"w": jnp.stack([jnp.full((2,), 5.0)] * n)}
    state = {"mean": jnp.arange(n * 2, dtype=jnp.float32).reshape(n, 2), "steps": jnp.full((n,), 7, jnp.int32)}
    eval_params, eval_state = adapter._unreplicated(params, state)
    np.testing.assert_allclose(np.asarray(eval_params["w"]), [5.0, 5.0])
    np.testing.assert_allclose(np.asarray(eval_state["mean"]), np.asarray(state["mean"]).mean(axis=0))
    assert int(eval_state["steps"]) == 7 and eval_state["steps"].dtype == jnp.int32


# --- trials: our own pmap-style submissions on mnist1d, ctr and molgraph ------------------------
def _trial(tmp_path: Path, submission: Path, workload: str, steps: int = 12, style: str = "auto"):
    hp = json.loads((submission / "tuning_search_space.json").read_text())[0]
    config = TrialConfig(workload=workload, submission=submission, hyperparameters=hp, max_steps=steps,
                         experiment_dir=tmp_path, experiment_name=f"{submission.name}_{workload}",
                         eval_every_steps=steps, submission_style=style)
    return config, run_trial(config)


@pytest.mark.parametrize("submission", [V05_PMAP, PMAP_ALGOPERF], ids=["v05_pmap", "pmap_algoperf"])
# mnist1d in the fast tier; ctr and molgraph (their batch sizes, molgraph's graphs) in the slow
# tier and in make test-compat, which runs every compat test.
@pytest.mark.parametrize("workload", ["mnist1d", pytest.param("ctr", marks=pytest.mark.slow),
                                      pytest.param("molgraph", marks=pytest.mark.slow)])
def test_pmap_style_submission_trains_through_the_v06_runner(tmp_path, submission, workload):
    config, result = _trial(tmp_path, submission, workload)
    assert result.status != "failed", result.error
    assert result.global_step == 12
    evals = read_evals(config.path)
    assert [row["global_step"] for row in evals] == [1, 12]
    # It learns: the validation loss after 12 steps is below the loss after the first step.
    assert evals[-1]["validation/loss"] < evals[0]["validation/loss"]
    meta = json.loads(next(config.path.glob("meta_data_*.json")).read_text())
    assert meta["submission_style"] == "pmap"


def test_a_pmap_style_trial_resumes_from_its_checkpoint_to_the_same_result(tmp_path):
    """Checkpoints hold the runner's unreplicated params and pmap's optimizer state; a resumed
    trial re-lays them out and trains on to the same losses."""
    config = TrialConfig(workload="mnist1d", submission=V05_PMAP, hyperparameters={"learning_rate": 0.05, "momentum": 0.9},
                         max_steps=20, experiment_dir=tmp_path, experiment_name="resume", eval_every_steps=10)
    first = run_trial(config)
    losses = [row["validation/loss"] for row in read_evals(config.path)]
    (config.path / "trial_result.json").unlink()  # as a killed attempt leaves it
    resumed = run_trial(config)
    assert first.status == resumed.status != "failed", resumed.error
    meta = json.loads(sorted(config.path.glob("meta_data_*.json"))[-1].read_text())
    assert meta["resume"]["from_step"] == 10
    assert [row["validation/loss"] for row in read_evals(config.path)] == pytest.approx(losses, rel=1e-5)


@pytest.mark.slow  # two CLI trials (~25 s); also in make test-compat
def test_forcing_the_style_overrides_detection(tmp_path, write_submission):
    # pmap reached through getattr: the source shows no pmap, so auto says jit and the trial fails.
    source = (V05_PMAP / "submission.py").read_text().replace("jax.pmap,", 'getattr(jax, "p" + "map"),')
    source = source.replace("from flax import jax_utils", "from flax import jax_utils as ju").replace("jax_utils.", "ju.")
    source = re.sub(r"from submissions\.\S+ import \(\s*clip_elementwise,\s*\)", "clip_elementwise = lambda g: g", source)
    assert "pmap_helpers" not in source
    folder = write_submission(source, name="hidden_pmap", search_space=[{"learning_rate": 0.05, "momentum": 0.9}])
    assert detect_style(folder / "submission.py").style == "jit"
    auto = run_cli("--submission", str(folder), "--workload", "mnist1d", "--max-steps", "3", "--executor", "local",
                   "--no-tracking", "--experiment-dir", str(tmp_path / "auto"))
    assert auto.returncode == 1 and "failed" in auto.stdout + auto.stderr
    forced = run_cli("--submission", str(folder), "--workload", "mnist1d", "--max-steps", "3", "--executor", "local",
                     "--no-tracking", "--experiment-dir", str(tmp_path / "forced"), "--submission-style", "pmap")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "pmap-style submission" in " ".join(forced.stderr.split()) + " ".join(forced.stdout.split())
    bad = run_cli("--submission", str(folder), "--workload", "mnist1d", "--submission-style", "vmap", "--no-tracking")
    assert bad.returncode != 0 and "--submission-style 'vmap'" in " ".join((bad.stdout + bad.stderr).split())
    assert "Traceback" not in bad.stderr


_DEVICE_RUN = """
import json, sys
import jax
from algoperf.runner.trial import TrialConfig, run_trial
from algoperf.runner.trial_log import read_evals
config = TrialConfig(workload="mnist1d", submission=sys.argv[1], hyperparameters={"learning_rate": 0.05, "momentum": 0.9},
                     max_steps=6, experiment_dir=sys.argv[2], experiment_name="x", eval_every_steps=6, checkpoints=False)
result = run_trial(config)
print(json.dumps({"devices": jax.device_count(), "status": result.status, "evals": read_evals(config.path)}))
"""


@pytest.mark.slow  # two subprocess trials (~22 s); also in make test-compat
def test_two_devices_train_like_one(tmp_path):
    """The same trial over 1 and 2 (forced host) devices: per-device batches, psum'd gradients."""
    out = {}
    for n in (1, 2):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
               "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-c", _DEVICE_RUN, str(V05_PMAP), str(tmp_path / str(n))],
                              capture_output=True, text=True, timeout=400, env=env, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        out[n] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[1]["devices"] == 1 and out[2]["devices"] == 2
    assert out[1]["status"] == out[2]["status"] != "failed"
    for one, two in zip(out[1]["evals"], out[2]["evals"], strict=True):
        assert one["global_step"] == two["global_step"]
        assert one["validation/loss"] == pytest.approx(two["validation/loss"], rel=1e-4)


# --- the published v0.5 JAX entries (kept outside the repository) ----------------------------
@pytest.mark.skipif(not PUBLISHED_V05.is_dir(), reason=f"{PUBLISHED_V05} is absent (the published v0.5 submissions)")
@pytest.mark.skipif(importlib.util.find_spec("jraph") is None, reason='jraph is not installed (pip install "algoperf[v05]")')
@pytest.mark.parametrize("entry", PUBLISHED_JAX)
def test_published_v05_jax_submissions_load_unmodified_as_pmap_style(entry):
    sub = load_submission(PUBLISHED_V05 / entry / "submission.py")
    assert sub.style == "pmap", sub.style_reason
    assert sub.module.spec is algoperf.spec


@pytest.mark.skipif(not PUBLISHED_V05.is_dir(), reason=f"{PUBLISHED_V05} is absent (the published v0.5 submissions)")
def test_the_published_v05_baseline_trains_mnist1d_unmodified(tmp_path):
    folder = PUBLISHED_V05 / "external_tuning" / "baseline"
    hp = json.loads((folder / "tuning_search_space.json").read_text())[0]
    config = TrialConfig(workload="mnist1d", submission=folder / "submission.py", hyperparameters=hp, max_steps=30,
                         experiment_dir=tmp_path, experiment_name="published", eval_every_steps=30)
    result = run_trial(config)
    assert result.status != "failed", result.error
    evals = read_evals(config.path)
    assert evals[-1]["global_step"] == 30 and evals[-1]["validation/loss"] < evals[0]["validation/loss"]


def test_replicate_without_pmap_is_jit_style(tmp_path):
    """A published jit-style submission calls flax's replicate on its optimizer state and
    steps with jax.jit: only a pmap makes a submission pmap-style."""
    from algoperf.compat.style import detect_style

    path = tmp_path / "submission.py"
    path.write_text("from flax import jax_utils\nimport jax\n\ndef init(s):\n    return jax_utils.replicate(s)\n\nstep = jax.jit(lambda x: x)\n")
    choice = detect_style(path)
    assert choice.style == "jit" and "jax_utils.replicate" in choice.reason
    path.write_text(path.read_text() + "pstep = jax.pmap(lambda x: x, axis_name='batch')\n")
    assert detect_style(path).style == "pmap"
