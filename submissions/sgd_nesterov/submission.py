"""SGD with Nesterov momentum, linear warmup and linear decay: AlgoPerf's target-setting Nesterov.

Update (Nesterov 1983; Sutskever et al. 2013, as optax.sgd(nesterov=True)), with mu =
1 - one_minus_beta1 and the weight decay added to the gradient before the momentum (an L2
penalty, as in AlgoPerf's target-setting runs), per step t:
    b_t = mu b_{t-1} + (g_t + wd p_{t-1})
    p_t = p_{t-1} - lr_t (mu b_t + g_t + wd p_{t-1})
The schedule, the options and everything but the optimizer's ``nesterov=True`` are the
heavy-ball submission's (``submissions/heavy_ball``), imported from it: one code, two
search spaces.
"""

from __future__ import annotations

from algoperf import spec
from algoperf.submissions.heavy_ball.submission import (  # noqa: F401 - the AlgoPerf API, as heavy_ball's
    BATCH_SIZES,
    data_selection,
    get_batch_size,
    learning_rate_schedule,
    make_optimizer,
    prepare_for_eval,
    update_params,
)


def init_optimizer_state(
    workload: spec.Workload,
    model_params: spec.ParameterContainer,
    model_state: spec.ModelAuxiliaryState,
    hyperparameters: spec.Hyperparameters,
    rng: spec.RandomState,
) -> spec.OptimizerState:
    del model_state, rng
    optimizer = make_optimizer(hyperparameters, workload.step_hint, nesterov=True)
    return optimizer.init(model_params), optimizer.update
