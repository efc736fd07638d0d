"""How many BLAS threads a command uses (``--threads``, default ``auto``).

NumPy's matrix products run in a BLAS library (OpenBLAS, MKL) that starts one
thread per core. That pays for large products (VGG16's convolutions: thousands
of rows by thousands of columns) and costs for small ones on a busy machine: the
RNN's products at the paper's sizes are (64 x 512) @ (512 x 2048), a fraction
of a millisecond each, and OpenBLAS threads that wait for a core spin instead of
sleeping. Measured on this project's 2-core machine, the main job
(``python -m minicnnrnn.train``) took 245 s with 2 BLAS threads while other work
was running and 64 s with one thread.

``auto`` therefore chooses, from the command alone and never from the load (so the
same command with the same seed gives the same numbers on an idle and on a busy
machine: the thread count changes the order in which BLAS adds up a product, and
training amplifies those last bits into different metrics, docs/training.md):

* ``big_matrices=True`` (``extract``, ``scale_out``, ``pretrain``): every core;
* otherwise (``train``, ``predict``, ``analyze``, ...): one thread. On an idle
  2-core machine a second thread saves little at these sizes (docs/training.md,
  "Same seed, same numbers"), and on a busy one it costs several times over.

An explicit number (``--threads 2``) is used as given. A user who has set
``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS`` or ``OMP_NUM_THREADS`` has chosen
already: ``auto`` then leaves BLAS alone. :func:`describe` says what was used, for
``metrics.json``.

``$MINICNNRNN_THREADS`` (the worker threads of the Winograd convolution, layers/winograd.py)
is read by :func:`env_workers`: a whole number, clamped to the cores (more threads than
cores only add memory and switching: 99999 once ran 40 images for minutes at 2.5 GB).
"""

import os

from threadpoolctl import threadpool_info, threadpool_limits

from minicnnrnn.core import limits
from minicnnrnn.core.errors import UserError

THREAD_ENV_VARS = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS")

_limiter = None  # the active threadpoolctl limit, kept alive for the whole command


def cores():
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def env_workers(strict=True):
    """Worker threads from ``$MINICNNRNN_THREADS`` (unset: every core), at most the cores.
    Junk is a one-line UserError when ``strict`` (a command's start, :func:`apply`); at
    import time (``strict=False``) it falls back to the cores, and the command then refuses."""
    try:
        value = limits.env_int("MINICNNRNN_THREADS", cores(), minimum=1)
    except UserError:
        if strict:
            raise
        value = cores()
    return min(value, cores())


def choose(requested="auto", big_matrices=False):
    """The BLAS thread count for ``requested`` ('auto' or a whole number >= 1); None = leave BLAS alone."""
    if requested != "auto":
        return int(requested)
    if any(os.environ.get(name) for name in THREAD_ENV_VARS):
        return None
    return cores() if big_matrices else 1


def apply(requested="auto", big_matrices=False):
    """Limit BLAS to the chosen number of threads for the rest of the command. Returns the number (or None)."""
    global _limiter
    env_workers()  # a junk $MINICNNRNN_THREADS stops the command here, in one line
    n = choose(requested, big_matrices)
    if n is None:
        return None
    _limiter = threadpool_limits(limits=n, user_api="blas")
    return n


def describe():
    """{"threads": the BLAS thread count in force, "blas": "<library> <version> (<threading>)"}
    of NumPy's BLAS (threadpoolctl; SciPy may load another), for metrics.json; None where unknown."""
    blas = [info for info in threadpool_info() if info.get("user_api") == "blas"]
    if not blas:
        return {"threads": None, "blas": None}
    first = next((info for info in blas if "numpy" in info.get("filepath", "")), blas[0])
    name = f"{first.get('internal_api', '?')} {first.get('version') or ''}".strip()
    if first.get("threading_layer"):
        name += f" ({first['threading_layer']})"
    return {"threads": first.get("num_threads"), "blas": name}
