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

import collections
import contextlib
import functools
import inspect
import types

import numpy

try:  # only its namespace is inspected; no array is ever made with it
    import cupy as _cupy
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None

COUNTS = collections.Counter()

# Functions whose results are host values in CuPy too (dtype helpers and the like).
_HOST_FUNCTIONS = {
    "can_cast",
    "dtype",
    "finfo",
    "iinfo",
    "isscalar",
    "issubdtype",
    "min_scalar_type",
    "ndim",
    "promote_types",
    "result_type",
}
# Functions whose output size depends on the data: CuPy synchronises to learn it.
_SYNC_FUNCTIONS = {"nonzero", "flatnonzero", "argwhere", "unique", "extract", "compress"}


def reset():
    """Zero the transfer counters."""
    COUNTS.clear()


def counts():
    """A copy of the counters: {'h2d': ..., 'd2h': ..., 'sync': ...}."""
    return {key: COUNTS[key] for key in ("h2d", "d2h", "sync")}


@contextlib.contextmanager
def counting():
    """``with counting() as c:`` -> c is filled with the transfers made inside the block."""
    before = counts()
    result = {}
    try:
        yield result
    finally:
        after = counts()
        result.update({k: after[k] - before[k] for k in after})


class StrictError(TypeError):
    """What the stand-in raises where CuPy would refuse (a TypeError, as CuPy's)."""


def _reject_host(value, where):
    """Raise if a numpy.ndarray hides in ``value`` (recursively through lists, tuples, dicts)."""
    if isinstance(value, numpy.ndarray):
        raise StrictError(
            f"{where}: got a numpy.ndarray {value.shape} {value.dtype}; "
            "device code needs device arrays (move it with backend.to_device)"
        )
    if isinstance(value, (list, tuple)):
        for item in value:
            _reject_host(item, where)
    elif isinstance(value, dict):
        for item in value.values():
            _reject_host(item, where)


def _unwrap(value):
    if isinstance(value, StrictArray):
        return value._a
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_unwrap(v) for v in value)
    if isinstance(value, dict):
        return {k: _unwrap(v) for k, v in value.items()}
    return value


def _check_dtype(array):
    if array.dtype.kind in "OUSV":
        raise StrictError(f"dtype {array.dtype} does not exist on the device (CuPy has no object/string arrays)")
    return array


def _wrap(value):
    if isinstance(value, numpy.ndarray):
        return StrictArray(_check_dtype(value))
    if isinstance(value, numpy.generic):
        return StrictArray(_check_dtype(numpy.asarray(value)))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _call(fn, where, args, kwargs):
    _reject_host(args, where)
    _reject_host(kwargs, where)
    out = kwargs.get("out")
    result = fn(*_unwrap(args), **_unwrap(kwargs))
    if out is not None and isinstance(out, StrictArray):
        return out
    return _wrap(result)


def _cupy_attr(path):
    """The CuPy object at a dotted path ('random.default_rng'), or None if CuPy lacks it;
    True when CuPy cannot be imported (nothing can be checked then)."""
    if _cupy is None:
        return True
    obj = _cupy
    for part in path.split("."):
        if not hasattr(obj, part):
            return None
        obj = getattr(obj, part)
    return obj


@functools.lru_cache(maxsize=None)
def _cupy_keywords(path):
    """Keyword names CuPy's function at ``path`` accepts, or None (any / unknown)."""
    obj = _cupy_attr(path)
    if obj is True or obj is None or not callable(obj):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return frozenset(sig.parameters)


def _device_function(fn, path):
    keywords = _cupy_keywords(path)

    @functools.wraps(fn)
    def call(*args, **kwargs):
        if keywords is not None:
            unknown = set(kwargs) - keywords
            if unknown:
                raise StrictError(f"cupy.{path} does not accept keyword(s) {sorted(unknown)}")
        if path.rsplit(".", 1)[-1] in _SYNC_FUNCTIONS:
            COUNTS["sync"] += 1
        return _call(fn, f"xp.{path}", args, kwargs)

    return call


class StrictUfunc:
    """A NumPy ufunc on device arrays (``xp.add``, ``xp.add.at``, ``xp.maximum.reduce``...)."""

    def __init__(self, ufunc, path):
        self._u = ufunc
        self._path = path

    def __call__(self, *args, **kwargs):
        return _call(self._u, f"xp.{self._path}", args, kwargs)

    def __getattr__(self, attr):
        if _cupy_attr(f"{self._path}.{attr}") is None:
            raise AttributeError(f"cupy.{self._path} has no attribute {attr!r}")
        value = getattr(self._u, attr)
        if callable(value):
            return lambda *a, **k: _call(value, f"xp.{self._path}.{attr}", a, k)
        return value

    def __repr__(self):
        return f"<strict ufunc {self._path}>"


class _Cuda:
    """``xp.cuda.Stream.null.synchronize()``: what backend.synchronize calls."""

    class Stream:
        class null:
            @staticmethod
            def synchronize():
                COUNTS["synchronize"] += 1


class StrictModule(types.ModuleType):
    """The ``xp`` of the stand-in: NumPy's functions, on :class:`StrictArray` only."""

    def __init__(self, name="strict_device", np_module=numpy, path=""):
        super().__init__(name)
        self._np = np_module
        self._path = path
        self._cache = {}

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if attr in self._cache:
            return self._cache[attr]
        path = f"{self._path}{attr}"
        if _cupy_attr(path) is None:
            raise AttributeError(f"cupy has no attribute {path!r} (the strict stand-in follows CuPy's namespace)")
        value = getattr(self._np, attr)
        if isinstance(value, numpy.ufunc):
            value = StrictUfunc(value, path)
        elif isinstance(value, types.ModuleType):
            value = StrictModule(f"{self.__name__}.{attr}", value, path + ".")
        elif isinstance(value, type) or not callable(value) or attr in _HOST_FUNCTIONS:
            pass  # dtypes, constants (pi, inf, newaxis), host helpers
        else:
            value = _device_function(value, path)
        self._cache[attr] = value
        return value

    # --- the edges: host <-> device -----------------------------------------------------
    def asarray(self, a, dtype=None, **kwargs):
        if isinstance(a, StrictArray):
            return a if dtype is None else a.astype(dtype, copy=False)
        if isinstance(a, (list, tuple)) and any(isinstance(v, StrictArray) for v in a):
            raise StrictError("xp.asarray of a list holding device arrays: use xp.stack")
        COUNTS["h2d"] += 1
        return StrictArray(_check_dtype(numpy.array(a, dtype=dtype, copy=True)))

    def array(self, a, dtype=None, copy=True, **kwargs):
        if isinstance(a, StrictArray):
            out = a._a.astype(dtype) if dtype is not None else a._a
            return StrictArray(out.copy() if copy else out)
        return self.asarray(a, dtype)

    def asnumpy(self, a):
        if isinstance(a, StrictArray):
            return a.get()
        return numpy.asarray(a)

    ndarray = None  # set below to StrictArray
    cuda = _Cuda


def _binary(name):
    op = getattr(numpy.ndarray, name)

    def method(self, other):
        if isinstance(other, (numpy.ndarray, list, tuple)):
            raise StrictError(
                f"operator {name} between a device array and a {type(other).__name__}: "
                "CuPy refuses host arrays here (move it with backend.to_device)"
            )
        result = op(self._a, _unwrap(other))
        if result is NotImplemented:
            return result
        return _wrap(result)

    method.__name__ = name
    return method


def _inplace(name):
    op = getattr(numpy.ndarray, name)

    def method(self, other):
        if isinstance(other, (numpy.ndarray, list, tuple)):
            raise StrictError(f"operator {name} with a {type(other).__name__}: CuPy refuses host arrays here")
        op(self._a, _unwrap(other))
        return self

    method.__name__ = name
    return method


def _key(key, where):
    _reject_host(key, where)
    return _unwrap(key)


def _is_bool_mask(key):
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, numpy.ndarray) and k.dtype == bool and k.ndim > 0 for k in keys)


class StrictArray:
    """A device array of the stand-in: a NumPy array inside, but not an ndarray outside."""

    __slots__ = ("_a",)
    __hash__ = None

    def __init__(self, array):
        assert isinstance(array, numpy.ndarray)
        self._a = array

    # --- explicit transfers -----------------------------------------------------------------
    def get(self, stream=None, order="C", out=None, blocking=True):
        COUNTS["d2h"] += 1
        return numpy.array(self._a, copy=True)

    def tolist(self):
        COUNTS["d2h"] += 1
        return self._a.tolist()

    def item(self, *args):
        COUNTS["d2h"] += 1
        return self._a.item(*args)

    # --- refusals -----------------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise StrictError(
            "implicit conversion of a device array to a NumPy array is not allowed "
            "(CuPy refuses it too); use backend.to_host / .get()"
        )

    def __array_function__(self, func, types, args, kwargs):
        raise StrictError(
            f"numpy.{func.__name__} called on a device array; use xp.{func.__name__} (or move it with backend.to_host)"
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        others = [x for x in inputs if not isinstance(x, StrictArray)]
        if method != "__call__" or not any(isinstance(x, numpy.generic) for x in others) or kwargs:
            raise StrictError(f"numpy.{ufunc.__name__} ({method}) called on a device array; use xp.{ufunc.__name__}")
        _reject_host(others, f"numpy.{ufunc.__name__}")
        return _wrap(getattr(ufunc, method)(*_unwrap(inputs)))

    # --- scalar conversions (CuPy: size-1 only; each is a device->host copy) --------------
    def _scalar(self, kind):
        if self._a.size != 1:
            raise TypeError(f"only size-1 device arrays can be converted to Python scalars ({kind})")
        COUNTS["d2h"] += 1
        return self._a.reshape(-1)[0]

    def __float__(self):
        return float(self._scalar("float"))

    def __int__(self):
        return int(self._scalar("int"))

    def __complex__(self):
        return complex(self._scalar("complex"))

    def __bool__(self):
        if self._a.size != 1:
            raise ValueError("the truth value of a device array with more than one element is ambiguous")
        return bool(self._scalar("bool"))

    def __format__(self, spec):
        COUNTS["d2h"] += 1
        return format(self._a if self._a.ndim else self._a[()], spec)

    def __repr__(self):
        COUNTS["d2h"] += 1
        return "strict_" + repr(self._a)

    def __str__(self):
        COUNTS["d2h"] += 1
        return str(self._a)

    # --- shape, indexing, iteration ----------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: StrictArray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield self[i]

    def __getitem__(self, key):
        key = _key(key, "device array indexing")
        if _is_bool_mask(key):
            COUNTS["sync"] += 1
        return _wrap(self._a[key])

    def __setitem__(self, key, value):
        key = _key(key, "device array indexed assignment (the index)")
        _reject_host(value, "device array indexed assignment (the value)")
        self._a[key] = _unwrap(value)

    def __getattr__(self, attr):
        if attr.startswith("__"):
            raise AttributeError(attr)
        if _cupy is not None and not hasattr(_cupy.ndarray, attr):
            raise AttributeError(f"cupy.ndarray has no attribute {attr!r}")
        value = getattr(self._a, attr)
        if callable(value):
            return lambda *a, **k: _call(value, f"ndarray.{attr}", a, k)
        return _wrap(value)

    def __reduce__(self):
        raise StrictError("pickling a device array: move it to the host first")


for _name in (
    "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ "
    "__rfloordiv__ __mod__ __rmod__ __pow__ __rpow__ __matmul__ __rmatmul__ __and__ __rand__ "
    "__or__ __ror__ __xor__ __rxor__ __lshift__ __rshift__ __lt__ __le__ __gt__ __ge__ __eq__ __ne__ "
    "__divmod__"
).split():
    setattr(StrictArray, _name, _binary(_name))
for _name in (
    "__iadd__ __isub__ __imul__ __itruediv__ __ifloordiv__ __imod__ __ipow__ __iand__ __ior__ __ixor__"
).split():
    setattr(StrictArray, _name, _inplace(_name))
for _name in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(StrictArray, _name, (lambda op: lambda self: StrictArray(op(self._a)))(getattr(numpy.ndarray, _name)))

StrictModule.ndarray = StrictArray
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
