"""The stand-in's ``xp``: NumPy's functions and ufuncs on StrictArray only (see the package docstring)."""

import functools
import inspect
import types

import numpy

from .arrays import COUNTS, StrictArray, StrictError, _call, _check_dtype, _cupy_attr

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

    ndarray = StrictArray
    cuda = _Cuda
