"""Bounds checked before anything large is allocated, and checks that numbers are finite.

A damaged or hostile input file may declare sizes far beyond its own length: a 300-byte
PNG of 1 x 60000 pixels (its resize plan asks for gigabytes), a tensor of 2^29 elements
over a storage of one, a zip member that inflates to gigabytes. Every reader checks the
declared size against one of the limits below *before* it allocates, and refuses with a
one-line :class:`~minicnnrnn.core.errors.UserError` naming the file, the limit and the
environment variable that raises it (docs/limits.md):

==================================== ============== ==========================================
environment variable                 default        what it bounds
==================================== ============== ==========================================
``MINICNNRNN_MAX_IMAGE_PIXELS``      50 000 000     pixels of a decoded image (width x height)
``MINICNNRNN_MAX_IMAGE_BYTES``       768 MiB        bytes an image takes while decoded and converted
``MINICNNRNN_MAX_ASPECT``            100            longer side / shorter side of an image
``MINICNNRNN_MAX_RESIZED_PIXELS``    20 000 000     pixels of the resized image (crop plan)
``MINICNNRNN_MAX_TENSOR_ELEMENTS``   1 000 000 000  elements of one tensor in a weights file
``MINICNNRNN_MAX_MEMBER_BYTES``      1 GiB          inflated size of one zip / npz member
==================================== ============== ==========================================

A value of 0 turns a limit off. Limits are read when asked for (not at import), so a
command and a test can set them in the environment at any time. Every number taken from
the environment goes through :func:`env_int`, which refuses text, fractions, ``inf`` and
numbers too large for any size in one line naming the variable.

"Finite" means finite in float32, the dtype every model and feature is computed in
(:data:`COMPUTE_DTYPE`): 1e300 is a finite float64 but inf once cast, so
:func:`all_finite` also refuses values outside float32's range.
"""

import math
import os

import numpy

from minicnnrnn.core.errors import UserError

DEFAULTS = {
    "MINICNNRNN_MAX_IMAGE_PIXELS": 50_000_000,
    "MINICNNRNN_MAX_ASPECT": 100,
    "MINICNNRNN_MAX_RESIZED_PIXELS": 20_000_000,
    "MINICNNRNN_MAX_TENSOR_ELEMENTS": 1_000_000_000,
    "MINICNNRNN_MAX_MEMBER_BYTES": 2**30,
    "MINICNNRNN_MAX_IMAGE_BYTES": 768 * 2**20,
}

# Every array read from a file ends up in this dtype (core/backend.py's default).
COMPUTE_DTYPE = numpy.float32
# No size or count a machine can hold needs more digits; larger is a typo or an attack.
LARGEST_SETTING = 2**62


def env_int(name, default, minimum=0):
    """The whole number in environment variable ``name`` (``default`` when unset or empty).
    ``_`` separators and a float spelling of a whole number (``5e7``) are accepted; junk,
    fractions, ``inf``/``nan``, values below ``minimum`` or over 2^62 are a one-line UserError."""
    text = os.environ.get(name, "").strip().replace("_", "")
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = None
        if number is None or not math.isfinite(number) or number != int(number):
            raise UserError(f"${name}: expected a whole number, got {text[:40]!r}") from None
        value = int(number)
    if not minimum <= value <= LARGEST_SETTING:
        raise UserError(f"${name}: must be between {minimum} and 2**62, got {text[:40]}")
    return value


def get(name):
    """The current value of limit ``name`` (a key of :data:`DEFAULTS`); 0 means no limit."""
    return env_int(name, DEFAULTS[name], minimum=0)


def check_environment():
    """Read every limit now, so that junk in one (``abc``, ``inf``) stops a command at its
    start in one line, instead of failing each image later (where ``extract`` would skip
    them all, each with that line as its reason)."""
    for name in DEFAULTS:
        get(name)


def check(name, value, where, what):
    """UserError ``<where>: <what> is <value>, over the limit of <limit> (raise it with $name)``
    when ``value`` exceeds the limit ``name``."""
    limit = get(name)
    if limit and value > limit:
        raise UserError(
            f"{where}: {what} is {value:,}, over the limit of {limit:,} (set ${name} higher, or 0, to allow it)"
        )


def all_finite(array, dtype=COMPUTE_DTYPE, rows_at_once=1 << 20):
    """True when a float or complex array holds no NaN or inf and, for a dtype wider than
    ``dtype``, no value beyond ``dtype``'s range (cast, it would be inf). Other dtypes:
    always True. Checked a block at a time, so a large matrix needs no array of its size."""
    array = numpy.asarray(array)
    if array.dtype.kind not in "fc":
        return True
    flat = array.reshape(-1)
    largest = numpy.finfo(dtype).max
    wider = array.dtype.itemsize > numpy.dtype(dtype).itemsize * (2 if array.dtype.kind == "c" else 1)

    def block_ok(block):
        if wider:  # NaN fails the comparison too
            return bool((numpy.abs(block) <= largest).all())
        return bool(numpy.isfinite(block).all())

    with numpy.errstate(all="ignore"):
        return all(block_ok(flat[i : i + rows_at_once]) for i in range(0, flat.size, rows_at_once))


def check_finite(array, where):
    """UserError ``<where>: holds NaN or infinite values`` unless :func:`all_finite`."""
    if not all_finite(array):
        raise UserError(f"{where}: holds NaN or infinite values (or values beyond float32's range)")


def check_finite_params(params, where):
    """UserError ``<where>: array <name> holds NaN or infinite values`` for the first such
    array of a {name: array} dict (weights of a CNN: NaN weights give all-NaN features)."""
    for name, value in params.items():
        if not all_finite(value):
            raise UserError(f"{where}: array {name!r} holds NaN or infinite values (or values beyond float32's range)")
