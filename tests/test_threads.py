"""``--threads``: how many BLAS threads a command uses (core/threads.py)."""

import subprocess
import sys

import numpy as np  # noqa: F401  (loads the BLAS library that threadpoolctl inspects)
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from minicnnrnn.core import threads


@pytest.fixture
def no_thread_env(monkeypatch):
    for name in threads.THREAD_ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_auto_never_depends_on_the_load(no_thread_env, monkeypatch):
    """Same command, same seed: the same thread count on an idle and on a busy machine
    (the count moves the metrics, docs/training.md), so the same metrics.json."""
    monkeypatch.setattr(threads, "cores", lambda: 8)
    for load in (0.1, 3.0, 40.0):
        monkeypatch.setattr(threads.os, "getloadavg", lambda load=load: (load, load, load))
        assert threads.choose("auto") == 1
        assert threads.choose("auto", big_matrices=True) == 8  # large products pay on every core


def test_an_explicit_choice_wins(no_thread_env, monkeypatch):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (3.0, 2.0, 1.0))
    assert threads.choose(3) == 3
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert threads.choose("auto") is None  # the user's environment already decided


def test_apply_limits_blas():
    blas = [info for info in threadpool_info() if info["user_api"] == "blas"]
    if not blas:
        pytest.skip("threadpoolctl sees no BLAS library here")
    with threadpool_limits(limits=None):
        assert threads.apply(1) == 1
        assert all(info["num_threads"] == 1 for info in threadpool_info() if info["user_api"] == "blas")
        described = threads.describe()
        assert described["threads"] == 1 and described["blas"].startswith(blas[0]["internal_api"])


@pytest.mark.parametrize("bad", ["0", "many", "-2"])
def test_bad_threads_is_one_line(bad):
    run = subprocess.run(
        [sys.executable, "-m", "minicnnrnn.gradcheck", "--threads", bad, "--only", "tied"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1 and "--threads" in run.stderr
