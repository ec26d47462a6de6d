"""JAX ports of the AlgoPerf v0.5 external-tuning entries that were written for PyTorch only.

Each folder is one entry (``algoperf run --submission leaderboard_v05/<name>``); the
modules here hold what several ports share (see each folder's README for the differences
from the published original).
"""
