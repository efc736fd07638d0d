"""Writing files so that an interrupted program never leaves a half-written one.

Every checkpoint, cache, weights and metrics file is written to a temp file in the same
folder, flushed, then renamed over the destination (``os.replace``, atomic on POSIX and
Windows): a reader sees either the old file or the new one.

Only regular files are replaced (a folder, a device or a symbolic link as target is one
line). A temp file's name carries its writer's process id (``.<name>.<pid>.<random>.tmp``),
so one left by a killed writer is removed by the next write into the folder.
:func:`folder_lock` keeps two runs from writing into one output folder at once.

Reading is guarded too: every reader opens its file (a dataset, a checkpoint, features, an
image, an image list, weights) with :func:`open_regular`, so a FIFO, device or socket given
as input is one line instead of a read that never returns.
"""

import contextlib
import errno
import json
import os
import re
import stat
import tempfile
import zipfile

import numpy

from minicnnrnn.core import limits
from minicnnrnn.core.errors import UserError

LOCK_NAME = ".minicnnrnn.lock"
MAX_PID = 2**22  # Linux's largest process id: a lock file holding more is damaged, not a live run


def pid_alive(pid):
    """True if a process with this id exists (a lock or temp file of it is not stale)."""
    if not 0 < pid <= MAX_PID:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(folder):
    """Remove the temp files of dead writers (``.<name>.<pid>.<random>.tmp``) in ``folder``.
    Returns the names removed."""
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = re.fullmatch(r"\..+\.(\d+)\.[^.]+\.tmp", name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, name))
                removed.append(name)
    return removed


def open_regular(path, what="file", text=False):
    """Open ``path`` for reading (binary, or UTF-8 text when ``text``); a one-line UserError
    naming it when it is missing, a folder, or not a regular file (a FIFO, device, socket).

    Why open-then-check: opening a FIFO blocks until some process writes into it, so the
    file is opened with O_NONBLOCK (which returns at once for every kind of file) and
    the *open descriptor* is checked with fstat. Checking first with stat and opening
    after would leave a window in which the name could be swapped for a FIFO; the
    descriptor cannot change what it refers to. O_NONBLOCK is cleared again before
    reading (it means nothing for a regular file, but a reader should not inherit it)."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a {what}") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{path}: is a folder, expected a {what}")
        if not stat.S_ISREG(mode):
            kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
            raise UserError(f"{path}: is {kind}, not a regular file; expected a {what}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    if text:
        return open(fd, encoding="utf-8")  # noqa: SIM115 (the caller closes it)
    return open(fd, "rb")  # noqa: SIM115


def require_regular(path, what="file"):
    """UserError unless ``path`` is a regular file, for a library that insists on opening a
    name itself (h5py): checked through :func:`open_regular`, so a FIFO never blocks. The
    library opens the name again afterwards; a swap in between is the caller's own doing."""
    open_regular(path, what).close()


def check_target(path):
    """UserError unless ``path`` is absent or a regular file (so writing it replaces no
    folder, device or symbolic link)."""
    path = os.fspath(path)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return  # absent (a parent that is a file is reported when the folder is made)
    except OSError as exc:
        raise UserError(f"{path}: cannot check the output path ({exc.strerror or exc})") from None
    if stat.S_ISLNK(st.st_mode):
        raise UserError(f"{path}: is a symbolic link; refusing to replace it (write to the file it names instead)")
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: is a folder; give a file name to write")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{path}: is not a regular file (a device, pipe or socket); refusing to replace it")


def os_error_message(path, exc, action="could not be written"):
    """One line for an OSError while writing ``path``: permission, disk full, read-only."""
    reason = {
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENOSPC: "no space left on the device (disk full)",
        errno.EDQUOT: "disk quota exceeded",
        errno.EROFS: "read-only file system",
    }.get(exc.errno, exc.strerror or str(exc))
    return f"{path}: {action} ({reason})"


def _temp_file(path):
    """(descriptor, name) of a new unique temp file beside ``path`` (``.<name>.<pid>.<random>.tmp``:
    two writers never share one, and :func:`clean_stale_temps` removes a dead writer's)."""
    folder = os.path.dirname(os.path.abspath(path))
    check_target(path)
    try:
        os.makedirs(folder, exist_ok=True)
        clean_stale_temps(folder)
        prefix = f".{os.path.basename(path)}.{os.getpid()}."
        return tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"{path}: cannot write here (a parent of it is a file, not a folder)") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot write here ({os_error_message(path, exc).split('(', 1)[-1]}") from None


def _publish(tmp, path):
    """Rename the finished temp file ``tmp`` to ``path``, with the permissions a plain open()
    gives (mkstemp makes it private, 0600; shared feature folders must stay readable)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _drop_temp(tmp, path, exc):
    """After a failed write: remove ``tmp``; an OSError becomes a one-line UserError naming ``path``."""
    with contextlib.suppress(OSError):
        os.remove(tmp)
    if isinstance(exc, OSError):
        raise UserError(os_error_message(path, exc)) from None


def _atomic_write(path, write):
    """Call ``write(fileobj)`` on a temp file next to ``path``, then rename it to ``path``."""
    path = os.fspath(path)
    fd, tmp = _temp_file(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException as exc:
        _drop_temp(tmp, path, exc)
        raise


def new_memmap(path, shape, dtype=numpy.float32):
    """A new .npy of ``shape`` opened as a memory map, its disk space reserved first
    (:func:`reserve`: a full disk is a one-line error, not a SIGBUS while rows are written)."""
    check_target(path)
    created = numpy.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)  # header; a sparse file
    created.flush()
    reserve(path, created.offset)
    del created
    return numpy.lib.format.open_memmap(path, mode="r+")


@contextlib.contextmanager
def atomic_memmap(path, shape, dtype=numpy.float32):
    """Yield a writable memory-mapped ``.npy`` of ``shape`` that becomes ``path`` only when the
    block ends without an error (written to a unique temp file beside it, renamed after; its
    disk space reserved first, :func:`new_memmap`). If the block fails (or the process is
    killed), ``path`` keeps its old contents and the temp file is removed (or, after a kill,
    by the next write into the folder)."""
    path = os.fspath(path)
    fd, tmp = _temp_file(path)
    os.close(fd)
    try:
        array = new_memmap(tmp, shape, dtype)
        yield array
        array.flush()
        del array
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        _publish(tmp, path)
    except BaseException as exc:
        _drop_temp(tmp, path, exc)
        raise


def save_npz(path, **arrays):
    """Atomically write host arrays to ``path`` (a .npz, uncompressed)."""
    _atomic_write(path, lambda f: numpy.savez(f, **arrays))


def _json_safe(obj):
    """``obj`` with every NaN or infinite float replaced by None: JSON has no NaN, and an
    undefined number (a mAP without any positive) must read as null, never as a number."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def save_json(path, obj):
    """Atomically write ``obj`` as indented JSON (NaN and inf written as null)."""
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=False, allow_nan=False) + "\n"
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def save_text(path, text):
    """Atomically write a text file."""
    _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def reserve(path, offset=0):
    """Allocate the disk blocks of the (sparse) file ``path`` from byte ``offset`` to its end
    now, so that writing it later through a memory map cannot run out of space: on a full
    disk a write into a memory map is a SIGBUS that kills the process with no message; here
    it is a one-line UserError (and ``path`` is removed).

    ``posix_fallocate`` allocates the blocks; the fallback writes zeros, which allocates them
    too. Writing only the last byte would not (a sparse file: the SIGBUS again). No guarantee
    on copy-on-write file systems (ZFS, btrfs); docs/limits.md says more."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "r+b") as f:
            try:
                os.posix_fallocate(f.fileno(), offset, max(size - offset, 1))
                return
            except (AttributeError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise
            block = b"\0" * (1 << 20)  # no fallocate: write the zeros ourselves, after the header
            f.seek(offset)
            for start in range(offset, size, len(block)):
                f.write(block[: min(len(block), size - start)])
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise UserError(os_error_message(path, exc, "cannot reserve its space")) from None


def save_figure(path, fig, **options):
    """Atomically write a matplotlib figure (the format from ``path``'s extension)."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".") or "png"
    _atomic_write(path, lambda f: fig.savefig(f, format=fmt, **options))


@contextlib.contextmanager
def folder_lock(folder, tidy=True, what="--out"):
    """Hold ``folder/.minicnnrnn.lock`` (holding this process's id) while a run writes into
    ``folder``. A second run refuses in one line while the first holds it; the lock of a
    process that no longer exists (a killed run) is stale and taken over. ``tidy``: the
    folders made here are removed again if still empty at the end. ``what`` names the
    folder's option in errors."""
    folder = os.fspath(folder)
    created, parent = [], os.path.abspath(folder)
    while not os.path.isdir(parent) and parent != os.path.dirname(parent):
        created.append(parent)  # the folders made here, innermost first
        parent = os.path.dirname(parent)
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        reason = os_error_message(folder, exc).split("(", 1)[-1]
        raise UserError(f"{what} {folder}: cannot create the output folder ({reason}") from None
    lock = os.path.join(folder, LOCK_NAME)
    for _attempt in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:  # a FIFO as the lock is one line (open_regular), never a wait; junk is a stale lock
                with open_regular(lock, "lock file") as f:
                    holder = int(f.read(32).strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and holder != os.getpid() and pid_alive(holder):
                raise UserError(
                    f"{folder}: another run (process {holder}) is writing here; wait for it, "
                    f"or choose another --out (remove {lock} if that process is not ours)"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(lock)  # stale: its process is gone
        except OSError as exc:
            raise UserError(os_error_message(lock, exc)) from None
    else:
        raise UserError(f"{lock}: could not take the lock (another run keeps taking it)")
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    clean_stale_temps(folder)
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            os.remove(lock)
            for made in created if tidy else ():  # a run that stopped before writing anything leaves no empty folder
                os.rmdir(made)


def check_npz_members(path, fileobj=None):
    """Before numpy reads a .npz: every member's inflated size under the limit
    ($MINICNNRNN_MAX_MEMBER_BYTES, for compressed members) and every .npy header's shape
    within the member's bytes. UserError naming the file otherwise. ``fileobj``: the file
    already opened (:func:`open_regular`), else ``path`` is opened."""
    try:
        with zipfile.ZipFile(fileobj if fileobj is not None else path) as zf:
            for info in zf.infolist():
                if info.compress_type != zipfile.ZIP_STORED:
                    limits.check(
                        "MINICNNRNN_MAX_MEMBER_BYTES", info.file_size, path, f"the inflated size of {info.filename}"
                    )
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    version = numpy.lib.format.read_magic(f)
                    read_header = (
                        numpy.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else numpy.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(f)
                    header = f.tell()
                count = int(numpy.prod(shape, dtype=object))
                if dtype.itemsize and count * dtype.itemsize > info.file_size - header:
                    raise UserError(
                        f"{path}: {info.filename} declares shape {shape} ({count * dtype.itemsize:,} bytes) "
                        f"but holds only {info.file_size - header:,} bytes"
                    )
    except UserError:
        raise
    except Exception as exc:
        raise UserError(
            f"{path}: not a readable .npz file ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None


def save_bytes(path, data):
    """Atomically write bytes (a PNG made in memory, ...)."""
    _atomic_write(path, lambda f: f.write(data))


def load_npz(path, required=()):
    """Load a .npz into a dict of numpy arrays; one-line UserError if missing, corrupt or incomplete."""
    path = os.fspath(path)
    with open_regular(path) as f:  # one descriptor for every read below: no FIFO, no swap
        try:
            start = f.read(4)
        except OSError as exc:
            raise UserError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
        if start != b"PK\x03\x04":  # every .npz is a zip archive
            raise UserError(f"{path}: not a .npz file (it is not a zip archive)")
        f.seek(0)
        check_npz_members(path, f)
        f.seek(0)
        try:
            with numpy.load(f, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise UserError(f"{path}: not a readable .npz file ({type(exc).__name__}: {first})") from None
    missing = [k for k in required if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing array(s) {', '.join(missing)}")
    return arrays
