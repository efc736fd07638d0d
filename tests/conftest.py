"""Shared test fixtures: locations of optional data and skips for optional libraries."""

import os
import pathlib
import shutil
import tempfile

import numpy as np
import pytest

from minicnnrnn.core import backend

REPO = pathlib.Path(__file__).resolve().parents[1]
# The project's real reference data lives beside the clone (../shared/data); a
# user's clone does not have it, so tests that need it skip.
SHARED_DATA = pathlib.Path(os.environ.get("MINICNNRNN_SHARED_DATA", REPO.parent / "shared" / "data"))


# The suite never writes into the user's real cache (~/.cache/minicnnrnn): every test,
# and every command a test starts (subprocesses inherit the environment), uses one
# temporary cache for the whole session, removed at the end.
_SESSION_CACHE = tempfile.mkdtemp(prefix="minicnnrnn-test-cache-")
os.environ["MINICNNRNN_CACHE"] = _SESSION_CACHE


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def cupy_available():
    try:
        backend.use("cupy")
    except backend.BackendError:
        return False
    finally:
        backend.use("numpy")
    return True


@pytest.fixture
def shared_data():
    """Path to ../shared/data, or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real reference data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def torch():
    """The torch module, or skip (torch is only a test oracle)."""
    return pytest.importorskip("torch")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _numpy_backend_by_default():
    """Each test starts on the backend chosen by $MINICNNRNN_BACKEND (numpy unless set)."""
    wanted = os.environ.get(backend.ENV_VAR, "numpy").strip().lower() or "numpy"
    backend.use(wanted if wanted in backend.BACKENDS else "numpy")
    yield
