"""rmsprop with momentum and weight decay, and gradient clipping by global norm (§3.4, §4).

The paper trains with rmsprop (Tieleman & Hinton) "to avoid the gradient vanishing/exploding
issues", with weight decay 1e-4 and momentum 0.9. For every parameter array ``θ`` with
gradient ``∇`` (already clipped, see below) one step is::

    g  = ∇ + λ θ                    # weight decay λ (L2 penalty λ/2 |θ|², all parameters)
    v ← ρ v + (1 - ρ) g²            # running mean of squared gradients, decay ρ
    m ← μ m + g / (√v + ε)          # momentum μ on the rmsprop-scaled step
    θ ← θ - η m                     # learning rate η

``v`` and ``m`` start at 0. These are exactly the equations of torch.optim.RMSprop with
``alpha=ρ, eps=ε, weight_decay=λ, momentum=μ`` (tests/test_rmsprop.py checks it), so
results can be compared one to one.

Clipping by global norm rescales all gradients together when their joint length exceeds
``max_norm``: ``∇ ← ∇ · max_norm / ‖(∇_1, ∇_2, ...)‖``. It keeps the direction of the step
and keeps one exploding BPTT gradient from flooding ``v``. (It does not bound the step
itself: rmsprop's step is about η per entry whatever the gradient's size.)

A parameter may get its own learning rate ``factor · η`` (``RMSprop(..., lr_scale={name:
factor})``): ``train`` slows the recurrent matrix ``U_r`` of the ReLU LSTM this way. Because
rmsprop divides by √v, every entry moves by about η per step however small its gradient;
when the inputs of a matrix are all ≥ 0 (the ReLU LSTM's state r(t)) the moves add up and
change each output by up to η·Σ|input|, which in a recurrence feeds on itself
(docs/training.md, "Stability").

Everything updates in place (``out=`` arguments and two preallocated scratch buffers per
parameter), so a step makes no temporary arrays: on the CPU large temporaries cost page
faults, on the GPU allocations.
"""

import math

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp


def global_norm(grads):
    """√(Σ_arrays Σ_elements ∇²) of a dict of gradient arrays, as a Python float."""
    total = 0.0
    for g in grads.values():
        flat = g.reshape(-1)
        total += float(xp.dot(flat, flat))  # a dot product: no squared temporary
    return math.sqrt(total)


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


class RMSprop:
    """rmsprop state for one dict of parameters; :meth:`step` updates them in place.

    params: {name: array} on the selected backend. Hyper-parameters (see module docstring):
    lr η, decay ρ, momentum μ, weight_decay λ, eps ε. ``lr_scale``: optional {name: factor}
    giving a parameter the learning rate ``factor · η`` (``train`` slows the ReLU LSTM's
    ``U_r`` this way, see docs/training.md).
    """

    def __init__(self, params, lr=1e-3, decay=0.9, momentum=0.9, weight_decay=1e-4, eps=1e-8, lr_scale=None):
        self.lr, self.decay, self.momentum = lr, decay, momentum
        self.weight_decay, self.eps = weight_decay, eps
        self.lr_scale = dict(lr_scale or {})
        self.v = {k: xp.zeros_like(p) for k, p in params.items()}
        self.m = {k: xp.zeros_like(p) for k, p in params.items()}
        self._g = {k: xp.empty_like(p) for k, p in params.items()}  # g of the equations
        self._tmp = {k: xp.empty_like(p) for k, p in params.items()}  # g², then the step

    def step(self, params, grads):
        """One update of every parameter that has a gradient; params change in place."""
        for name, grad in grads.items():
            lr = self.lr * self.lr_scale.get(name, 1.0)
            self._update(params[name], grad, lr, self.v[name], self.m[name], self._g[name], self._tmp[name])

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

    def state_dict(self):
        """The optimizer state as host arrays, {"v/<name>": ..., "m/<name>": ...}, for checkpoints."""
        out = {f"v/{k}": backend.to_host(a) for k, a in self.v.items()}
        out.update({f"m/{k}": backend.to_host(a) for k, a in self.m.items()})
        return out

    def load_state_dict(self, state):
        """Restore ``v`` and ``m`` from :meth:`state_dict` output (host arrays); shapes must match."""
        for kind, store in (("v", self.v), ("m", self.m)):
            for name, current in store.items():
                saved = state[f"{kind}/{name}"]
                if tuple(saved.shape) != tuple(current.shape):
                    raise ValueError(f"optimizer state {kind}/{name} has shape {saved.shape}, expected {current.shape}")
                store[name][...] = backend.to_device(saved, current.dtype)
