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

rmsprop updates everything in place (``out=`` arguments and two preallocated scratch
buffers per parameter), so a step makes no large temporary arrays: on the CPU large
temporaries cost page faults, on the GPU allocations.

**Subnormal numbers are set to 0.** A weight whose gradient is always 0 (it feeds a gate
that is never active) still has weight decay, and once ``|g| < ε`` rmsprop's step is
``η λ θ / ε``: the weight shrinks geometrically and after some hundred steps falls below
float32's smallest normal number (1.2e-38); its ``v`` and ``m`` decay the same way. CPUs
compute with such *subnormal* numbers many times slower. One percent of them in ``U_r``
made every product with it about 4x slower (measured: a 23-step rollout of a trained
iaprtc12 model, 2.0 s against 0.5 s after setting them to 0, identical predictions), and
without the flush a pla epoch on iaprtc12 grew from 20 s to 130 s over training. So after
each step rmsprop sets the entries of θ, m and v below the smallest normal number to
exactly 0 (three in-place passes per parameter, no temporaries; GPUs would not need it, but
the same arithmetic on both backends keeps them comparable); no sum of float32 numbers of
ordinary size can tell the difference.
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


def _flush_subnormal(a, tmp):
    """Set the entries of ``a`` whose size is below the smallest normal number of its dtype
    to 0, in place (``tmp``: a scratch array of a's shape). NaN and inf are kept, so a
    diverged step is still seen as one."""
    xp.abs(a, out=tmp)
    xp.greater_equal(tmp, xp.finfo(a.dtype).tiny, out=tmp)  # 1 where |a| is normal, else 0
    a *= tmp


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
        self._g = {k: xp.empty_like(p) for k, p in params.items()}  # g of the equations
        self._tmp = {k: xp.empty_like(p) for k, p in params.items()}  # g², then the step

    def step(self, params, grads, lr):
        """One update with learning rate η = ``lr`` of every parameter that has a gradient;
        params change in place."""
        for name, grad in grads.items():
            lr_name = lr * self.lr_scale.get(name, 1.0)
            self._update(params[name], grad, lr_name, self.v[name], self.m[name], self._g[name], self._tmp[name])

    def _update(self, theta, grad, lr, v, m, g, tmp):
        # g = ∇ + λθ
        xp.multiply(theta, self.weight_decay, out=g)
        g += grad
        # v ← ρv + (1-ρ)g²
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - self.decay
        v *= self.decay
        v += tmp
        # m ← μm + g / (√v + ε)
        xp.sqrt(v, out=tmp)
        tmp += self.eps
        xp.divide(g, tmp, out=tmp)
        m *= self.momentum
        m += tmp
        # θ ← θ - ηm
        xp.multiply(m, lr, out=tmp)
        theta -= tmp
        for a in (theta, m, v):  # subnormal numbers -> 0 (module docstring: they only slow things down)
            _flush_subnormal(a, tmp)

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
