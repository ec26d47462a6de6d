"""Shared fixtures: paths, a CLI runner, and small submissions written on the fly."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from algoperf.campaign.cluster import WORKER_NICENESS

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
NADAMW = REPO / "submissions" / "nadamw"

# Ray test nodes: no dashboard, every port picked free by the OS. (The dashboard's 8265 and
# the head's dashboard agent port 52365 are fixed by default: two test clusters at once, or
# a developer's own Ray, would contend for them.) The node IP stays Ray's own choice: a head
# told 127.0.0.1 advertises its GCS on the host's address and the driver never connects.
RAY_TEST_NODE = {"include_dashboard": False, "dashboard_agent_listen_port": None}
# Test clusters' workers at nice 0, as the embedded Ray's (algoperf.campaign.cluster.connect):
# at Ray's default 15 a busy machine starves their trials (a 20 s test took 219 s).
os.environ.setdefault(WORKER_NICENESS, "0")
RAY_TEST_WORKER = {"dashboard_agent_listen_port": None}


@pytest.fixture(autouse=True, scope="session")
def _tracking_store_outside_the_repo(tmp_path_factory):
    """CLI runs track by default into ./mlflow.db: point them at a throwaway store instead.

    Tests of the default store clear the variable themselves.
    """
    if "MLFLOW_TRACKING_URI" in os.environ:
        yield
        return
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    yield
    os.environ.pop("MLFLOW_TRACKING_URI", None)


@pytest.fixture
def nadamw_point() -> dict:
    """The first point of the NAdamW baseline's search space."""
    return json.loads((NADAMW / "tuning_search_space.json").read_text())[0]


@pytest.fixture
def write_submission(tmp_path: Path):
    """Write ``source`` as <tmp>/<name>/submission.py (and an optional search space)."""

    def write(source: str, name: str = "sub", search_space: object | None = None, raw_space: str | None = None) -> Path:
        folder = tmp_path / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "submission.py").write_text(textwrap.dedent(source))
        if search_space is not None:
            (folder / "tuning_search_space.json").write_text(json.dumps(search_space))
        if raw_space is not None:
            (folder / "tuning_search_space.json").write_text(raw_space)
        return folder

    return write
