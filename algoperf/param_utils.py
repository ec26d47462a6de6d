"""Parameter shapes and AlgoPerf parameter types, derived from a Flax parameter tree."""

from __future__ import annotations

from typing import Any

import jax

from algoperf import spec

_ATTENTION_PARTS = {
    "query": spec.ParameterType.ATTENTION_Q,
    "key": spec.ParameterType.ATTENTION_K,
    "value": spec.ParameterType.ATTENTION_V,
    "out": spec.ParameterType.ATTENTION_OUT,
    "qkv": spec.ParameterType.ATTENTION_QKV,
    "kv": spec.ParameterType.ATTENTION_KV,
}


def param_shapes(params: Any) -> Any:
    """The tree of ``spec.ShapeTuple`` for ``params``."""
    return jax.tree.map(lambda x: spec.ShapeTuple(x.shape), params)


def _is_batch_norm(module_names: list[str]) -> bool:
    return any("batchnorm" in n.lower().replace("_", "") or n.lower().startswith("bn") for n in module_names)


def _param_type(path: tuple[str, ...], leaf: Any) -> spec.ParameterType:
    name, modules = path[-1], list(path[:-1])
    parent = modules[-1].lower() if modules else ""
    if name == "embedding":  # flax.linen.Embed's table
        return spec.ParameterType.EMBEDDING
    if parent in _ATTENTION_PARTS:
        if name == "bias":
            return spec.ParameterType.ATTENTION_BIAS
        return _ATTENTION_PARTS[parent]
    if name in ("scale", "bias") and any("norm" in m.lower() or m.lower().startswith(("ln", "bn")) for m in modules[-1:]):
        batch_norm = _is_batch_norm(modules[-1:])
        if name == "scale":
            return spec.ParameterType.BATCH_NORM_SCALE if batch_norm else spec.ParameterType.LAYER_NORM_SCALE
        return spec.ParameterType.BATCH_NORM_BIAS if batch_norm else spec.ParameterType.LAYER_NORM_BIAS
    if name == "bias":
        return spec.ParameterType.BIAS
    if name == "kernel" and getattr(leaf, "ndim", 0) >= 3:
        return spec.ParameterType.CONV_WEIGHT
    return spec.ParameterType.WEIGHT


def param_types(params: Any) -> Any:
    """The tree of ``spec.ParameterType`` for ``params``, from Flax's naming conventions.

    kernel -> WEIGHT (CONV_WEIGHT for conv kernels), bias -> BIAS, scale/bias of a
    norm layer -> LAYER_NORM_* or BATCH_NORM_*, embedding -> EMBEDDING, the query/key/
    value/out projections of attention -> ATTENTION_*.
    """

    def leaf_type(key_path: tuple, leaf: Any) -> spec.ParameterType:
        path = tuple(str(getattr(k, "key", getattr(k, "name", k))) for k in key_path)
        return _param_type(path, leaf)

    return jax.tree_util.tree_map_with_path(leaf_type, params)


def num_params(params: Any) -> int:
    """Total number of scalars in ``params`` (arrays or ShapeDtypeStructs)."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def fast_init(module: Any, *args: Any) -> Any:
    """``module.init(*args)``, jitted with XLA's backend optimisations off.

    Init runs once, so its speed does not matter, but its compile does: eager Flax init
    compiles every op on its own, and a fully optimised compile of the jitted init
    (dozens of RNG and truncated-normal kernels) takes several times longer than at -O0.
    """
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(args)):
        return module.init(*args)  # under a transformation (e.g. eval_shape): nothing to compile
    lowered = jax.jit(module.init).lower(*args)
    options = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    return lowered.compile(compiler_options=options)(*args)
