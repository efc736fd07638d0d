"""Optimisers (rmsprop, Adam), gradient clipping and the learning-rate schedule (§3.4, §4).

Both optimisers have one interface: ``opt = RMSprop(params, ...)`` or ``Adam(params, ...)``
allocates the state, ``opt.step(params, grads, lr)`` updates the parameters in place with
learning rate ``lr`` (the schedule below picks it), and ``opt.state_dict()`` /
``opt.load_state_dict(d)`` move the state to and from host arrays for a checkpoint.

**rmsprop** (what ``train`` uses). The paper trains with rmsprop (Tieleman & Hinton) "to avoid
the gradient vanishing/exploding issues", with weight decay 1e-4 and momentum 0.9. For every
parameter array ``θ`` with gradient ``∇`` (already clipped, see below) one step is::

    g  = ∇ + λ θ                    # weight decay λ (L2 penalty λ/2 |θ|², all parameters)
    v ← ρ v + (1 - ρ) g²            # running mean of squared gradients, decay ρ
    m ← μ m + g / (√v + ε)          # momentum μ on the rmsprop-scaled step
    θ ← θ - η m                     # learning rate η

``v`` and ``m`` start at 0. These are exactly the equations of torch.optim.RMSprop with
``alpha=ρ, eps=ε, weight_decay=λ, momentum=μ`` (tests/test_optim.py checks it), so
results can be compared one to one.

A parameter may get its own learning rate ``factor · η`` (``RMSprop(..., lr_scale={name:
factor})``): ``train`` slows the recurrent matrix ``U_r`` of the ReLU LSTM this way. Because
rmsprop divides by √v, every entry moves by about η per step however small its gradient;
when the inputs of a matrix are all ≥ 0 (the ReLU LSTM's state r(t)) the moves add up and
change each output by up to η·Σ|input|, which in a recurrence feeds on itself
(docs/training.md, "Stability").

**Adam** (Kingma & Ba, ICLR 2015, Algorithm 1; what ``pretrain`` uses for the small CNN).
With step count t (1 at the first step)::

    g ← ∇ + λ θ                     # only for the parameters named in ``decayed``
    m ← β1 m + (1 - β1) g;   v ← β2 v + (1 - β2) g²
    θ ← θ - η · (m / (1 - β1^t)) / (√(v / (1 - β2^t)) + ε)

The divisions by ``1 - β^t`` undo the bias of moments that start at 0.

**Clipping** by global norm rescales all gradients together when their joint length exceeds
``max_norm``: ``∇ ← ∇ · max_norm / ‖(∇_1, ∇_2, ...)‖``. It keeps the direction of the step
and keeps one exploding BPTT gradient from flooding ``v``. (It does not bound the step
itself: rmsprop's step is about η per entry whatever the gradient's size.)

**Schedule.** Both commands decay the learning rate along half a cosine,
:func:`cosine_schedule`: ``train`` once per epoch, ``pretrain`` once per step.

**Plain and fast.** :func:`rmsprop_update_plain` writes the four equations as they read
(each line makes temporaries the size of the parameter). :func:`rmsprop_update`, what
:class:`RMSprop` runs, computes the same operations in the same order, so the results agree
bit for bit (``tests/test_optim.py``), but walks each parameter in blocks of
:data:`BLOCK` elements with every operation written ``out=`` into block-sized scratch
arrays: all 21 operations on a block find their operands in cache instead of streaming
six parameter-sized arrays through memory 21 times, and a step makes no
temporaries the size of a parameter (on the CPU those cost page faults). On the GPU the
whole array is one block: there each operation is a kernel launch, and memory is fast.

**Subnormal numbers are set to 0.** A weight whose gradient is always 0 (it feeds a gate
that is never active) still has weight decay, and once ``|g| < ε`` rmsprop's step is
``η λ θ / ε``: the weight shrinks geometrically and after some hundred steps falls below
float32's smallest normal number (1.2e-38); its ``v`` and ``m`` decay the same way. CPUs
compute with such *subnormal* numbers many times slower. One percent of them in ``U_r``
made every product with it about 4x slower (measured: a 23-step rollout of a trained
iaprtc12 model, 2.0 s against 0.5 s after setting them to 0, identical predictions), and
without the flush a pla epoch on iaprtc12 grew from 20 s to 130 s over training. So after
each step rmsprop sets the entries of θ, m and v below the smallest normal number to
exactly 0, inside the same pass over each block (GPUs would not need it, but the same
arithmetic on both backends keeps them comparable); no sum of float32 numbers of ordinary
size can tell the difference.
"""

import math

import numpy as np

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp


def cosine_schedule(base_lr, step, total_steps):
    """Learning rate ``base_lr · ½(1 + cos(π · step / total_steps))``: base_lr at step 0,
    decayed to 0 at ``total_steps`` (and held there after it)."""
    return base_lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))


def global_norm(grads):
    """√(Σ_arrays Σ_elements ∇²) of a dict of gradient arrays, as a Python float.

    The sum stays on the device; only the total comes back (one device->host copy per step,
    not one per parameter)."""
    total = None
    for g in grads.values():
        flat = g.reshape(-1)
        sq = xp.dot(flat, flat).astype(xp.float64)  # a dot product: no squared temporary
        total = sq if total is None else total + sq
    return math.sqrt(float(total)) if total is not None else 0.0


def clip_by_global_norm(grads, max_norm):
    """Scale all gradients in place so that their global norm is at most ``max_norm``.

    grads: {name: array}. Returns the norm before clipping (useful to log).
    ``max_norm`` None or <= 0 disables clipping. A non-finite norm is returned unchanged
    (the caller stops training on it) and the gradients are left alone.
    """
    norm = global_norm(grads)
    if max_norm and max_norm > 0 and math.isfinite(norm) and norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm


def _moments_to_host(moments):
    """{"v": {name: array}, ...} -> {"v/<name>": host array, ...}, for a checkpoint."""
    return {f"{kind}/{name}": backend.to_host(a) for kind, store in moments.items() for name, a in store.items()}


def _moments_from_host(moments, state):
    """Copy :func:`_moments_to_host` output back into the arrays of ``moments``, in place.
    Raises KeyError for a missing entry and ValueError for a shape that does not fit."""
    for kind, store in moments.items():
        for name, current in store.items():
            saved = state[f"{kind}/{name}"]
            if tuple(saved.shape) != tuple(current.shape):
                raise ValueError(f"optimizer state {kind}/{name} has shape {saved.shape}, expected {current.shape}")
            current[...] = backend.to_device(saved, current.dtype)


def _flush_subnormal(a, tmp, flags=None):
    """Set the entries of ``a`` whose size is below the smallest normal number of its dtype
    to 0, in place (``tmp``: a scratch array of a's shape). NaN and inf are kept, so a
    diverged step is still seen as one.

    Without ``flags`` this is the plain ``a *= (|a| >= tiny)`` (one pass per operation, no
    branch: what the GPU runs). With ``flags``, a bool scratch array of a's shape (the CPU),
    only the entries that need it are multiplied by 0, and only when there are any (they are
    rare): comparing into a bool array and testing it take about half the time of the float
    comparison and the full multiply, whose bool-to-float cast NumPy runs as a slow
    mixed-type loop. The result is the same bit for bit: ``x * 1.0 = x`` for the entries
    skipped, ``x * 0.0`` for the others.
    """
    xp.abs(a, out=tmp)
    if flags is None:
        xp.greater_equal(tmp, xp.finfo(a.dtype).tiny, out=tmp)  # 1 where |a| is normal, else 0
        a *= tmp
        return
    xp.less(tmp, xp.finfo(a.dtype).tiny, out=flags)  # subnormal or 0 (NaN: False, kept)
    _zero_flagged(a, flags)


def _zero_flagged(a, flags):
    """``a[flags] *= 0`` in place, skipped when no entry is flagged (a bool test is cheaper
    than even a masked multiply). ``x * 0`` keeps the sign of x, as the plain flush does."""
    if flags.any():
        xp.multiply(a, 0, out=a, where=flags)


def rmsprop_update_plain(theta, grad, v, m, lr, decay, momentum, weight_decay, eps):
    """One rmsprop step of one parameter, the equations of the module docstring as written.

    theta, grad, v, m: arrays of one shape; theta, v and m are updated in place. The
    readable reference for :func:`rmsprop_update` (same numbers, bit for bit).
    """
    g = grad + weight_decay * theta
    v[...] = decay * v + (1.0 - decay) * g**2
    m[...] = momentum * m + g / (xp.sqrt(v) + eps)
    theta -= lr * m
    tiny = xp.finfo(theta.dtype).tiny
    for a in (theta, m, v):  # subnormal numbers -> 0 (module docstring)
        a *= xp.abs(a) >= tiny


# Elements per block. Measured at the paper's sizes (K = 1000, one thread, 2-core EPYC, 1 MB L2):
# 6.0 ms a step for whole arrays; blocks of 16K 6.6-7.1 ms (one Python call per operation per
# block costs more than the cache saves), 32K 5.7 ms, 64K 5.1-5.2 ms.
BLOCK = 65536


def rmsprop_update(theta, grad, v, m, lr, decay, momentum, weight_decay, eps, scratch, block=BLOCK):
    """The fast version of :func:`rmsprop_update_plain`: the same operations in the same
    order, block by block, in place.

    theta, v, m: C-contiguous arrays of one shape (updated in place); grad: same shape;
    scratch: two flat arrays of theta's dtype with at least ``min(block, theta.size)``
    elements each, and optionally a third, bool, as long (the cheaper subnormal flush of
    :func:`_flush_subnormal`; the GPU goes without); block: elements per block (None: the
    whole array at once).
    """
    flat = [a.reshape(-1) for a in (theta, grad, v, m)]  # views: theta, v, m are contiguous
    size = theta.size
    block = size if block is None else block
    tiny = xp.finfo(theta.dtype).tiny
    for lo in range(0, size, block):
        hi = min(lo + block, size)
        th, gr, vv, mm = (a[lo:hi] for a in flat)
        g, tmp = scratch[0][: hi - lo], scratch[1][: hi - lo]
        flags = scratch[2][: hi - lo] if len(scratch) > 2 else None
        xp.multiply(th, weight_decay, out=g)  # g = ∇ + λθ
        g += gr
        xp.multiply(g, g, out=tmp)  # v ← ρv + (1-ρ)g²
        tmp *= 1.0 - decay
        vv *= decay
        vv += tmp
        xp.sqrt(vv, out=tmp)  # m ← μm + g / (√v + ε)
        tmp += eps
        xp.divide(g, tmp, out=tmp)
        mm *= momentum
        mm += tmp
        xp.multiply(mm, lr, out=tmp)  # θ ← θ - ηm
        th -= tmp
        _flush_subnormal(th, tmp, flags)  # subnormal numbers -> 0, while the block is in cache
        _flush_subnormal(mm, tmp, flags)
        if flags is None:  # v >= 0 (or NaN), so |v| = v: one pass fewer
            xp.greater_equal(vv, tiny, out=tmp)
            vv *= tmp
        else:
            xp.less(vv, tiny, out=flags)
            _zero_flagged(vv, flags)


class RMSprop:
    """rmsprop state for one dict of parameters; :meth:`step` updates them in place.

    params: {name: array} on the selected backend. Hyper-parameters (see module docstring):
    decay ρ, momentum μ, weight_decay λ, eps ε. ``lr_scale``: optional {name: factor}
    giving a parameter the learning rate ``factor · lr`` (``train`` slows the ReLU LSTM's
    ``U_r`` this way, see docs/training.md).
    """

    def __init__(self, params, decay=0.9, momentum=0.9, weight_decay=1e-4, eps=1e-8, lr_scale=None):
        self.decay, self.momentum = decay, momentum
        self.weight_decay, self.eps = weight_decay, eps
        self.lr_scale = dict(lr_scale or {})
        self.v = {k: xp.zeros_like(p) for k, p in params.items()}
        self.m = {k: xp.zeros_like(p) for k, p in params.items()}
        # Blocks on the CPU only: on the GPU every operation is a kernel launch (module docstring).
        self.block = None if backend.name() == "cupy" else BLOCK
        # dtype -> flat scratch arrays: g of the equations; g², then the step; on the CPU a bool
        # one for the subnormal flush (_flush_subnormal)
        self._scratch = {}

    def _scratch_for(self, theta):
        size = theta.size if self.block is None else min(self.block, theta.size)
        key = xp.dtype(theta.dtype).str
        have = self._scratch.get(key)
        if have is None or have[0].size < size:
            flags = () if self.block is None else (xp.empty(size, bool),)
            have = self._scratch[key] = (xp.empty(size, theta.dtype), xp.empty(size, theta.dtype), *flags)
        return have

    def step(self, params, grads, lr):
        """One update with learning rate η = ``lr`` of every parameter that has a gradient;
        params change in place."""
        hyper = (self.decay, self.momentum, self.weight_decay, self.eps)
        for name, grad in grads.items():
            theta, v, m = params[name], self.v[name], self.m[name]
            lr_name = lr * self.lr_scale.get(name, 1.0)
            if theta.flags.c_contiguous:
                rmsprop_update(theta, grad, v, m, lr_name, *hyper, self._scratch_for(theta), self.block)
            else:  # a view into a larger array: reshape would copy, so update it as it is
                rmsprop_update_plain(theta, grad, v, m, lr_name, *hyper)

    def state_dict(self):
        """The optimizer state as host arrays, {"v/<name>": ..., "m/<name>": ...}, for checkpoints."""
        return _moments_to_host({"v": self.v, "m": self.m})

    def load_state_dict(self, state):
        """Restore ``v`` and ``m`` from :meth:`state_dict` output (host arrays); shapes must match."""
        _moments_from_host({"v": self.v, "m": self.m}, state)


class Adam:
    """Adam state for one dict of parameters; :meth:`step` updates them in place.

    params: {name: array} on the selected backend. Hyper-parameters (see module docstring):
    weight_decay λ, beta1 β1, beta2 β2, eps ε. ``decayed``: the names of the parameters
    that get weight decay (default all; ``pretrain`` decays the weight matrices, not the
    biases). Every parameter must have a gradient at every step.
    """

    def __init__(self, params, weight_decay=0.0, beta1=0.9, beta2=0.999, eps=1e-8, decayed=None):
        self.weight_decay, self.beta1, self.beta2, self.eps = weight_decay, beta1, beta2, eps
        self.decayed = set(params if decayed is None else decayed)
        self.m = {k: xp.zeros_like(p) for k, p in params.items()}
        self.v = {k: xp.zeros_like(p) for k, p in params.items()}
        self.t = 0  # steps taken

    def step(self, params, grads, lr):
        """One update with learning rate η = ``lr`` of every parameter; params change in place."""
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t  # bias corrections
        for k, p in params.items():
            g = grads[k] + self.weight_decay * p if k in self.decayed else grads[k]
            self.m[k] *= self.beta1
            self.m[k] += (1 - self.beta1) * g
            self.v[k] *= self.beta2
            self.v[k] += (1 - self.beta2) * g * g
            p -= (lr / c1) * self.m[k] / (xp.sqrt(self.v[k] / c2) + self.eps)

    def state_dict(self):
        """The optimizer state as host arrays, {"m/<name>": ..., "v/<name>": ..., "t": 0-d int64}."""
        state = _moments_to_host({"m": self.m, "v": self.v})
        state["t"] = np.array(self.t, dtype=np.int64)
        return state

    def load_state_dict(self, state):
        """Restore ``m``, ``v`` and the step count from :meth:`state_dict` output; shapes must match."""
        _moments_from_host({"m": self.m, "v": self.v}, state)
        self.t = int(state["t"])
