"""The stand-in's arrays and its transfer counters (see the package docstring)."""

import collections
import contextlib

import numpy

try:  # only its namespace is inspected; no array is ever made with it
    import cupy as _cupy
except Exception:  # pragma: no cover - depends on the machine
    _cupy = None

COUNTS = collections.Counter()


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
