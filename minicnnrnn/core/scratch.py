"""Scratch arrays: large temporaries kept from one call to the next.

A training step asks for the same large temporaries every time (the LSTM's gate gradients
are 3 MB at the paper's sizes). Allocated afresh each time, they often come from memory the
C allocator has just given back to the OS, and then every 4 KiB page of it costs a page fault:
at the paper's sizes with K = 1000 that was about 4,000 faults and a fifth of the step's time
(``benchmarks/bench_rnn_step.py``). Keeping them avoids that.

This is a memory trick, not part of any equation, so it lives here and the model files only
ask for "an array of this shape for this purpose".
"""

import math

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp

_arrays = {}  # (purpose, backend, dtype) -> flat array


def scratch_array(purpose, shape, dtype):
    """An uninitialised array of ``shape`` for values that never leave the caller.

    purpose: a string naming the use (one buffer per purpose, backend and dtype);
    it is reused, and grown when a larger shape is asked for. The contents are junk on
    entry and are overwritten by the next call with the same purpose, so the caller must
    not return it or keep it. Not safe for two threads at once.
    """
    key = (purpose, backend.name(), xp.dtype(dtype).str)
    size = math.prod(shape)
    flat = _arrays.get(key)
    if flat is None or flat.size < size:
        flat = _arrays[key] = xp.empty(size, dtype=dtype)
    return flat[:size].reshape(shape)
