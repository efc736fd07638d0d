"""Shared test fixtures: locations of optional data, skips for optional libraries, and a
test's own working folder (no test reads or writes the user's ``runs/``, caches or
current directory)."""

import contextlib
import os
import pathlib
import shutil
import signal
import tempfile

import numpy as np
import pytest

from minicnnrnn.core import backend
from minicnnrnn.core.errors import UserError

REPO = pathlib.Path(__file__).resolve().parents[1]
# The project's real reference data lives beside the clone (../shared/data); a
# user's clone does not have it, so tests that need it skip.
SHARED_DATA = pathlib.Path(os.environ.get("MINICNNRNN_SHARED_DATA", REPO.parent / "shared" / "data"))


# The suite never writes into the user's real cache (~/.cache/minicnnrnn): every test,
# and every command a test starts (subprocesses inherit the environment), uses one
# temporary cache for the whole session, removed at the end.
_SESSION_CACHE = tempfile.mkdtemp(prefix="minicnnrnn-test-cache-")
os.environ["MINICNNRNN_CACHE"] = _SESSION_CACHE
# Commands that tests start as subprocesses run in the test's temporary folder (below), so
# they find this checkout's package through PYTHONPATH, not through the current directory.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))


STRICT_SITE = pathlib.Path(__file__).resolve().parent / "strict_site"


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        choices=("numpy", "strict"),
        default="numpy",
        help="strict: run the suite on tests/strict_device/, a CuPy stand-in that refuses implicit "
        "host<->device conversions (selected as --backend cupy, in this process and in the commands "
        "tests start); tests marked host_only stay on NumPy",
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "host_only: numpy-only by nature (file formats, converters): never on a device")
    config.addinivalue_line("markers", "strict_device: needs --device strict (transfer counts)")
    if config.getoption("--device") == "strict":
        import strict_boundary
        import strict_device

        strict_device.install()
        strict_boundary.install()
        os.environ[backend.ENV_VAR] = "cupy"
        os.environ["MINICNNRNN_STRICT_DEVICE"] = "1"
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(STRICT_SITE), str(REPO)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        )


def strict_device_active():
    """True under ``--device strict`` (the stand-in is what ``cupy`` selects)."""
    return os.environ.get("MINICNNRNN_STRICT_DEVICE") == "1"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_CACHE, ignore_errors=True)


def cupy_available():
    """True when ``--backend cupy`` works here: real CuPy with a GPU, or the strict stand-in."""
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
def _own_working_folder(tmp_path, monkeypatch):
    """Every test runs in its own temporary folder: a command called with its default
    ``--out`` (``runs/<model>``) writes there, never into the user's ``runs/`` (the README's
    main job, run before the tests, leaves ``runs/cnn-rnn/`` in the clone)."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _numpy_backend_by_default(request, monkeypatch):
    """Each test starts on the backend chosen by $MINICNNRNN_BACKEND (numpy unless set; cupy,
    i.e. the stand-in, under --device strict); tests marked host_only always on NumPy."""
    wanted = os.environ.get(backend.ENV_VAR, "numpy").strip().lower() or "numpy"
    if request.node.get_closest_marker("host_only"):
        wanted = "numpy"
        monkeypatch.setenv(backend.ENV_VAR, "numpy")  # and so do the commands it starts
    if request.node.get_closest_marker("strict_device") and not strict_device_active():
        pytest.skip("needs the strict device stand-in: python -m pytest --device strict")
    backend.use(wanted if wanted in backend.BACKENDS else "numpy")
    yield


def dev(value):
    """Host arrays (alone or in dicts/lists/tuples) -> the selected backend (no-op on NumPy)."""
    if isinstance(value, np.ndarray):
        return backend.to_device(value)
    if isinstance(value, dict):
        return {k: dev(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        return type(value)(dev(v) for v in value)
    return value


def host(value):
    """Backend arrays (alone, in dicts/lists/tuples or namedtuples) -> NumPy."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return backend.to_host(value)
    if isinstance(value, dict):
        return {k: host(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*[host(v) for v in value])
    if isinstance(value, (list, tuple)):
        return type(value)(host(v) for v in value)
    return value


def one_line(fn):
    """Call ``fn()``, which must raise a one-line UserError; return its message."""
    with pytest.raises(UserError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    return message


@contextlib.contextmanager
def no_hang(seconds=10):
    """Fail (instead of hanging the suite) when the body blocks, e.g. on a FIFO."""

    def alarm(*_):
        raise TimeoutError(f"blocked for {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def markdown_rows(text, heading, columns):
    """{row title: [cells]} of the markdown table after the paragraph starting with
    ``heading`` in a benchmark's output; its header must be ``method`` and ``columns``."""
    block = text.split(heading, 1)[1].split("\n\n")[1]
    lines = [line.strip("|").split(" | ") for line in block.splitlines()]
    assert [c.strip() for c in lines[0]] == ["method", *columns]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in lines[2:]}
