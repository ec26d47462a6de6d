"""The interface: workloads, submissions and the types between them.

Drop-in compatible with AlgoPerf v0.6's ``algoperf.spec`` (JAX side): an AlgoPerf
submission that does ``from algoperf import spec`` finds every public name it uses here.
The submission functions are documented at the bottom as stubs; ``algoperf.submission.loading``
checks a user's module against them.

Beyond AlgoPerf, ``Workload`` carries a little metadata used by the harness (its registry
name, where its data comes from, a short description) and implements the target checks
once, from ``target_metric_name`` and the metric's direction.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Iterator
from typing import Any

import jax

from algoperf import target_rule


class LossType(enum.Enum):
    SOFTMAX_CROSS_ENTROPY = 0
    SIGMOID_CROSS_ENTROPY = 1
    MEAN_SQUARED_ERROR = 2
    CTC_LOSS = 3
    MEAN_ABSOLUTE_ERROR = 4


class ForwardPassMode(enum.Enum):
    TRAIN = 0
    EVAL = 1


class ParameterType(enum.Enum):
    WEIGHT = 0
    BIAS = 1
    CONV_WEIGHT = 2
    BATCH_NORM_SCALE = 3
    BATCH_NORM_BIAS = 4
    LAYER_NORM_SCALE = 5
    LAYER_NORM_BIAS = 6
    EMBEDDING = 7
    ATTENTION_Q = 8
    ATTENTION_K = 9
    ATTENTION_V = 10
    ATTENTION_OUT = 11
    ATTENTION_QKV = 12
    ATTENTION_KV = 13
    ATTENTION_BIAS = 14


Tensor = Any


class ShapeTuple:
    """A parameter's shape, wrapped so that pytree maps treat it as one leaf."""

    def __init__(self, shape_tuple: tuple[int, ...]):
        self.shape_tuple = tuple(shape_tuple)

    def __repr__(self) -> str:
        return f"ShapeTuple({self.shape_tuple})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ShapeTuple) and self.shape_tuple == other.shape_tuple

    def __hash__(self) -> int:
        return hash(self.shape_tuple)


Shape = tuple[int, ...] | ShapeTuple
ParameterKey = str
ParameterShapeTree = dict[str, Any]
ParameterContainer = dict[ParameterKey, Any]
ParameterTypeTree = dict[ParameterKey, Any]
RandomState = Any
OptimizerState = dict[str, Any] | tuple[Any, Any] | Any
Hyperparameters = Any
Timing = int
Steps = int
ModelAuxiliaryState = Any
ModelInitState = tuple[ParameterContainer, ModelAuxiliaryState]
UpdateReturn = tuple[OptimizerState, ParameterContainer, ModelAuxiliaryState]

# Whether a target is reached, and which direction a metric is better in: one rule for
# the runner, tracking, scoring and target setting (algoperf.target_rule).
higher_is_better = target_rule.higher_is_better


def reaches_target(value: float, target: float, metric_name: str) -> bool:
    """Whether ``value`` of ``metric_name`` reaches ``target``: ``algoperf.target_rule.reached``."""
    return target_rule.reached(metric_name, value, target)


class DataNotFoundError(FileNotFoundError):
    """A workload's data is not where it was told to look; the message says how to get it."""


class TrainingCompleteError(Exception):
    """Raised by a submission's ``update_params`` to end training; a final eval follows."""


class Workload(metaclass=abc.ABCMeta):
    """A model, its data, its loss and metrics, its target and its time budget.

    The abstract surface is AlgoPerf v0.6's. JAX input queues yield global batches
    (leading dimension = global batch size) placed with ``jax_sharding_utils``'s batch
    sharding over the trial's devices.
    """

    # Harness metadata (not in AlgoPerf). ``data_source`` is "real", "generated" or
    # "download" (needs --data-dir).
    name: str = ""
    description: str = ""
    data_source: str = "real"
    # The base workload of a variant (None for a base workload).
    base_workload: str | None = None
    # Batch sizes (algoperf.submission.batch_size has the rule): the AlgoPerf workload this one
    # stands in for (e.g. ctr -> criteo1tb), the batch size AlgoPerf's baselines use there,
    # and this workload's own default (the size its targets were set with).
    reference_workload: str | None = None
    reference_batch_size: int | None = None
    default_batch_size: int | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs
        self._param_shapes: ParameterShapeTree | None = None
        self._param_types: ParameterTypeTree | None = None
        self._eval_iters: dict[str, Iterator] = {}
        self.metrics_logger = None

    # --- targets -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def target_metric_name(self) -> str:
        """The validation/test metric the target is stated in, e.g. ``accuracy``."""

    def has_reached_validation_target(self, eval_result: dict[str, float]) -> bool:
        key = f"validation/{self.target_metric_name}"
        return reaches_target(eval_result[key], self.validation_target_value, key)

    def has_reached_test_target(self, eval_result: dict[str, float]) -> bool:
        key = f"test/{self.target_metric_name}"
        if key not in eval_result:
            return True  # a workload without a test split has nothing to reach there
        return reaches_target(eval_result[key], self.test_target_value, key)

    @property
    @abc.abstractmethod
    def validation_target_value(self) -> float: ...

    @property
    @abc.abstractmethod
    def test_target_value(self) -> float: ...

    # --- data ----------------------------------------------------------------
    @abc.abstractmethod
    def _build_input_queue(
        self,
        data_rng: RandomState,
        split: str,
        data_dir: str | None,
        global_batch_size: int,
        cache: bool | None = None,
        repeat_final_dataset: bool | None = None,
        num_batches: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Batches of ``split``: dicts with at least 'inputs' and 'targets'.

        The only workload function a submission may not call.
        """

    def attach_metrics_logger(self, metrics_logger: Any) -> None:
        self.metrics_logger = metrics_logger

    @property
    @abc.abstractmethod
    def loss_type(self) -> LossType: ...

    @property
    @abc.abstractmethod
    def num_train_examples(self) -> int: ...

    @property
    @abc.abstractmethod
    def eval_batch_size(self) -> int: ...

    @property
    @abc.abstractmethod
    def num_eval_train_examples(self) -> int: ...

    @property
    @abc.abstractmethod
    def num_validation_examples(self) -> int: ...

    @property
    @abc.abstractmethod
    def num_test_examples(self) -> int | None: ...

    @property
    def train_mean(self) -> Any:
        return 0.0

    @property
    def train_stddev(self) -> Any:
        return 1.0

    # --- budget --------------------------------------------------------------
    @property
    @abc.abstractmethod
    def max_allowed_runtime_sec(self) -> float: ...

    @property
    @abc.abstractmethod
    def eval_period_time_sec(self) -> float: ...

    @property
    @abc.abstractmethod
    def step_hint(self) -> int:
        """About how many steps the target-setting run took within the budget."""

    # --- model ---------------------------------------------------------------
    @property
    def param_shapes(self) -> ParameterShapeTree:
        if self._param_shapes is None:
            raise ValueError("call workload.init_model_fn() before workload.param_shapes")
        return self._param_shapes

    @property
    def model_params_types(self) -> ParameterTypeTree:
        if self._param_types is None:
            raise ValueError("call workload.init_model_fn() before workload.model_params_types")
        return self._param_types

    @abc.abstractmethod
    def is_output_params(self, param_key: ParameterKey) -> bool:
        """Whether ``param_key`` names the output layer's parameters."""

    @abc.abstractmethod
    def init_model_fn(
        self,
        rng: RandomState,
        dropout_rate: float | None = None,
        aux_dropout_rate: float | None = None,
    ) -> ModelInitState:
        """Return (initial_params, initial_model_state); sets param shapes and types."""

    @abc.abstractmethod
    def model_fn(
        self,
        params: ParameterContainer,
        augmented_and_preprocessed_input_batch: dict[str, Tensor],
        model_state: ModelAuxiliaryState,
        mode: ForwardPassMode,
        rng: RandomState,
        update_batch_norm: bool,
        dropout_rate: float | None = None,
        use_running_average_bn: bool | None = None,
    ) -> tuple[Tensor, ModelAuxiliaryState]:
        """Return (logits_batch, new_model_state).

        ``use_running_average_bn`` (AlgoPerf's): normalise with the running averages even
        while ``update_batch_norm``; None means ``not update_batch_norm``.
        """

    def output_activation_fn(self, logits_batch: Tensor, framework: str = "jax") -> Tensor:
        """Logits to probabilities, by ``loss_type``."""
        if framework != "jax":
            raise ValueError(f"only framework='jax' is supported here, got {framework!r}")
        activation = {
            LossType.SOFTMAX_CROSS_ENTROPY: jax.nn.softmax,
            LossType.CTC_LOSS: jax.nn.softmax,
            LossType.SIGMOID_CROSS_ENTROPY: jax.nn.sigmoid,
            LossType.MEAN_SQUARED_ERROR: lambda z: z,
            LossType.MEAN_ABSOLUTE_ERROR: lambda z: z,
        }[self.loss_type]
        return activation(logits_batch)

    @abc.abstractmethod
    def loss_fn(
        self,
        label_batch: Tensor,
        logits_batch: Tensor,
        mask_batch: Tensor | None = None,
        label_smoothing: float = 0.0,
    ) -> dict[str, Tensor]:
        """Return {'summed', 'n_valid_examples', 'per_example'}; no regularisation."""

    # --- evaluation ----------------------------------------------------------
    @abc.abstractmethod
    def _eval_model_on_split(
        self,
        split: str,
        num_examples: int,
        global_batch_size: int,
        params: ParameterContainer,
        model_state: ModelAuxiliaryState,
        rng: RandomState,
        data_dir: str | None,
        global_step: int = 0,
    ) -> dict[str, float]:
        """Metrics of the model on ``split`` ('eval_train', 'validation', 'test')."""

    def eval_model(
        self,
        global_batch_size: int,
        params: ParameterContainer,
        model_state: ModelAuxiliaryState,
        rng: RandomState,
        data_dir: str | None,
        imagenet_v2_data_dir: str | None,
        global_step: int,
    ) -> dict[str, float]:
        """Evaluate on the eval-train subset, validation and (if any) test split.

        Keys are ``train/<metric>``, ``validation/<metric>``, ``test/<metric>`` plus
        ``validation/num_examples`` and ``test/num_examples``, as in AlgoPerf's CSV.
        """
        results: dict[str, float] = {}
        splits = [
            ("eval_train", "train", self.num_eval_train_examples),
            ("validation", "validation", self.num_validation_examples),
        ]
        if self.num_test_examples:
            splits.append(("test", "test", self.num_test_examples))
        for split, prefix, num_examples in splits:
            metrics = self._eval_model_on_split(
                split,
                num_examples=num_examples,
                global_batch_size=global_batch_size,
                params=params,
                model_state=model_state,
                rng=rng,
                data_dir=imagenet_v2_data_dir if split == "test" and imagenet_v2_data_dir else data_dir,
                global_step=global_step,
            )
            results.update({f"{prefix}/{k}": float(v) for k, v in metrics.items()})
            if prefix != "train":
                results[f"{prefix}/num_examples"] = num_examples
        return results


# ---------------------------------------------------------------------------------
# The submission: five functions a submission module defines (prepare_for_eval is
# optional). Their signatures below are the contract ``algoperf.submission.loading`` checks.
# ---------------------------------------------------------------------------------

InitOptimizerFn = Callable[..., OptimizerState]
UpdateParamsFn = Callable[..., UpdateReturn]
PrepareForEvalFn = Callable[..., UpdateReturn]
DataSelectionFn = Callable[..., dict[str, Tensor]]


def init_optimizer_state(
    workload: Workload,
    model_params: ParameterContainer,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    rng: RandomState,
) -> OptimizerState:
    """Return the initial optimizer state (untimed, like model initialisation)."""
    raise NotImplementedError


def update_params(
    workload: Workload,
    current_param_container: ParameterContainer,
    current_params_types: ParameterTypeTree,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    batch: dict[str, Tensor],
    loss_type: LossType,
    optimizer_state: OptimizerState,
    eval_results: list[tuple[int, dict[str, float]]],
    global_step: int,
    rng: RandomState,
    train_state: dict[str, Any] | None = None,
) -> UpdateReturn:
    """One training step: return (optimizer_state, params, model_state).

    May raise TrainingCompleteError. ``train_state`` (a read-only mapping of the
    runner's bookkeeping) is passed only when the signature names it.
    """
    raise NotImplementedError


def prepare_for_eval(
    workload: Workload,
    current_param_container: ParameterContainer,
    current_params_types: ParameterTypeTree,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    loss_type: LossType,
    optimizer_state: OptimizerState,
    eval_results: list[tuple[int, dict[str, float]]],
    global_step: int,
    rng: RandomState,
) -> UpdateReturn:
    """Optional, timed: return (optimizer_state, params, model_state) to evaluate."""
    raise NotImplementedError


def data_selection(
    workload: Workload,
    input_queue: Iterator[dict[str, Any]],
    optimizer_state: OptimizerState,
    current_param_container: ParameterContainer,
    model_state: ModelAuxiliaryState,
    hyperparameters: Hyperparameters,
    global_step: int,
    rng: RandomState,
) -> dict[str, Tensor]:
    """Return the next training batch (timed); usually ``next(input_queue)``."""
    raise NotImplementedError


def get_batch_size(workload_name: str) -> int:
    """Return the global batch size for ``workload_name``."""
    raise NotImplementedError
