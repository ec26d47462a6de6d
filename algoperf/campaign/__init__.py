"""A campaign: one submission on some workloads under a ruleset, as a list of trials.

``plan`` (rulesets -> trials, skip-if-finished, the in-process executor) and
``ray_executor`` (trials as Ray tasks: hardware requests, pinning, retries, progress).
"""
