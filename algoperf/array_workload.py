"""A base for workloads whose splits fit in host memory as dicts of numpy arrays.

A subclass states its data (``load_split``), its model (``init_model_fn``/``model_fn``),
its loss, and what one eval batch contributes (``eval_batch_outputs``); this class does
the batching, shuffling, device placement, padded evaluation and bookkeeping once.

Batches are global: the leading dimension is the global batch size, split over the
trial's devices with ``jax_sharding_utils.get_batch_dim_sharding()``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algoperf import jax_sharding_utils, param_utils, spec
from algoperf.data.epochs import EpochOrder, SeekableBatches
from algoperf.data.seeds import seed_from_rng
from algoperf.eval_loop import dispatch_then_fetch

Split = dict[str, np.ndarray]


def _num_examples(split: Split) -> int:
    return len(next(iter(split.values())))


def pad_batch(batch: Split, size: int) -> Split:
    """Pad every array to ``size`` rows with zeros; 'weights' marks the real rows."""
    n = _num_examples(batch)
    weights = batch.get("weights", np.ones(n, np.float32))
    out = {k: v for k, v in batch.items() if k != "weights"}
    if n < size:
        out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)]) for k, v in out.items()}
        weights = np.concatenate([weights, np.zeros(size - n, np.float32)])
    out["weights"] = weights.astype(np.float32)
    return out


class ShuffledBatches(SeekableBatches):
    """Batches of ``batch_size`` rows, reshuffled every epoch; the ragged tail is dropped.

    Epoch ``e``'s order is the permutation drawn from ``np.random.default_rng([seed, e])``
    (``algoperf.data.epochs``), so batch ``n`` is known without making batches ``0..n-1``:
    ``seek(n)`` jumps there (a resumed trial goes on at its data position at no cost).
    Within a batch the rows keep the split's order (sorted indices: contiguous reads).
    """

    def __init__(self, split: Split, batch_size: int, seed: int, repeat: bool = True):
        order = EpochOrder(_num_examples(split), batch_size, seed)
        super().__init__(order, lambda idx, b: {k: v[np.sort(idx)] for k, v in split.items()}, repeat)


def shuffled_batches(split: Split, batch_size: int, seed: int, repeat: bool = True) -> ShuffledBatches:
    """``ShuffledBatches(split, batch_size, seed, repeat)``."""
    return ShuffledBatches(split, batch_size, seed, repeat)


def ordered_batches(split: Split, batch_size: int, num_examples: int | None = None) -> Iterator[Split]:
    """The first ``num_examples`` rows in order, the last batch padded with weight 0."""
    n = min(_num_examples(split), num_examples or _num_examples(split))
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        yield pad_batch({k: v[start:stop] for k, v in split.items()}, batch_size)


# What a resumed trial asks of its train queue (``algoperf.runner.resume.CountingIterator.skip``);
# the wrappers below pass on whichever of these the stream they wrap has.
RESUME_METHODS = ("seek", "position", "restore")


def _pass_on_resume_methods(wrapper: Any, inner: Any) -> None:
    for name in RESUME_METHODS:
        if hasattr(inner, name):
            setattr(wrapper, name, getattr(inner, name))


class BatchQueue:
    """Host batches put on the devices, split along the batch dimension; at most
    ``num_batches`` of them. Keeps the host stream's ``seek`` / ``position`` / ``restore``."""

    def __init__(self, batches: Iterator[Split], num_batches: int | None = None):
        self._batches, self._left = batches, num_batches
        self._sharding = jax_sharding_utils.get_batch_dim_sharding()
        _pass_on_resume_methods(self, batches)

    def __iter__(self) -> BatchQueue:
        return self

    def __next__(self) -> dict[str, jax.Array]:
        if self._left is not None:
            if self._left <= 0:
                raise StopIteration
            self._left -= 1
        return jax.device_put(next(self._batches), self._sharding)


class MappedQueue:
    """``fn`` applied to each batch of ``queue``, keeping its ``seek`` / ``position`` / ``restore``."""

    def __init__(self, queue: Iterator[Any], fn: Any):
        self._queue, self._fn = queue, fn
        _pass_on_resume_methods(self, queue)

    def __iter__(self) -> MappedQueue:
        return self

    def __next__(self) -> Any:
        return self._fn(next(self._queue))


def _placed(batches: Iterator[Split], num_batches: int | None) -> BatchQueue:
    """Batches put on the devices, split along the batch dimension."""
    return BatchQueue(batches, num_batches)


class ArrayWorkload(spec.Workload):
    """Workload over in-memory arrays. Subclasses define the abstract members below."""

    # Which split plays 'eval_train': a fixed subset of the training set.
    _splits: dict[str, Split]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._splits = {}
        self._data_dir: str | None = None

    # --- what a subclass states ------------------------------------------------
    def load_split(self, split: str, data_dir: str | None) -> Split:
        """Arrays of 'train', 'validation' or 'test'; keys at least 'inputs', 'targets'."""
        raise NotImplementedError

    def eval_batch_outputs(
        self, params: spec.ParameterContainer, model_state: Any, batch: dict[str, jax.Array]
    ) -> dict[str, jax.Array]:
        """Jittable: what one padded eval batch contributes.

        The default reduction (``reduce_eval_outputs``) sums each key over batches and
        divides by the summed 'num_valid': return sums over real examples, e.g.
        {'loss': summed loss, 'accuracy': number correct, 'num_valid': sum of weights}.
        """
        raise NotImplementedError

    def reduce_eval_outputs(self, outputs: list[dict[str, np.ndarray]]) -> dict[str, float]:
        """Metrics of a split from its batches' outputs (override for corpus metrics)."""
        totals = {k: float(np.sum([np.sum(o[k]) for o in outputs])) for k in outputs[0]}
        num_valid = totals.pop("num_valid")
        return {k: v / num_valid for k, v in totals.items()}

    # --- data ------------------------------------------------------------------
    def split_arrays(self, split: str, data_dir: str | None = None) -> Split:
        """The (cached) arrays of ``split``; 'eval_train' is a prefix of 'train'."""
        key = "train" if split == "eval_train" else split
        # Remember the folder: example-count properties read splits without being told it.
        self._data_dir = data_dir or self._data_dir
        if key not in self._splits:
            self._splits[key] = self.load_split(key, self._data_dir)
        return self._splits[key]

    def _build_input_queue(
        self,
        data_rng: spec.RandomState,
        split: str,
        data_dir: str | None,
        global_batch_size: int,
        cache: bool | None = None,
        repeat_final_dataset: bool | None = None,
        num_batches: int | None = None,
    ) -> Iterator[dict[str, jax.Array]]:
        # Load now, not at the first next(): reading data is setup, not submission time.
        arrays = self.split_arrays(split, data_dir)
        if split == "train":
            batches = shuffled_batches(arrays, global_batch_size, seed_from_rng(data_rng))
        else:
            limit = self.num_eval_train_examples if split == "eval_train" else None
            batches = ordered_batches(arrays, global_batch_size, limit)
        return _placed(batches, num_batches)

    @property
    def num_train_examples(self) -> int:
        return _num_examples(self.split_arrays("train"))

    @property
    def num_validation_examples(self) -> int:
        return _num_examples(self.split_arrays("validation"))

    @property
    def num_test_examples(self) -> int | None:
        return _num_examples(self.split_arrays("test"))

    # --- model bookkeeping --------------------------------------------------------
    def _record_params(self, params: spec.ParameterContainer) -> None:
        """Set param shapes and types; call from ``init_model_fn``."""
        self._param_shapes = param_utils.param_shapes(params)
        self._param_types = param_utils.param_types(params)

    # --- evaluation --------------------------------------------------------------
    @functools.cached_property
    def _jitted_eval_batch(self):
        return jax.jit(self.eval_batch_outputs)

    def _eval_model_on_split(
        self,
        split: str,
        num_examples: int,
        global_batch_size: int,
        params: spec.ParameterContainer,
        model_state: Any,
        rng: spec.RandomState,
        data_dir: str | None,
        global_step: int = 0,
    ) -> dict[str, float]:
        del rng, global_step
        arrays = self.split_arrays(split, data_dir)
        sharding = jax_sharding_utils.get_batch_dim_sharding()
        outputs = dispatch_then_fetch(
            lambda batch: self._jitted_eval_batch(params, model_state, jax.device_put(batch, sharding)),
            ordered_batches(arrays, global_batch_size, num_examples),
        )
        return self.reduce_eval_outputs(outputs)


class ClassifierWorkload(ArrayWorkload):
    """An ArrayWorkload whose stateless Flax ``model`` maps 'inputs' to class logits.

    Subclasses set ``model`` (in ``__init__``), ``input_shape`` (one example's shape) and
    ``output_layer`` (the name of the last layer's parameters); loss is softmax
    cross-entropy and eval reports 'loss' and 'accuracy'.
    """

    model: Any
    input_shape: tuple[int, ...]
    output_layer: str
    loss_type = spec.LossType.SOFTMAX_CROSS_ENTROPY
    target_metric_name = "accuracy"

    def is_output_params(self, param_key: spec.ParameterKey) -> bool:
        return param_key == self.output_layer

    def init_model_fn(self, rng, dropout_rate=None, aux_dropout_rate=None):
        del dropout_rate, aux_dropout_rate
        params = self.model.init(rng, jnp.zeros((1, *self.input_shape), jnp.float32))["params"]
        self._record_params(params)
        return params, None

    def model_fn(self, params, augmented_and_preprocessed_input_batch, model_state, mode, rng, update_batch_norm, dropout_rate=None, use_running_average_bn=None):
        del mode, rng, update_batch_norm, dropout_rate, use_running_average_bn  # no batch norm here
        logits = self.model.apply({"params": params}, augmented_and_preprocessed_input_batch["inputs"])
        return logits, model_state

    def loss_fn(self, label_batch, logits_batch, mask_batch=None, label_smoothing=0.0):
        from algoperf import losses

        return losses.softmax_cross_entropy(label_batch, logits_batch, mask_batch, label_smoothing)

    def eval_batch_outputs(self, params, model_state, batch) -> dict[str, jax.Array]:
        logits, _ = self.model_fn(params, batch, model_state, spec.ForwardPassMode.EVAL, None, False)
        weights = batch["weights"]
        correct = jnp.sum((jnp.argmax(logits, -1) == batch["targets"]) * weights)
        loss = self.loss_fn(batch["targets"], logits, weights)["summed"]
        return {"loss": loss, "accuracy": correct, "num_valid": jnp.sum(weights)}
