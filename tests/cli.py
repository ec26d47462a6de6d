"""Run the ``algoperf`` command line in a child process, as a user would.

A child that outlives its timeout is made to print every thread's Python stack
(``faulthandler`` on SIGABRT) before the test fails, so a hang in CI says where it hung.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest


def run_algoperf(*args: str, cwd: Path | None = None, timeout: float = 600,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m algoperf.cli ARGS`` with one terminal line per message (wide COLUMNS)."""
    full_env = {**os.environ, "COLUMNS": "2000", "PYTHONFAULTHANDLER": "1", **(env or {})}
    command = [sys.executable, "-m", "algoperf.cli", *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          cwd=cwd, env=full_env) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)  # faulthandler prints all threads' stacks, then it dies
            try:
                stdout, stderr = child.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                stdout, stderr = child.communicate()
            pytest.fail(f"algoperf {' '.join(args)} still running after {timeout:.0f} s; its stacks:\n"
                        f"{stderr[-12000:]}\n--- stdout ---\n{stdout[-3000:]}")
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
