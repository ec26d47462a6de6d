"""Checks that many workload tests share."""

from __future__ import annotations

from typing import Any

import jax

from algoperf import spec


def sgd_step_losses(workload: spec.Workload, params: Any, batch: dict, learning_rate: float,
                    model_state: Any = None) -> tuple[float, float]:
    """The batch's mean training loss before and after one SGD step on it (AlgoPerf's API)."""

    @jax.jit
    def loss(p):
        out, _ = workload.model_fn(p, batch, model_state, spec.ForwardPassMode.TRAIN, jax.random.PRNGKey(3), True)
        terms = workload.loss_fn(batch["targets"], out, batch.get("weights"))
        return terms["summed"] / terms["n_valid_examples"]

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    stepped = jax.tree.map(lambda p, g: p - learning_rate * g, params, grads)
    return float(value), float(loss(stepped))


def nadamw_losses(workload: spec.Workload, params: Any, batch: dict, steps: int, model_state: Any = None,
                  dropout_rate: float = 0.0, learning_rate: float = 3e-3) -> list[float]:
    """The batch's mean training loss at each of ``steps`` jitted NAdamW steps on it (step i
    with rng PRNGKey(i)); a workload that learns shows them falling."""
    import optax

    opt = optax.nadamw(learning_rate)

    @jax.jit
    def step(p, s, rng):
        def loss(q):
            logits, _ = workload.model_fn(q, batch, model_state, spec.ForwardPassMode.TRAIN, rng, True, dropout_rate)
            out = workload.loss_fn(batch["targets"], logits, batch.get("weights"))
            return out["summed"] / out["n_valid_examples"]

        value, grads = jax.value_and_grad(loss)(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    opt_state, losses = opt.init(params), []
    for i in range(steps):
        params, opt_state, value = step(params, opt_state, jax.random.PRNGKey(i))
        losses.append(float(value))
    return losses


def assert_seeks_like_an_uninterrupted_stream(make_stream: Any, seeks: tuple[int, ...], length: int) -> None:
    """A resumed trial's train stream (issue #24): for each n in ``seeks``, a fresh stream
    from ``make_stream()`` after ``seek(n)`` gives batches n .. length-1 of an uninterrupted one,
    every array of every batch equal."""
    import numpy as np

    def host(batch: dict) -> dict:
        return jax.tree.map(np.asarray, batch)

    whole = make_stream()
    expected = [host(next(whole)) for _ in range(length)]
    for n in seeks:
        resumed = make_stream()
        resumed.seek(n)
        for k in range(n, length):
            got = host(next(resumed))
            assert jax.tree.structure(got) == jax.tree.structure(expected[k]), f"batch {k} after seek({n})"
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(expected[k]), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"batch {k} after seek({n})")


def workload_on_arrays(input_pipeline: Any, make_workload: Any, arrays: dict) -> Any:
    """Fixture body: the workload reading small generated ``arrays`` (through the pipeline's
    ``to_splits``) instead of its full cached splits, while the fixture lives."""
    import pytest

    splits = input_pipeline.to_splits(arrays)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(input_pipeline, "load", lambda data_dir=None: splits)
        yield make_workload()


def small_generated_data(input_pipeline: Any, sizes: dict[str, int], data_dir: str) -> Any:
    """Fixture body: (data_dir, arrays) of a dataset generated at the module constants
    ``sizes`` (e.g. NUM_TRAIN) in a temporary ``data_dir``, the user's cache untouched."""
    import pytest

    with pytest.MonkeyPatch.context() as patch:
        for name, value in sizes.items():
            patch.setattr(input_pipeline, name, value)
        yield data_dir, input_pipeline.load(data_dir)


def workload_on_files(make_workload: Any, data_dir: str) -> Any:
    """The workload with its three splits read from ``data_dir`` now."""
    w = make_workload()
    for split in ("train", "validation", "test"):
        w.split_arrays(split, data_dir)
    return w
