"""Reading a PyTorch ``state_dict`` file (``.pth``) without PyTorch.

``torch.save`` writes a Python pickle in which each tensor is the call
``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``. The
*storage* is the flat block of numbers behind one or more tensors; the pickle
does not contain it but leaves a reference (a "persistent id") that the loader
resolves. The numbers themselves sit outside the pickle as raw bytes. Two file
layouts exist:

* **zip** (torch >= 1.6, the default since): a zip archive with one folder that
  holds ``data.pkl`` (the pickle), ``data/<key>`` (one raw file per storage),
  ``byteorder`` ("little" on all common machines) and ``version``.
* **legacy** (older torch, or ``_use_new_zipfile_serialization=False``; the
  official ``vgg16-397923af.pth`` is one): a plain file holding, one after the
  other, pickles of the magic number ``0x1950a86a20f9469cfc6c``, the protocol
  version 1001 and a dict of system info; the pickled object; a pickled list of
  storage keys; then for each key in that order an int64 element count and the
  raw little-endian bytes.

(Both layouts are defined by the code that writes them: ``_save`` and
``_legacy_save`` in PyTorch's ``torch/serialization.py``.)

A tensor is a *view* into its storage: element ``(i, j, ...)`` lives at
``offset + i * stride[0] + j * stride[1] + ...`` (counted in elements), so a
transposed or sliced tensor shares its storage with the original.

Safety: unpickling can run code, so we never call the plain ``pickle.load``: every
pickle goes through ``torch_unpickler.RestrictedUnpickler``, which resolves only the few
names a state_dict needs and refuses every other name before anything could be called.
"""

import os
import pickle
import struct
import zipfile

import numpy

from minicnnrnn.core import limits
from minicnnrnn.core.errors import UserError
from minicnnrnn.weights.torch_unpickler import ElementType, RestrictedUnpickler, Storage, TensorRef, numpy_dtype

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001


def _one_line(exc):
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _is_pickle_name(name):
    return name == "data.pkl" or name.endswith("/data.pkl")


def detect(path):
    """'zip' or 'legacy' if ``path`` looks like a torch.save file, else None (reads only the start)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                return "zip" if any(_is_pickle_name(n) for n in zf.namelist()) else None
        with open(path, "rb") as f:
            start = f.read(64)
            if start[:4] == b"PK\x03\x04":
                # A zip whose table of contents (at the end) is missing: a cut download.
                # torch writes data.pkl first, so its name is in the first local header.
                name_length = struct.unpack("<H", start[26:28])[0]
                return "zip" if _is_pickle_name(start[30 : 30 + name_length].decode("utf-8", "replace")) else None
            if start[:1] != b"\x80":  # every pickle of protocol >= 2 starts with PROTO
                return None
            f.seek(0)
            magic = RestrictedUnpickler(f, str(path), {}).load()
    except Exception:  # not a zip and not a pickle: not ours
        return None
    return "legacy" if isinstance(magic, int) and magic == LEGACY_MAGIC else None


def _load_zip(path):
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise UserError(
            f"{path}: file is truncated or damaged (a torch zip archive without its table "
            "of contents; download it again)"
        ) from None
    with zf:
        names = set(zf.namelist())
        pickles = [n for n in names if _is_pickle_name(n)]
        if len(pickles) != 1:
            raise UserError(f"{path}: a zip archive but not a torch.save file (expected one data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "<"
        if prefix + "byteorder" in names:
            byteorder = ">" if zf.read(prefix + "byteorder").strip() == b"big" else "<"
        storages = {}
        with zf.open(pickles[0]) as f:
            obj = RestrictedUnpickler(f, path, storages).load()
        for key, storage in storages.items():
            name = f"{prefix}data/{key}"
            if name not in names:
                raise UserError(f"{path}: storage {name} is missing from the archive")
            storage.raw = _zip_member_bytes(path, zf, zf.getinfo(name))
    return obj, storages, byteorder


def _zip_member_bytes(path, zf, info):
    """A zip member's bytes as a uint8 array. torch stores members uncompressed, so
    the bytes are memory-mapped in place (no copy; pages are read when used)."""
    if info.compress_type != zipfile.ZIP_STORED or info.file_size == 0:
        # A compressed member may inflate to far more than the file's size: bound it first.
        limits.check("MINICNNRNN_MAX_MEMBER_BYTES", info.file_size, path, f"the inflated size of {info.filename}")
        return numpy.frombuffer(zf.read(info), dtype=numpy.uint8)
    with open(path, "rb") as f:  # the local header: 30 bytes, then the name and an extra field
        f.seek(info.header_offset)
        header = f.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise UserError(f"{path}: damaged zip entry {info.filename}")
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    start = info.header_offset + 30 + name_length + extra_length
    if start + info.file_size > os.path.getsize(path):
        raise UserError(f"{path}: file is truncated ({info.filename} incomplete)")
    return numpy.memmap(path, dtype=numpy.uint8, mode="r", offset=start, shape=(info.file_size,))


def _load_legacy(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:

        def load_small():
            return RestrictedUnpickler(f, path, {}).load()

        if load_small() != LEGACY_MAGIC:
            raise UserError(f"{path}: not a PyTorch file (wrong magic number)")
        protocol = load_small()
        if protocol != LEGACY_PROTOCOL:
            raise UserError(f"{path}: unsupported legacy PyTorch protocol {protocol!r}")
        load_small()  # system info: the data that follows is little-endian whatever it says
        storages = {}
        obj = RestrictedUnpickler(f, path, storages).load()
        keys = load_small()
        if not isinstance(keys, list):
            raise pickle.UnpicklingError("storage key list missing")
        for key in keys:
            storage = storages.get(str(key))
            if storage is None:
                raise UserError(f"{path}: storage key {key!r} is listed but never used")
            count = numpy.frombuffer(f.read(8), dtype="<i8")
            nbytes = int(count[0]) * numpy_dtype(storage.code).itemsize if count.size else -1
            start = f.tell()
            if nbytes < 0 or start + nbytes > size:
                raise UserError(f"{path}: file is truncated (storage {key} incomplete)")
            # memory-mapped in place: no copy, pages are read when the tensor is built
            storage.raw = (
                numpy.memmap(path, dtype=numpy.uint8, mode="r", offset=start, shape=(nbytes,))
                if nbytes
                else numpy.zeros(0, numpy.uint8)
            )
            f.seek(start + nbytes)
    return obj, storages, "<"


def _to_numpy(ref, byteorder, source):
    """Materialise a TensorRef as a C-contiguous numpy array in native byte order."""
    dtype = numpy_dtype(ref.code, byteorder)
    raw = ref.storage.bytes()
    if raw is None:
        raise UserError(f"{source}: a tensor's storage has no data in the file")
    flat = raw[: raw.size - raw.size % dtype.itemsize].view(dtype)
    if 0 in ref.size:
        array = numpy.zeros(ref.size, dtype=dtype)
    else:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if last >= flat.size:
            raise UserError(f"{source}: a tensor of size {ref.size} reaches past the end of its storage")
        numel = int(numpy.prod(ref.size, dtype=object))  # exact, even for absurd sizes
        limits.check(
            "MINICNNRNN_MAX_TENSOR_ELEMENTS", numel, source, f"the element count of a tensor of size {ref.size}"
        )
        if numel > flat.size - min(ref.offset, flat.size):
            # A tensor of a state_dict never has more elements than its storage; a stride-0
            # view that does (a 419-byte file asking for 2^29 elements) is refused before
            # anything is allocated.
            raise UserError(
                f"{source}: a tensor of size {ref.size} has {numel:,} elements but its storage "
                f"holds {max(flat.size - ref.offset, 0):,} after offset {ref.offset}"
            )
        view = numpy.lib.stride_tricks.as_strided(
            flat[ref.offset :], shape=ref.size, strides=[s * dtype.itemsize for s in ref.stride], writeable=False
        )
        array = numpy.array(view, dtype=dtype.newbyteorder("="), order="C")
    if ref.code == "bf16":
        array = (array.astype(numpy.uint32) << 16).view(numpy.float32)
    if ref.metadata.get("neg"):
        array = -array
    if ref.metadata.get("conj"):
        array = numpy.conj(array)
    return array


def _resolve(obj, byteorder, source):
    """Replace every TensorRef in nested dicts/lists/tuples by a numpy array."""
    if isinstance(obj, TensorRef):
        return _to_numpy(obj, byteorder, source)
    if isinstance(obj, dict):
        return {k: _resolve(v, byteorder, source) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v, byteorder, source) for v in obj)
    if isinstance(obj, (Storage, ElementType)):
        raise UserError(f"{source}: holds a bare storage or dtype, not a tensor")
    return obj


def load(path):
    """Read a torch.save file of tensors -> the same structure with numpy arrays.

    A ``state_dict`` comes back as a dict ``{"features.0.weight": (64, 3, 3, 3) float32, ...}``
    in file order. Raises a one-line UserError for a missing, unreadable, truncated or
    unsafe file.
    """
    path = str(path)
    kind = detect(path)
    if kind is None:
        try:
            open(path, "rb").close()
        except OSError as exc:
            raise UserError(f"{path}: cannot read file ({_one_line(exc)})") from None
        raise UserError(f"{path}: not a PyTorch .pth file (neither the zip nor the legacy torch.save format)")
    try:
        obj, _storages, byteorder = _load_zip(path) if kind == "zip" else _load_legacy(path)
        return _resolve(obj, byteorder, path)
    except UserError:
        raise
    except Exception as exc:  # anything the pickle machinery raises on a damaged file
        raise UserError(f"{path}: not a readable PyTorch {kind} file ({_one_line(exc)})") from None
