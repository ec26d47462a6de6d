"""AlgoPerf's ``train_state``: the bookkeeping a submission may read, current at every step.

A submission whose ``update_params`` names a ``train_state`` parameter gets a read-only
view of this dict (``types.MappingProxyType``, as the reference passes it); one that
takes only ``**kwargs`` gets nothing (the reference checks the parameter's name).

The keys and what each value means when ``update_params`` of step ``s`` is called
(``s`` = ``global_step`` 0, 1, ...); times are seconds, points in time are seconds since
the epoch (``time.time()``'s scale, as the reference's ``get_time()``):

* ``accumulated_submission_time``: time charged to the submission up to the end of
  step ``s - 1``, read from the host clock right after that step's ``update_params``
  returned, without waiting for the device (the reference does the same for JAX). At
  an eval it is exact: the runner waits for the device there.
* ``is_time_remaining``: ``accumulated_submission_time < budget``, budget =
  ``max_allowed_runtime_sec`` x the ruleset's factor.
* ``last_step_end_time``: when step ``s - 1`` ended (for ``s = 0``: when the clock
  started), including any eval after it.
* ``last_eval_time``: when the last eval ended; 0 before the first, as in the reference.
* ``accumulated_eval_time``, ``accumulated_logging_time``: wall time of the evals and
  of the logging/checkpointing so far (not charged).
* ``validation_goal_reached``, ``test_goal_reached``: whether an eval so far reached the
  validation/test target (``algoperf.target_rule``).
* ``training_complete``: False while the submission is called (training stops when it
  becomes True).

Updating costs a handful of dict stores per step; the view is made once.
"""

from __future__ import annotations

import time
from types import MappingProxyType
from typing import Any

from algoperf.runner.clock import TrialClock


class TrainState:
    """The live ``train_state`` dict of one trial and its read-only view."""

    def __init__(self, clock: TrialClock, budget: float):
        self._clock = clock
        self.budget = budget
        # Clock readings (perf_counter) -> seconds since the epoch; fixed once per trial.
        self._to_epoch = time.time() - clock.now()
        self.values: dict[str, Any] = {
            "validation_goal_reached": False,
            "test_goal_reached": False,
            "is_time_remaining": True,
            "last_eval_time": 0,
            "training_complete": False,
            "accumulated_submission_time": 0.0,
            "accumulated_eval_time": 0.0,
            "accumulated_logging_time": 0.0,
            "last_step_end_time": None,
        }
        self.view = MappingProxyType(self.values)

    def epoch(self, reading: float) -> float:
        """A clock reading as seconds since the epoch."""
        return reading + self._to_epoch

    def started(self) -> None:
        """The clock started (or restarted after a resume): times go on from here."""
        self.values["last_step_end_time"] = self.epoch(self._clock.now())
        self._sync_totals()

    def step_ended(self, now: float) -> float:
        """Step ended at clock reading ``now``; returns the submission time by the host clock."""
        submission_time = self._clock.peek(now)
        values = self.values
        values["accumulated_submission_time"] = submission_time
        values["is_time_remaining"] = submission_time < self.budget
        values["last_step_end_time"] = now + self._to_epoch
        return submission_time

    def eval_ended(self, end: float, validation_reached: bool, test_reached: bool) -> None:
        """An eval ended at clock reading ``end`` (before its logging, as in the reference)."""
        self.values["last_eval_time"] = self.epoch(end)
        self.values["validation_goal_reached"] = validation_reached
        self.values["test_goal_reached"] = test_reached
        self._sync_totals()

    def after_eval(self) -> None:
        """Logging and checkpointing after an eval are done: the next step starts now."""
        self._sync_totals()
        self.values["last_step_end_time"] = self.epoch(self._clock.now())

    def _sync_totals(self) -> None:
        clock = self._clock
        self.values["accumulated_submission_time"] = clock.submission_time
        self.values["is_time_remaining"] = clock.submission_time < self.budget
        self.values["accumulated_eval_time"] = clock.excluded_time.get("eval", 0.0)
        self.values["accumulated_logging_time"] = clock.excluded_time.get("logging", 0.0)
