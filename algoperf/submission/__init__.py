"""A submission: AlgoPerf's functions in a Python module, loaded, validated and sized.

``loading`` (find, import, validate), ``search_space`` (AlgoPerf's tuning search spaces,
quasi-random points), ``batch_size`` (which batch size a trial uses, and why).
"""

from algoperf.submission.loading import Submission, SubmissionError, load_submission

__all__ = ["Submission", "SubmissionError", "load_submission"]
