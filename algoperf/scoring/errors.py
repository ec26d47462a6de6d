"""The one exception type of the scoring package.

Every problem with the user's input (a log tree in an unexpected layout, a workload
without a target, a bad option value) is raised as :class:`ScoringError` with a one-line
message that names the offending path or workload and says how to fix it. The command
line prints that line and exits with status 2; library callers can catch it.
"""

from __future__ import annotations


class ScoringError(ValueError):
    """Bad scoring input, with a one-line message meant for the user."""
