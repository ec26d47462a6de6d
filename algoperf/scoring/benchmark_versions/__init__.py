"""Package data: the targets file of each AlgoPerf benchmark version (see ``versions.py``)."""
