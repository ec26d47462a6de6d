"""Loading a submission validates it before any training, with one clear message."""

from __future__ import annotations

import subprocess
import sys

import pytest

from algoperf.submission.loading import SubmissionError, load_submission

pytestmark = pytest.mark.compat

GOOD = """
def get_batch_size(workload_name): return 8
def init_optimizer_state(workload, model_params, model_state, hyperparameters, rng): return None
def update_params(workload, current_param_container, current_params_types, model_state,
                  hyperparameters, batch, loss_type, optimizer_state, eval_results, global_step, rng,
                  train_state=None):
    return optimizer_state, current_param_container, model_state
def data_selection(workload, input_queue, optimizer_state, current_param_container, model_state,
                   hyperparameters, global_step, rng):
    return next(input_queue)
"""


def test_builtin_name_folder_and_file_all_load(tmp_path, write_submission):
    assert load_submission("nadamw").name == "nadamw"
    folder = write_submission(GOOD, name="mine")
    by_folder, by_file = load_submission(folder), load_submission(folder / "submission.py")
    assert by_folder.name == by_file.name == "mine"
    assert by_folder.needs_train_state and by_folder.prepare_for_eval is None
    assert by_folder.search_space is None


def test_content_hash_changes_with_the_source(write_submission):
    first = load_submission(write_submission(GOOD, name="h")).source_hash
    second = load_submission(write_submission(GOOD + "\n# changed\n", name="h")).source_hash
    assert first != second


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (GOOD.replace("def get_batch_size", "def get_batch_sizes"), "missing required function(s) get_batch_size"),
        (GOOD.replace("global_step, rng,\n", "step, rng,\n"), "update_params(") ,
        (GOOD.replace("def data_selection(workload, input_queue,", "def data_selection(workload,"), "data_selection must take 8"),
        ("import not_a_module_anywhere\n" + GOOD, "line 1): importing the submission failed: ModuleNotFoundError"),
        (GOOD + "\nupdate_params = 3\n", "update_params must be a function"),
    ],
    ids=["missing-function", "renamed-parameter", "too-few-parameters", "import-error", "not-callable"],
)
def test_broken_submissions_name_the_file_and_the_problem(write_submission, source, expected):
    folder = write_submission(source, name="broken")
    with pytest.raises(SubmissionError) as info:
        load_submission(folder)
    message = str(info.value)
    assert str(folder / "submission.py") in message
    assert expected in message


def test_wrong_signature_lists_missing_and_unexpected_names(write_submission):
    folder = write_submission(GOOD.replace("global_step, rng,\n", "step, rng,\n"))
    message = str(pytest.raises(SubmissionError, load_submission, folder).value)
    assert "missing: global_step" in message and "unexpected: step" in message


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"learning_rate": {"min": 0.1}}', "key 'learning_rate' lacks max"),
        ('{"learning_rate": {"min": 0.0, "max": 1.0, "scaling": "log"}}', "key 'learning_rate': log scaling needs min > 0"),
        ('{"lr": {"min": 1, "max": 2, "scaling": "cubic"}}', "key 'lr': scaling must be one of linear, log"),
        ('{"lr": {"feasible_points": []}}', "key 'lr': feasible_points must be a non-empty list"),
        ('{"lr": {"min": 3, "max": 2}}', "key 'lr': min 3 is larger than max 2"),
        ('{"lr": ', "not valid JSON (line 1"),
        ("[]", "the list of points is empty"),
    ],
)
def test_malformed_search_space_names_the_file_and_key(write_submission, raw, expected):
    folder = write_submission(GOOD, name="space", raw_space=raw)
    message = str(pytest.raises(SubmissionError, load_submission, folder).value)
    assert str(folder / "tuning_search_space.json") in message
    assert expected in message


def test_cli_reports_a_broken_submission_in_one_line_and_exits_2(write_submission):
    folder = write_submission("import not_a_module_anywhere\n" + GOOD, name="clibroken")
    proc = subprocess.run(
        [sys.executable, "-m", "algoperf.cli", "run", "--submission", str(folder), "--workload", "mnist1d"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "ModuleNotFoundError" in proc.stderr and str(folder / "submission.py") in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_unknown_workload_and_submission_names_are_clear():
    for args, expected in ((["--submission", "nadamw", "--workload", "nope"], "unknown workload 'nope'"),
                           (["--submission", "no_such_sub", "--workload", "mnist1d"], "no submission at 'no_such_sub'")):
        proc = subprocess.run([sys.executable, "-m", "algoperf.cli", "run", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        assert expected in proc.stderr and "Traceback" not in proc.stderr
