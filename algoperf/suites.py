"""Named sets of workloads."""

SUITES: dict[str, list[str]] = {
    # One workload per AlgoPerf modality, each trains to target in about a minute on 2 CPU cores.
    "small": ["mnist1d", "charlm", "ctr", "molgraph", "translate", "mri", "speech"],
}
