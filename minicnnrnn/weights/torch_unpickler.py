"""The restricted unpickler behind :mod:`minicnnrnn.weights.torch_pickle`: the only names a torch pickle may call.

Unpickling can run code: a pickle may name any importable function and ask for it to be
called (``os.system`` included), so we never call the plain ``pickle.load``.
:class:`RestrictedUnpickler` resolves only the few names a ``state_dict`` needs
(:data:`ALLOWED`), to functions written in this file, and refuses every other name with a
UserError before anything could be called. What it builds are placeholders: a
:class:`Storage` per flat block of numbers (its bytes are filled in by the file reader,
which knows the layout) and a :class:`TensorRef` per tensor, a view into a storage that
``torch_pickle`` turns into a numpy array once the bytes are there.
"""

import collections
import pickle

import numpy

from minicnnrnn.core.errors import UserError

# The element type named by torch's storage classes and dtypes, as numpy type codes
# without byte order. numpy has no bfloat16: those are read as uint16 bit patterns
# and widened to float32 (a bfloat16 is the top half of a float32).
STORAGE_TYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
    "ComplexFloatStorage": "c8",
    "ComplexDoubleStorage": "c16",
    "UntypedStorage": "u1",
}
TORCH_DTYPES = {
    "float32": "f4",
    "float64": "f8",
    "float16": "f2",
    "bfloat16": "bf16",
    "int64": "i8",
    "int32": "i4",
    "int16": "i2",
    "int8": "i1",
    "uint8": "u1",
    "bool": "b1",
    "uint16": "u2",
    "uint32": "u4",
    "uint64": "u8",
    "complex64": "c8",
    "complex128": "c16",
}


def numpy_dtype(code, byteorder="<"):
    """Type code -> numpy dtype of the bytes on disk (bfloat16 is read as uint16)."""
    if code == "bf16":
        code = "u2"
    if code in ("u1", "i1", "b1"):
        return numpy.dtype(code)
    return numpy.dtype(byteorder + code)


class ElementType:
    """What ``torch.FloatStorage`` or ``torch.float32`` stands for here: an element type."""

    def __init__(self, code):
        self.code = code


class Storage:
    """One flat block of elements. ``raw`` (uint8 bytes) is filled in after unpickling.

    A legacy file may also hold a *view* of a storage: ``base`` is then the viewed
    storage and ``start`` the first element of the view.
    """

    def __init__(self, code, numel, base=None, start=0):
        self.code, self.numel, self.base, self.start = code, numel, base, start
        self.raw = None

    def bytes(self):
        if self.base is None:
            return self.raw
        itemsize = numpy_dtype(self.code).itemsize
        first = self.start * itemsize
        return self.base.bytes()[first : first + self.numel * itemsize]


class TensorRef:
    """A tensor waiting for its storage's bytes: dtype code, offset, size, stride."""

    def __init__(self, storage, offset, size, stride, code, metadata=None):
        if not isinstance(storage, Storage):
            raise pickle.UnpicklingError("a tensor's storage is not a storage reference")
        for n in (offset, *size, *stride):
            if not isinstance(n, int) or n < 0:
                raise pickle.UnpicklingError("a tensor has a bad offset, size or stride")
        if len(size) != len(stride):
            raise pickle.UnpicklingError("a tensor's size and stride differ in length")
        self.storage, self.offset, self.code = storage, offset, code
        self.size, self.stride = tuple(size), tuple(stride)
        self.metadata = metadata or {}


# The functions a torch pickle calls, rewritten to build TensorRef placeholders.
def _rebuild_tensor(storage, storage_offset, size, stride):
    return TensorRef(storage, storage_offset, size, stride, storage.code)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return TensorRef(storage, storage_offset, size, stride, storage.code, metadata)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
    # v3 is used for dtypes without a typed storage (uint16, ...): the storage is raw bytes.
    if not isinstance(dtype, ElementType):
        raise pickle.UnpicklingError("_rebuild_tensor_v3 without a dtype")
    return TensorRef(storage, storage_offset, size, stride, dtype.code, metadata)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    # An nn.Parameter (state_dict(keep_vars=True)): we only need its data.
    return data


def _allowed_names():
    names = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }
    for table in (STORAGE_TYPES, TORCH_DTYPES):
        for name, code in table.items():
            names[("torch", name)] = ElementType(code)
    names[("torch.storage", "UntypedStorage")] = names[("torch", "UntypedStorage")]
    return names


ALLOWED = _allowed_names()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only rebuild tensors, storages and (ordered) dicts.

    ``find_class`` is the only way a pickle gets hold of a callable, so refusing
    unknown names there means no other code can run.
    """

    def __init__(self, file, source, storages):
        super().__init__(file, encoding="utf-8")
        self.source, self.storages = source, storages

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise UserError(
                f"{self.source}: refusing to unpickle '{module}.{name}': a weights file may only "
                "hold tensors and dicts (is this a whole pickled model or a foreign pickle?)"
            ) from None

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        if pid[0] == "module":
            raise UserError(f"{self.source}: holds a whole pickled nn.Module; save model.state_dict() instead")
        if pid[0] != "storage" or len(pid) not in (5, 6):
            raise pickle.UnpicklingError(f"unknown persistent id {pid[:1]!r}")
        element_type, key, _location, numel = pid[1:5]
        if not isinstance(element_type, ElementType) or not isinstance(numel, int):
            raise pickle.UnpicklingError("bad storage reference")
        key = str(key)
        if key not in self.storages:
            self.storages[key] = Storage(element_type.code, numel)
        storage = self.storages[key]
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return storage
        view_key, start, view_numel = view  # legacy views: (key, first element, length)
        return Storage(element_type.code, view_numel, base=storage, start=start)
