"""The host/device edge between test code and the package's compute functions (``--device strict``).

Many unit tests are written NumPy-style: they build inputs with a NumPy generator, call a
layer (``lstm.lstm_forward(w, mask, p, "relu")``) and compare with ``np.testing``. On a device
those calls need ``backend.to_device`` / ``to_host`` around them. Rather than rewrite every
call, :func:`install` wraps the functions and methods of the *compute* modules (those whose
arguments are device arrays: layers/, the model parts of rnn/ and cnn/,
training/optim; not core/numgrad, which perturbs the very arrays it is given and takes host or
device arrays): when, and only when, the caller is test code, host arrays among the
arguments are moved to the device, the call runs on the stand-in, changes the function
made to its array arguments are copied back into the caller's arrays (in-place APIs such
as an optimiser step keep working), and device results come back
as host arrays (a result that *is* one of the moved arguments comes back as the caller's
own array). A function returned to test code (the one-step decoder of ``make_step``) is
wrapped the same way.

Package code calling package code is never adapted: the caller check looks at the calling
frame's file (tests/ or tutorials/), so every implicit host<->device mix *inside* the package still raises. Edge
modules that take host data by contract (training.kinds.predict_sets, loop, predict,
extract, datasets, evaluation...) are not wrapped at all: their tests must pass what their
contract says, so a missing ``to_device`` in them is still caught. Calls whose arguments are
all device arrays already (tests written the device way) are left alone, results included.
"""

import functools
import importlib
import inspect
import os

import numpy
import strict_device

from minicnnrnn.core import backend

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# Callers whose host arrays are moved: test code, and the tutorials (NumPy-style teaching scripts).
CALLER_DIRS = (TESTS_DIR + os.sep, os.path.join(os.path.dirname(TESTS_DIR), "tutorials") + os.sep)
_SKIP_FILES = {os.path.join(TESTS_DIR, "strict_boundary.py")}
_SKIP_DIRS = (os.path.join(TESTS_DIR, "strict_device") + os.sep,)

# Modules whose public functions take and return device arrays.
COMPUTE_MODULES = (
    "minicnnrnn.layers.activations",
    "minicnnrnn.layers.conv",
    "minicnnrnn.layers.classifier",
    "minicnnrnn.layers.dense",
    "minicnnrnn.layers.depthwise",
    "minicnnrnn.layers.dropout",
    "minicnnrnn.layers.loss",
    "minicnnrnn.layers.pointwise",
    "minicnnrnn.layers.pool",
    "minicnnrnn.layers.winograd",
    "minicnnrnn.rnn.embedding",
    "minicnnrnn.rnn.lstm",
    "minicnnrnn.rnn.projection",
    "minicnnrnn.rnn.model",
    "minicnnrnn.rnn.semantic",
    "minicnnrnn.paths.beam_search",
    "minicnnrnn.baselines.no_rnn",
    "minicnnrnn.baselines.classifiers",
    "minicnnrnn.cnn.vgg",
    "minicnnrnn.cnn.efficientnet",
    "minicnnrnn.cnn.backbones",
    "minicnnrnn.training.optim",
)
_HOST_FUNCTIONS = {
    # take or return host data by contract (initialisers draw on the host)
    ("minicnnrnn.rnn.model", "init_params"),
    ("minicnnrnn.rnn.semantic", "sr_init_params"),
    ("minicnnrnn.rnn.semantic", "stage_at"),
    ("minicnnrnn.baselines.no_rnn", "init_no_rnn"),
    ("minicnnrnn.layers.classifier", "init_classifier"),
    ("minicnnrnn.cnn.vgg", "init_params"),
    ("minicnnrnn.cnn.efficientnet", "init_params"),
    ("minicnnrnn.training.optim", "cosine_schedule"),
}
_HOST_METHODS = {"state_dict", "load_state_dict"}  # optimiser state is host data by contract


def _from_test():
    filename = os.path.abspath(inspect.currentframe().f_back.f_back.f_code.co_filename)
    return filename.startswith(CALLER_DIRS) and filename not in _SKIP_FILES and not filename.startswith(_SKIP_DIRS)


class _Mover:
    """Moves host arrays in (memoised by identity, so an array passed twice stays one array)."""

    def __init__(self):
        self.moved = {}  # id(host) -> (host, device): arrays, and the dicts that held them
        self.arrays = 0  # how many host arrays were moved

    def inward(self, value):
        if isinstance(value, numpy.ndarray) and value.dtype.kind not in "OUS":
            key = id(value)
            if key not in self.moved:
                self.moved[key] = (value, strict_device.xp.asarray(value))
                self.arrays += 1
            return self.moved[key][1]
        if isinstance(value, list):
            return [self.inward(v) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*[self.inward(v) for v in value])
        if isinstance(value, tuple):
            return tuple(self.inward(v) for v in value)
        if isinstance(value, dict):
            if id(value) in self.moved:
                return self.moved[id(value)][1]
            out = {k: self.inward(v) for k, v in value.items()}
            if any(out[k] is not value[k] for k in value):
                self.moved[id(value)] = (value, out)
                return out
            return value
        return value

    def copy_back(self):
        for host, device in self.moved.values():
            if isinstance(host, numpy.ndarray) and host.flags.writeable:
                host[...] = device._a  # the stand-in's own buffer: not a counted transfer
            elif isinstance(host, dict):  # keys a function added to a dict it was given
                for k, v in device.items():
                    if k not in host:
                        host[k] = self.outward(v)

    def outward(self, value):
        if isinstance(value, strict_device.StrictArray):
            for host, device in self.moved.values():
                if device is value:
                    return host
            return numpy.array(value._a, copy=True)
        if isinstance(value, list):
            return [self.outward(v) for v in value]
        if isinstance(value, tuple) and hasattr(value, "_fields"):
            return type(value)(*[self.outward(v) for v in value])
        if isinstance(value, tuple):
            return tuple(self.outward(v) for v in value)
        if isinstance(value, dict):
            for host, device in self.moved.values():
                if device is value:
                    return host
            return {k: self.outward(v) for k, v in value.items()}
        return value


def _closure(result):
    """A function a compute function returns (``make_step``'s ``step``) is compute code too:
    test code may call it NumPy-style, so it gets the same edge."""
    if inspect.isfunction(result) and not getattr(result, "__strict_adapted__", False):
        return _adapt(result)
    return result


def _adapt(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if backend._selected is not strict_device.xp or not _from_test():
            return fn(*args, **kwargs)
        mover = _Mover()
        moved_args, moved_kwargs = mover.inward(args), mover.inward(kwargs)
        if not mover.arrays:
            return _closure(fn(*args, **kwargs))
        result = fn(*moved_args, **moved_kwargs)
        mover.copy_back()
        return _closure(mover.outward(result))

    call.__strict_adapted__ = True
    return call


def install():
    """Wrap the compute modules' functions and class methods (idempotent)."""
    for module_name in COMPUTE_MODULES:
        module = importlib.import_module(module_name)
        for name, value in list(vars(module).items()):
            if name.startswith("__") or (module_name, name) in _HOST_FUNCTIONS:
                continue
            if getattr(value, "__module__", None) != module_name or getattr(value, "__strict_adapted__", False):
                continue
            if inspect.isfunction(value):
                setattr(module, name, _adapt(value))
            elif inspect.isclass(value):
                for attr, method in list(vars(value).items()):
                    if attr in _HOST_METHODS or getattr(method, "__strict_adapted__", False):
                        continue
                    if inspect.isfunction(method):
                        setattr(value, attr, _adapt(method))
