"""The backend switch: selection, transfers, and the one-line error for CuPy."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import cupy_available

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp


def test_numpy_is_default_and_xp_forwards():
    env = {k: v for k, v in os.environ.items() if k != backend.ENV_VAR}
    fresh = subprocess.run(
        [sys.executable, "-c", "from minicnnrnn.core import backend; print(backend.name())"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert fresh.stdout.strip() == "numpy", fresh.stderr
    backend.use("numpy")
    assert backend.name() == "numpy"
    a = xp.arange(6).reshape(2, 3)
    assert isinstance(a, np.ndarray)
    assert xp.maximum(a - 2, 0).sum() == 6


def test_unknown_backend_is_rejected():
    with pytest.raises(backend.BackendError, match="unknown backend"):
        backend.use("jax")


def test_round_trip_host_device():
    x = np.arange(5, dtype=np.float32)
    y = backend.to_host(backend.to_device(x))
    np.testing.assert_array_equal(x, y)
    params = backend.params_to_host(backend.params_to_device({"U_l": x}, dtype=np.float64))
    assert params["U_l"].dtype == np.float64


@pytest.mark.skipif(cupy_available(), reason="CuPy is usable here; the error path needs it absent")
def test_cupy_missing_gives_one_line_error():
    with pytest.raises(backend.BackendError) as info:
        backend.use("cupy")
    message = str(info.value)
    assert "cupy" in message.lower() and "\n" not in message


@pytest.mark.skipif(cupy_available(), reason="CuPy is usable here; the error path needs it absent")
def test_cli_backend_cupy_without_cupy_exits_with_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "minicnnrnn.gradcheck", "--backend", "cupy"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in proc.stderr
