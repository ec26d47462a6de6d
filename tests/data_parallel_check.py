"""One training step of each full-scale workload on 1 device and on 8, compared.

Run by ``tests/test_data_parallel.py`` in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` (the flag must precede JAX's
start). Each ``tests/test_fullscale_<name>.py`` provides ``data_parallel_case()``, which
returns a small configuration of its workload and one host batch (numpy, global batch a
multiple of 8). The step is the one every submission takes (AlgoPerf's API): ``model_fn``
in train mode with batch-norm updates, ``loss_fn`` over the batch's weights, gradients,
an SGD update; on 8 devices the batch is split along its leading dimension and the
parameters are replicated, exactly as a trial places them.

Usage: python -m tests.data_parallel_check OUT.json NAME [NAME ...]
"""

from __future__ import annotations

import importlib
import json
import sys
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, spec


def one_step(workload: spec.Workload, host_batch: dict, devices: list) -> dict[str, np.ndarray]:
    with jax_sharding_utils.use_devices(devices):
        params, model_state = workload.init_model_fn(jax.random.key(0), dropout_rate=0.0, aux_dropout_rate=0.0)
        batch = jax_sharding_utils.shard_along_batch_dim(host_batch)

        # Everything the step reads is an argument: a closed-over batch would be a compile-time
        # constant, and XLA would run the whole step on one device.
        def loss(params, model_state, batch):
            logits, new_state = workload.model_fn(
                params, batch, model_state, spec.ForwardPassMode.TRAIN, jax.random.key(1),
                update_batch_norm=True, dropout_rate=0.0)
            terms = workload.loss_fn(batch["targets"], logits, batch.get("weights"), label_smoothing=0.0)
            return terms["summed"] / terms["n_valid_examples"], new_state

        step = jax.jit(jax.value_and_grad(loss, has_aux=True)).lower(params, model_state, batch).compile()
        if len(devices) > 1:  # the compiled step really combines the devices' gradients
            hlo = step.as_text()
            assert "all-reduce" in hlo or "reduce-scatter" in hlo, "the step does not combine the devices' gradients"
        (value, new_state), grads = step(params, model_state, batch)
        updated = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
        leaves = {"loss": value, "params": updated, "model_state": new_state}
        flat = jax.tree_util.tree_flatten_with_path(leaves)[0]
        return {jax.tree_util.keystr(path): np.asarray(jax.device_get(x), np.float64) for path, x in flat
                if isinstance(x, jax.Array | np.ndarray) and jnp.issubdtype(x.dtype, jnp.floating)}


def compare(name: str) -> dict:
    module = importlib.import_module(f"tests.test_fullscale_{name}")
    workload, host_batch = module.data_parallel_case()
    one = one_step(workload, host_batch, jax.devices()[:1])
    eight = one_step(workload, host_batch, jax.devices()[:8])
    worst = max(float(np.max(np.abs(one[k] - eight[k])) / (1e-3 + float(np.max(np.abs(one[k]))))) for k in one)
    return {"loss_1": float(one["['loss']"]), "loss_8": float(eight["['loss']"]), "keys": sorted(one),
            "same_keys": sorted(one) == sorted(eight), "worst_relative_difference": worst,
            "batch_norm_state": any("model_state" in k for k in one)}


def main(out: str, names: list[str]) -> None:
    assert len(jax.devices()) >= 8, "run with XLA_FLAGS=--xla_force_host_platform_device_count=8"
    results = {}
    for name in names:
        try:
            results[name] = compare(name)
        except Exception:  # noqa: BLE001 - reported per workload by the test
            results[name] = {"error": traceback.format_exc()}
    with open(out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
