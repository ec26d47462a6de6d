"""Drive a pmap-style (v0.5-era) submission from the unchanged v0.6 trial runner.

The runner (``algoperf.runner.trial``) hands a submission unreplicated params and model state and
global batches sharded along their first axis, and evaluates whatever params it holds.
A pmap-style submission expects what AlgoPerf v0.5's runner gave it: params and model
state replicated per device (a leading device axis, as ``flax.jax_utils.replicate``
makes them) and batches shaped (devices, per-device batch, ...). The adapter wraps the
submission's functions so that each side gets its convention:

* ``init_optimizer_state`` receives replicated params and model state.
* ``update_params`` receives replicated params and model state (replicated once, then
  cached: what it returned is passed back as it is), the batch reshaped to (devices,
  per-device, ...) (one jitted call; no data crosses devices), and
  the optimizer state in the layout pmap's outputs have. It returns the replicated
  trees to the runner, which only passes them back (and to ``data_selection``, as v0.5 did).
* ``prepare_for_eval`` (always present for a pmap-style submission; the submission's own,
  if it has one, runs first on replicated trees) unreplicates params and model state
  in one jitted call for the runner's eval and checkpoints: params from the first
  device, floating-point model state averaged over devices (v0.5's workloads averaged
  batch-norm statistics over devices before each eval). Training goes on from the
  replicated trees, not from the averaged ones, as in v0.5.

Everything the adapter does inside ``update_params`` and ``prepare_for_eval`` is charged
to the submission, as the runner times those calls.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from algoperf import jax_sharding_utils


def _is_array(x: Any) -> bool:
    return isinstance(x, jax.Array | np.ndarray)


def _split_arrays(tree: Any) -> tuple[list[Any], Callable[[list[Any]], Any]]:
    """(the array leaves of ``tree``, a function putting new arrays back in their places)."""
    leaves, treedef = jax.tree.flatten(tree)
    where = [i for i, leaf in enumerate(leaves) if _is_array(leaf)]

    def rebuild(arrays: list[Any]) -> Any:
        out = list(leaves)
        for i, array in zip(where, arrays, strict=True):
            out[i] = array
        return jax.tree.unflatten(treedef, out)

    return [leaves[i] for i in where], rebuild


class PmapAdapter:
    """The functions of one pmap-style submission as the v0.6 runner calls them."""

    def __init__(self, init_optimizer_state: Callable[..., Any], update_params: Callable[..., Any],
                 prepare_for_eval: Callable[..., Any] | None, axis_name: str | None = None):
        self._init, self._update, self._prepare = init_optimizer_state, update_params, prepare_for_eval
        self._axis_name = axis_name or jax_sharding_utils.BATCH_AXIS
        self.num_devices = 0  # set per trial by init_optimizer_state (the runner calls it first)

    # --- layouts ------------------------------------------------------------------
    def _begin(self) -> None:
        """Fresh caches and jitted layout changes for a trial over the trial's devices."""
        devices = jax_sharding_utils.get_mesh().devices.flatten()
        self.num_devices = len(devices)
        # pmap's own output layout (split along a mesh axis named as its axis_name): inputs
        # in that layout from step 1 on, so step 2 does not compile again.
        self._use_layout(NamedSharding(Mesh(devices, (self._axis_name,)), PartitionSpec(self._axis_name)))
        self._layout_checked = False
        whole = jax_sharding_utils.get_replicate_sharding()  # the runner's layout
        self._unreplicate = jax.jit(
            lambda xs, average: [x.mean(axis=0).astype(x.dtype) if avg else x[0] for x, avg in zip(xs, average, strict=True)],
            static_argnums=1, out_shardings=whole,
        )
        # (what the runner holds, the replicated tree behind it), per kind of state.
        self._params: tuple[Any, Any] = (None, None)
        self._model_state: tuple[Any, Any] = (None, None)
        self._optimizer_state: Any = None  # the optimizer state as the submission last returned it

    def _use_layout(self, split: NamedSharding) -> None:
        n = self.num_devices
        self._split_sharding = split
        self._replicate = jax.jit(lambda xs: [jnp.broadcast_to(x, (n, *x.shape)) for x in xs], out_shardings=split)
        self._per_device = jax.jit(lambda xs: [x.reshape(n, x.shape[0] // n, *x.shape[1:]) for x in xs],
                                   out_shardings=split)

    def _adopt_output_layout(self, params: Any) -> None:
        """After the first step: lay inputs out as pmap returned params (an axis name the
        source did not state as a constant costs one more compilation, at step 2)."""
        self._layout_checked = True
        arrays, _ = _split_arrays(params)
        sharding = next((x.sharding for x in arrays if x.ndim >= 1), None)
        if isinstance(sharding, NamedSharding) and sharding != self._split_sharding:
            self._use_layout(sharding)

    def _to_replicated(self, held: Any, cached: tuple[Any, Any]) -> Any:
        if cached[0] is held and cached[1] is not None:
            return cached[1]
        arrays, rebuild = _split_arrays(held)
        return rebuild(self._replicate(arrays)) if arrays else held

    def _replicated_state(self, params: Any, model_state: Any) -> tuple[Any, Any]:
        return self._to_replicated(params, self._params), self._to_replicated(model_state, self._model_state)

    def _split_layout(self, optimizer_state: Any) -> Any:
        """``optimizer_state`` with its per-device arrays laid out as pmap returns them.

        The runner re-places the initial state (and a restored one) on all devices whole;
        pmap refuses that layout on several devices and would recompile on one.
        """
        arrays, rebuild = _split_arrays(optimizer_state)
        per_device = [i for i, x in enumerate(arrays) if x.ndim >= 1 and x.shape[0] == self.num_devices]
        moved = jax.device_put([arrays[i] for i in per_device], self._split_sharding)  # one transfer for all
        for i, x in zip(per_device, moved, strict=True):
            arrays[i] = x
        return rebuild(arrays)

    def _batch_per_device(self, batch: Any) -> Any:
        arrays, rebuild = _split_arrays(batch)
        bad = [x.shape for x in arrays if x.ndim == 0 or x.shape[0] % self.num_devices]
        if bad:
            raise ValueError(
                f"pmap-style submission: a batch array of shape {bad[0]} cannot be split over "
                f"{self.num_devices} devices; use a global batch size divisible by the device count (--batch-size)"
            )
        return rebuild(self._per_device(arrays))

    def _unreplicated(self, params: Any, model_state: Any) -> tuple[Any, Any]:
        """One jitted call: params from device 0, floating model state averaged over devices."""
        p_arrays, p_rebuild = _split_arrays(params)
        s_arrays, s_rebuild = _split_arrays(model_state)
        average = tuple([False] * len(p_arrays) + [bool(jnp.issubdtype(x.dtype, jnp.floating)) for x in s_arrays])
        out = self._unreplicate(p_arrays + s_arrays, average) if average else []
        return p_rebuild(out[: len(p_arrays)]), s_rebuild(out[len(p_arrays):])

    # --- the submission functions --------------------------------------------------
    def init_optimizer_state(self, workload: Any, model_params: Any, model_state: Any,
                             hyperparameters: Any, rng: Any) -> Any:
        devices = jax_sharding_utils.get_mesh().devices.size
        if devices != jax.local_device_count():
            raise ValueError(
                f"pmap-style submission: jax.pmap runs over all {jax.local_device_count()} local devices, "
                f"but this trial owns {devices}; give the trial the whole machine"
            )
        self._begin()
        params, state = self._replicated_state(model_params, model_state)
        self._params, self._model_state = (model_params, params), (model_state, state)
        return self._init(workload, params, state, hyperparameters, rng)

    def update_params(self, workload: Any, current_param_container: Any, current_params_types: Any,
                      model_state: Any, hyperparameters: Any, batch: Any, loss_type: Any, optimizer_state: Any,
                      eval_results: Any, global_step: int, rng: Any, **train_state: Any) -> Any:
        params, state = self._replicated_state(current_param_container, model_state)
        if optimizer_state is not self._optimizer_state:
            optimizer_state = self._split_layout(optimizer_state)
        new_optimizer_state, new_params, new_state = self._update(
            workload=workload, current_param_container=params, current_params_types=current_params_types,
            model_state=state, hyperparameters=hyperparameters, batch=self._batch_per_device(batch),
            loss_type=loss_type, optimizer_state=optimizer_state, eval_results=eval_results,
            global_step=global_step, rng=rng, **train_state,
        )
        self._optimizer_state = new_optimizer_state
        self._params, self._model_state = (new_params, new_params), (new_state, new_state)
        if not self._layout_checked:
            self._adopt_output_layout(new_params)
        return new_optimizer_state, new_params, new_state

    def prepare_for_eval(self, workload: Any, current_param_container: Any, current_params_types: Any,
                         model_state: Any, hyperparameters: Any, loss_type: Any, optimizer_state: Any,
                         eval_results: Any, global_step: int, rng: Any) -> Any:
        params, state = self._replicated_state(current_param_container, model_state)
        if self._prepare is not None:
            if optimizer_state is not self._optimizer_state:
                optimizer_state = self._split_layout(optimizer_state)
            optimizer_state, params, state = self._prepare(
                workload=workload, current_param_container=params, current_params_types=current_params_types,
                model_state=state, hyperparameters=hyperparameters, loss_type=loss_type,
                optimizer_state=optimizer_state, eval_results=eval_results, global_step=global_step, rng=rng,
            )
            self._optimizer_state = optimizer_state
        eval_params, eval_state = self._unreplicated(params, state)
        self._params, self._model_state = (eval_params, params), (eval_state, state)
        return optimizer_state, eval_params, eval_state


def drive_as(submission: Any, style: str, reason: str, axis_name: str | None = None) -> Any:
    """``submission`` (an ``algoperf.submission.Submission``) driven by ``style``'s convention."""
    if style != "pmap":
        return dataclasses.replace(submission, style=style, style_reason=reason)
    adapter = PmapAdapter(submission.init_optimizer_state, submission.update_params, submission.prepare_for_eval,
                          axis_name)
    return dataclasses.replace(
        submission, style=style, style_reason=reason, init_optimizer_state=adapter.init_optimizer_state,
        update_params=adapter.update_params, prepare_for_eval=adapter.prepare_for_eval,
    )
