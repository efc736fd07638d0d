"""A strict stand-in for a GPU array library (test code only, never a user backend).

``python -m pytest --device strict`` runs the suite with this module installed as the
device behind ``--backend cupy`` (``backend._install_test_device``). Its arrays,
:class:`StrictArray`, wrap NumPy arrays but are *not* ``numpy.ndarray``, and they refuse
what CuPy refuses, so code that only works because NumPy and the device are the same
library fails here, on a machine without a GPU:

* ``numpy.asarray(a)`` / ``a.__array__()`` raise ``TypeError`` (CuPy: "Implicit conversion
  to a NumPy array is not allowed");
* a ``numpy.ndarray`` given to any ``xp`` function, ufunc, operator, index or indexed
  assignment raises ``TypeError`` (NumPy *scalars* and Python numbers are fine, as in CuPy);
* ``numpy.<function>(a)`` raises ``TypeError``: stricter than CuPy, which dispatches some of
  them through ``__array_function__``; the package must say ``xp.<function>`` itself;
  NumPy ufuncs are let through only where a NumPy scalar is an operand (``np.float32(2) * a``);
* reductions and full indexing return 0-d device arrays, not NumPy scalars;
* ``float(a)``, ``int(a)``, ``bool(a)``, ``a.item()``, ``a.tolist()``, formatting and
  printing work as in CuPy (size-1 arrays only for the scalar conversions), but each is a
  device->host copy and is counted; there is no ``__index__`` (CuPy has none), so a device
  array cannot index a Python list or a NumPy array;
* data moves only through ``xp.asarray``/``xp.array`` (host->device, counted) and
  ``a.get()``/``xp.asnumpy(a)`` (device->host, counted);
* object and string dtypes are refused (CuPy has neither).

Where CuPy can be imported (no GPU needed), the stand-in also refuses every name that
CuPy's namespace or ``cupy.ndarray`` lacks, and keyword arguments that CuPy's Python-level
function signatures do not accept.

``COUNTS`` holds the transfers: ``h2d`` (host->device), ``d2h`` (device->host, explicit or
scalar), and ``sync`` (operations whose result size depends on the data, ``nonzero`` and
boolean-mask indexing: CuPy copies a count back to the host for those).
"""

from .arrays import COUNTS, StrictArray, StrictError, _cupy, counting, counts, reset
from .namespace import StrictModule, StrictUfunc

__all__ = ["COUNTS", "StrictArray", "StrictError", "StrictModule", "StrictUfunc", "counting", "counts", "reset"]
__all__ += ["_cupy", "install", "is_device", "to_host_tree", "xp"]

xp = StrictModule()


def is_device(value):
    return isinstance(value, StrictArray)


def to_host_tree(value):
    """Device arrays anywhere in lists/tuples/dicts -> NumPy (for test assertions; counted)."""
    if isinstance(value, StrictArray):
        return value.get()
    if isinstance(value, list):
        return [to_host_tree(v) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(to_host_tree(v) for v in value)
    if isinstance(value, tuple):
        return type(value)(*[to_host_tree(v) for v in value])
    if isinstance(value, dict):
        return {k: to_host_tree(v) for k, v in value.items()}
    return value


def install():
    """Make ``--backend cupy`` (and $MINICNNRNN_BACKEND=cupy) select this stand-in."""
    from minicnnrnn.core import backend

    backend._install_test_device(xp)
    return xp
