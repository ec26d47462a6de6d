"""One trial: a submission trains a workload under AlgoPerf's timing rules.

``trial`` (config, result, the loop, ``run_trial``), ``clock`` (what the submission is
charged), ``trial_log`` (AlgoPerf's trial folder, written and read: the one reader of
``eval_measurements.csv``), ``checkpoint`` (resume after a preemption), ``failure`` (why a
trial failed, in one line).
"""
