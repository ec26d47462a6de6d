"""JAX port of the AlgoPerf v0.5 external-tuning entry lawa_ema: NAdamW + LAWA (ema of recent iterates).

The maths and the control flow are in lawa.py (LAWA, and the AlgoPerf functions both LAWA
entries share) and nadamw.py (NAdamW, warmup-cosine). As in the entry, data_selection hands
over the input queue itself and each update_params call runs several optimizer steps,
drawing their batches from it; the runner evaluates the average the call returns.
README: every difference.
"""

from algoperf.submissions.leaderboard_v05 import lawa

QUEUE = False

init_optimizer_state, update_params, data_selection, get_batch_size = lawa.submission_api(queue=QUEUE)
