"""The array backend: NumPy on the CPU (default) or CuPy on an NVIDIA GPU.

Every compute module writes its array code against ``xp``::

    from minicnnrnn.core.backend import xp
    y = xp.maximum(x, 0)

``xp`` stands for whichever library :func:`use` selected last (NumPy until a command's
``--backend``, whose default is the environment variable ``MINICNNRNN_BACKEND``, or a
call of :func:`use` says otherwise). All arrays of one computation must live on that backend; data moves
between host and device only through :func:`to_device` and :func:`to_host`, at
the edges of a program (loading, saving, printing).

Randomness that must agree between backends (weight initialisation, dropout
masks, shuffling) is drawn on the host from a ``numpy.random.Generator`` and
then moved with :func:`to_device`, so a seed gives the same numbers on both.
"""

import os

import numpy

from minicnnrnn.core.errors import UserError

BACKENDS = ("numpy", "cupy")
ENV_VAR = "MINICNNRNN_BACKEND"

_selected = numpy  # the module that ``xp`` forwards to
_name = "numpy"
_test_device = None  # test-only: a stand-in that "cupy" selects instead of CuPy


class BackendError(UserError):
    """The requested backend cannot be used on this machine."""


class _ArrayModule:
    """Forwards attribute access to the selected array library.

    Modules import ``xp`` once; switching the backend with :func:`use` later is
    still seen by them, because every ``xp.something`` looks the name up anew.
    """

    def __getattr__(self, attr):
        return getattr(_selected, attr)

    def __repr__(self):
        return f"<minicnnrnn.core.backend.xp -> {_name}>"


xp = _ArrayModule()


def _import_cupy():
    """Import CuPy and check that a CUDA device is visible; one-line errors otherwise."""
    try:
        import cupy
    except ImportError:
        raise BackendError(
            "backend 'cupy' requested but CuPy is not installed; "
            "install it with `pip install -e .[gpu]` (or cupy-cudaXXx for your CUDA) or use --backend numpy"
        ) from None
    except Exception as exc:  # a broken CuPy install fails in many ways (RuntimeError, OSError, ...)
        first_line = str(exc).splitlines()[0] if str(exc) else ""
        raise BackendError(
            f"backend 'cupy' requested but CuPy fails to import ({type(exc).__name__}: {first_line}); "
            "reinstall it or use --backend numpy"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDA driver missing or broken
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BackendError(
            f"backend 'cupy' requested but no CUDA device is usable ({first_line}); use --backend numpy"
        ) from None
    if count < 1:
        raise BackendError("backend 'cupy' requested but no CUDA device is visible; use --backend numpy")
    return cupy


def use(name):
    """Select the backend by name ('numpy' or 'cupy') and return the module.

    Raises BackendError (a one-line message) if the name is unknown or CuPy is
    not usable here.
    """
    global _selected, _name
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
    if name == "numpy":
        _selected = numpy
    else:
        _selected = _test_device if _test_device is not None else _import_cupy()
    _name = name
    return _selected


def _install_test_device(module):
    """Test-only hook: from now on ``use("cupy")`` selects ``module`` (a CuPy stand-in, see
    tests/strict_device/) instead of CuPy; ``None`` undoes it. Not a user backend."""
    global _test_device
    _test_device = module
    if module is None:
        use("numpy")
    else:
        use(from_environment() if from_environment() in BACKENDS else "numpy")  # cupy: the stand-in


def name():
    """The selected backend's name: 'numpy' or 'cupy'."""
    return _name


def is_cupy():
    return _name == "cupy"


def to_device(array, dtype=None):
    """Host array (or anything array-like) -> array on the selected backend."""
    if dtype is not None and not (_selected is not numpy and isinstance(array, _selected.ndarray)):
        array = numpy.asarray(array, dtype=dtype)  # convert on the host, before the copy
    return _selected.asarray(array, dtype=dtype)


def to_host(array):
    """Backend array -> numpy.ndarray (a no-op for NumPy arrays)."""
    if hasattr(array, "get"):  # cupy.ndarray
        return array.get()
    return numpy.asarray(array)


def params_to_device(params, dtype=None):
    """Dict of host arrays -> dict of backend arrays (same keys)."""
    return {k: to_device(v, dtype) for k, v in params.items()}


def params_to_host(params):
    """Dict of backend arrays -> dict of numpy arrays (same keys)."""
    return {k: to_host(v) for k, v in params.items()}


def synchronize():
    """Wait for queued GPU work (for timing); nothing to do on NumPy."""
    if _name == "cupy":
        _selected.cuda.Stream.null.synchronize()


def from_environment():
    """The backend name ``$MINICNNRNN_BACKEND`` asks for ('numpy' when unset). Read when a
    command starts (its ``--backend`` default), never at import: importing the package
    selects NumPy and touches no GPU library, whatever the environment says."""
    return os.environ.get(ENV_VAR, "numpy").strip().lower() or "numpy"
