"""Resuming a trial a killed attempt left: which attempt this is, which checkpoint is its
own, what of the log to drop, and where the input queue was."""

from __future__ import annotations

import json
from typing import Any

from algoperf.runner import checkpoint
from algoperf.runner.trial_log import RESULT_FILE
from algoperf.runner.types import TrialConfig
from algoperf.submission.loading import Submission

# A resumed trial whose input queue cannot seek replays it up to this many batches to
# continue at the same data position; beyond it the queue restarts (replaying would cost
# too long), as AlgoPerf's runner always restarts it after a preemption.
MAX_FAST_FORWARD_BATCHES = 100_000


class CountingIterator:
    """The train input queue, counting the batches handed out so a resume can skip them."""

    def __init__(self, iterator: Any):
        self._iterator = iter(iterator)
        self.count = 0

    def __iter__(self) -> CountingIterator:
        return self

    def __next__(self) -> Any:
        item = next(self._iterator)
        self.count += 1
        return item

    def position(self) -> Any:
        """The queue's own ``position()`` for a checkpoint (JSON), where it has one, else None."""
        position = getattr(self._iterator, "position", None)
        return position() if position is not None else None

    def skip(self, n: int, position: Any = None) -> bool:
        """Go on after the first ``n`` batches; whether the queue is now at batch ``n``.

        A queue that gave a ``position()`` to the checkpoint is ``restore``d to it (a stream
        whose batch boundaries depend on its data: WMT's packed rows). A queue with a
        ``seek(n)`` method (``algoperf.data.epochs.SeekableBatches``) jumps there without
        making the batches it skips. Any other is drawn and dropped, unless that means more
        than ``MAX_FAST_FORWARD_BATCHES`` batches: then it stays at its beginning (returns False).
        """
        restore = getattr(self._iterator, "restore", None)
        seek = getattr(self._iterator, "seek", None)
        if position is not None and restore is not None:
            restore(position)
        elif seek is not None:
            seek(n)
        elif n <= MAX_FAST_FORWARD_BATCHES:
            for _ in range(n):
                next(self._iterator)
        else:
            return False
        self.count = n
        return True


def trial_identity(config: TrialConfig, submission: Submission, batch_size: int) -> dict[str, Any]:
    """What makes a checkpoint this trial's (as JSON would give it back)."""
    identity = {"submission_hash": submission.source_hash, "seed": config.seed, "hyperparameters": config.hyperparameters,
                "workload": config.workload, "workload_kwargs": config.workload_kwargs, "batch_size": batch_size}
    return json.loads(json.dumps(identity, default=str))


def resume_point(config: TrialConfig, identity: dict[str, Any]) -> tuple[int, int | None]:
    """(preemption count, checkpoint step or None) for a trial folder.

    A folder with meta data but no trial_result.json was left by a killed attempt: the
    count is the number of earlier attempts, and what that attempt logged after its last
    checkpoint (or everything, with no checkpoint) is dropped before this one appends.
    A checkpoint of another trial (other submission, seed, hyperparameters) is refused
    before anything is changed.
    """
    path = config.path
    if not path.is_dir() or (path / RESULT_FILE).exists():
        return 0, None
    attempts = [int(p.stem.rsplit("_", 1)[1]) for p in path.glob("meta_data_*.json") if p.stem.rsplit("_", 1)[1].isdigit()]
    if not attempts:
        return 0, None
    step = checkpoint.latest_step(path) if config.checkpoints else None
    if step is not None:
        reader = checkpoint.Checkpointer(path)
        try:
            info = reader.read_info(step)
        finally:
            reader.close()
        found = {k: info.get(k) for k in identity}
        if found != identity:
            differs = ", ".join(k for k in identity if found[k] != identity[k])
            raise checkpoint.CheckpointMismatchError(
                f"{checkpoint.checkpoint_dir(path)}: the checkpoint belongs to another trial (different {differs}); "
                f"delete {path} to start this trial over, or run it under another --experiment-name"
            )
    checkpoint.truncate_trial_log(path, step or 0)
    return max(attempts) + 1, step
