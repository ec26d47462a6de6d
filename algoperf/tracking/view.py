"""The dashboard view `algoperf ui` opens: MLflow's shared view state, written by us.

MLflow 3.17's experiment page keeps its view in two places: the search facets in the URL
(``searchFilter``, ``orderByKey``, ``orderByAsc``, ``startTime``, ``lifecycleFilter``,
``modelVersionFilter``, ``datasetsFilter``) and everything else (``selectedColumns``,
``groupBy``, ``globalLineChartConfig``, ...) in the browser's localStorage. Its *Share*
button stores both as JSON in an experiment tag ``mlflow.sharedViewState.<key>`` and
opens it with ``?viewStateShareKey=<key>``. We write such a tag (key ``algoperf``) so the
printed URL opens the runs table

* with columns workload, submission, study, trial, status, time to target and best
  validation metric (tags ``algoperf.*``, metrics ``time_to_target``, ``best_validation``),
* sorted by time to target (fastest first), grouped by workload,
* and every line chart drawn against ``accumulated_submission_time`` (the benchmark's
  clock), one line per trial.

What MLflow cannot be told this way (the assistant side panel, per-run expansion) is in
docs/dashboard.md.
"""

from __future__ import annotations

import json
from typing import Any

VIEW_KEY = "algoperf"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
TIME_AXIS = "accumulated_submission_time"
COLUMNS = (
    ("tags", "algoperf.workload"),
    ("tags", "algoperf.submission"),
    ("tags", "algoperf.study"),
    ("tags", "algoperf.trial"),
    ("tags", "algoperf.status"),
    ("metrics", "time_to_target"),
    ("metrics", "best_validation"),
)


def view_state() -> dict[str, Any]:
    """The view, in the structure MLflow's Share button stores."""
    return {
        "orderByKey": "metrics.`time_to_target`",
        "orderByAsc": True,
        "searchFilter": "",
        "selectedColumns": [f"{kind}.`{key}`" for kind, key in COLUMNS],
        "groupBy": {"aggregateFunction": "min", "groupByKeys": [{"mode": "tag", "groupByData": "algoperf.workload"}]},
        "useGroupedValuesInCharts": False,  # a line per trial, not one per workload
        "globalLineChartConfig": {"xAxisKey": "metric", "selectedXAxisMetricKey": TIME_AXIS, "lineSmoothness": 0},
        "hideEmptyCharts": True,
    }


def ensure_view(client: Any, experiment_id: str) -> str:
    """Write (or refresh) the view tag on an experiment; the key for the URL."""
    text = json.dumps(view_state(), separators=(",", ":"))
    experiment = client.get_experiment(experiment_id)
    if experiment.tags.get(VIEW_TAG) != text:
        client.set_experiment_tag(experiment_id, VIEW_TAG, text)
    return VIEW_KEY
