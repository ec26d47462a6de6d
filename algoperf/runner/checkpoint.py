"""Save and restore a trial's state (orbax-checkpoint), so a preempted trial resumes.

A trial saves a checkpoint at its eval points, inside the clock's "logging" span (not
charged to the submission, as in AlgoPerf). Only the latest one is kept, under
``<trial_dir>/checkpoints/<global_step>/``; orbax writes it to a temporary folder and
renames it, so a process killed mid-save leaves the previous checkpoint intact.

What a checkpoint holds:

* arrays: every array leaf of the params, the optimizer state, the model state and the
  trial's RNG key (typed PRNG keys as their key data);
* ``info`` (JSON): the step, accumulated submission / eval / logging time, total
  duration, the eval results so far, when the last eval happened, the target flags,
  how many batches the input queue gave out, the preemption count, and what the trial
  is (submission hash, seed, hyperparameters) so a checkpoint is never restored into
  another trial.

Non-array leaves (the optimizer's update function, strings, ``None``) are not saved: a
resumed trial initialises model and optimizer exactly as the first attempt did (same
seed, same submission) and the restored arrays replace the array leaves of that fresh
state, placed with the fresh arrays' shardings. A tree whose leaves do not match leaf
for leaf (count, shape, dtype) is refused with ``CheckpointMismatchError``.

``truncate_trial_log`` drops what a killed attempt logged after its last checkpoint, so
the resumed attempt appends to the same files without duplicate rows.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from algoperf.runner import trial_log

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message says which and what to do."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's arrays do not fit the freshly initialised state."""


def checkpoint_dir(trial_dir: str | Path) -> Path:
    """Where the checkpoints of a trial live."""
    return Path(trial_dir) / CHECKPOINT_DIR


def latest_step(trial_dir: str | Path) -> int | None:
    """The global step of the newest complete checkpoint of a trial, or None.

    Orbax finalises a checkpoint by renaming its temporary folder to the bare step
    number, so only folders named by an integer are complete.
    """
    root = checkpoint_dir(trial_dir)
    if not root.is_dir():
        return None
    steps = [int(p.name) for p in root.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(steps) if steps else None


def _is_array(leaf: Any) -> bool:
    import jax

    return isinstance(leaf, jax.Array | np.ndarray | np.generic)


def _savable(leaf: Any) -> bool:
    # Python numbers in a state change as it trains (e.g. a step counter): save them too.
    return _is_array(leaf) or isinstance(leaf, int | float)


def _is_key(leaf: Any) -> bool:
    import jax

    return isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _to_host(leaf: Any) -> np.ndarray:
    import jax

    if _is_key(leaf):
        leaf = jax.random.key_data(leaf)
    return np.asarray(jax.device_get(leaf))


def _flatten(name: str, tree: Any) -> dict[str, np.ndarray]:
    import jax

    leaves = [leaf for leaf in jax.tree.leaves(tree) if _savable(leaf)]
    return {f"{name}.{i:06d}": _to_host(leaf) for i, leaf in enumerate(leaves)}


def _like_host(fresh: Any, saved: np.ndarray, where: str) -> Any:
    """``saved`` shaped, typed and placed like the fresh leaf it replaces."""
    import jax

    reference = _to_host(fresh) if _is_array(fresh) else np.asarray(fresh)
    if saved.shape != reference.shape or saved.dtype != reference.dtype:
        raise CheckpointMismatchError(
            f"{where}: the checkpoint holds {saved.dtype}{list(saved.shape)}, the fresh state "
            f"{reference.dtype}{list(reference.shape)}"
        )
    if _is_key(fresh):
        return jax.device_put(jax.random.wrap_key_data(saved, impl=jax.random.key_impl(fresh)), fresh.sharding)
    if isinstance(fresh, jax.Array):
        return jax.device_put(saved, fresh.sharding)
    if isinstance(fresh, np.ndarray):
        return saved
    if isinstance(fresh, np.generic):
        return fresh.dtype.type(saved.item())
    return type(fresh)(saved.item())


def _unflatten(name: str, fresh: Any, saved: Mapping[str, np.ndarray]) -> Any:
    import jax

    prefix = f"{name}."
    keys = sorted(k for k in saved if k.startswith(prefix))
    leaves, treedef = jax.tree.flatten(fresh)
    slots = [i for i, leaf in enumerate(leaves) if _savable(leaf)]
    if len(slots) != len(keys):
        raise CheckpointMismatchError(
            f"{name}: the checkpoint holds {len(keys)} arrays, the fresh state has {len(slots)}"
        )
    for slot, key in zip(slots, keys, strict=True):
        leaves[slot] = _like_host(leaves[slot], np.asarray(saved[key]), f"{name} leaf {key[len(prefix):]}")
    return jax.tree.unflatten(treedef, leaves)


class Checkpointer:
    """Saves and restores named pytrees plus a JSON ``info`` dict for one trial."""

    def __init__(self, trial_dir: str | Path):
        self.directory = checkpoint_dir(trial_dir)
        self._manager: Any = None

    def _get_manager(self) -> Any:
        if self._manager is None:
            import orbax.checkpoint as ocp

            # Synchronous saves: the checkpoint is durable before training goes on, and
            # its whole cost lands in the (uncharged) logging span that wraps the save.
            options = ocp.CheckpointManagerOptions(
                max_to_keep=1, enable_async_checkpointing=False, create=True
            )
            self._manager = ocp.CheckpointManager(self.directory.resolve(), options=options)
        return self._manager

    def save(self, step: int, trees: Mapping[str, Any], info: dict[str, Any]) -> None:
        """Write the checkpoint of ``step`` (replacing the older one) and wait for it."""
        import orbax.checkpoint as ocp

        arrays: dict[str, np.ndarray] = {}
        for name, tree in trees.items():
            arrays.update(_flatten(name, tree))
        manager = self._get_manager()
        manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(arrays), info=ocp.args.JsonSave(info)),
            force=True,
        )
        manager.wait_until_finished()

    def restore(self, like: Mapping[str, Any], step: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
        """The trees of the newest (or ``step``'s) checkpoint, shaped like ``like``, and its info."""
        import orbax.checkpoint as ocp

        step = latest_step(self.directory.parent) if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to restore")
        try:
            restored = self._get_manager().restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(), info=ocp.args.JsonRestore())
            )
        except Exception as e:  # orbax raises many types for a damaged folder
            raise CheckpointError(
                f"{self.directory / str(step)}: cannot read the checkpoint ({type(e).__name__}: {e}); "
                "delete that folder to restart the trial from step 0"
            ) from e
        saved = dict(restored.state)
        trees = {name: _unflatten(name, tree, saved) for name, tree in like.items()}
        return trees, dict(restored.info)

    def read_info(self, step: int | None = None) -> dict[str, Any]:
        """Only the JSON ``info`` of the newest (or ``step``'s) checkpoint."""
        import orbax.checkpoint as ocp

        step = latest_step(self.directory.parent) if step is None else step
        if step is None:
            raise CheckpointError(f"{self.directory}: no checkpoint to read")
        try:
            restored = self._get_manager().restore(step, args=ocp.args.Composite(info=ocp.args.JsonRestore()))
        except Exception as e:  # noqa: BLE001 - orbax raises many types for a damaged folder
            raise CheckpointError(
                f"{self.directory / str(step)}: cannot read the checkpoint ({type(e).__name__}: {e}); "
                "delete that folder to restart the trial from step 0"
            ) from e
        return dict(restored.info)

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


def remove(trial_dir: str | Path) -> None:
    """Delete every checkpoint of a trial."""
    shutil.rmtree(checkpoint_dir(trial_dir), ignore_errors=True)


def truncate_trial_log(trial_dir: str | Path, step: int) -> int:
    """Drop eval rows and submission metrics logged after ``step``; return rows dropped.

    A killed attempt may have logged an eval (or submission scalars) after its last
    checkpoint; the resumed attempt repeats those steps and logs them again. Files are
    rewritten atomically (a temporary file, then a rename).
    """
    trial_dir = Path(trial_dir)
    dropped = 0
    eval_file = trial_dir / trial_log.EVAL_FILE
    if eval_file.exists():
        table = trial_log.read_eval_table(eval_file)
        if table.header:
            col = table.header.index("global_step") if "global_step" in table.header else None
            # Rows cut off by a kill mid-write are already left out of table.rows: drop them too.
            keep = [r for r in table.rows if col is None or _as_step(r[col]) <= step]
            body = len(table.rows) + table.truncated + table.malformed
            dropped += body - len(keep)
            if not keep:
                eval_file.unlink()  # the next attempt writes a fresh header
            elif len(keep) != body:
                trial_log.write_eval_table(eval_file, table.header, keep)
    metrics_file = trial_dir / trial_log.SUBMISSION_METRICS_FILE
    if metrics_file.exists():
        lines = metrics_file.read_text().splitlines()
        keep_lines = [line for line in lines if line.strip() and _metric_step(line) <= step]
        if len(keep_lines) != len(lines):
            _rewrite(metrics_file, lambda f: f.write("".join(line + "\n" for line in keep_lines)))
    return dropped


def _as_step(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return float("inf")  # a half-written row from a killed process: drop it


def _metric_step(line: str) -> float:
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def _rewrite(path: Path, write: Any, newline: str | None = None) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline=newline) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
