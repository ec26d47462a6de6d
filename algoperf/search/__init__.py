"""`algoperf search`: discover training algorithms with the benchmark as the fitness (docs/search.md).

language (programs) -> compile (optax) -> check (static check, hash) -> mutate / proposers
-> evolution (regularised evolution, funnel; cmaes: the constants of one program)
-> evaluate (trials through the campaign executors) -> fitness (profiles, algoperf.scoring)
-> state (checkpoints) / records (MLflow) -> export (a submission folder).
"""
