"""The rectified linear unit, ReLU(x) = max(x, 0), forward and backward.

VGG16 puts a ReLU after every convolution and every hidden fully connected
layer; the paper's Eq. 4 uses the same non-linearity for the joint embedding.
The derivative is 1 where the input was positive and 0 elsewhere (we take 0 at
exactly 0, as PyTorch does).

For pictures of what a network looks at (the paper's Fig. 10, after its ref. [40],
Zeiler and Fergus) the backward pass has two other rules (``rule=``):

* ``"deconvnet"``: the ReLU of a deconvolutional network, applied to the signal coming
  back: ``max(dout, 0)``, whatever the forward input was;
* ``"guided"``: guided backpropagation (Springenberg et al. 2015), both at once:
  ``max(dout, 0)`` where the forward output was positive, 0 elsewhere.

``"gradient"`` (the default) is the true derivative used for training.
"""

from minicnnrnn.core.backend import xp


def relu_forward(x):
    """ReLU of any array.

    x: any shape. Returns (out, cache) with out = max(x, 0), same shape and dtype.
    The cache is the output itself: out > 0 exactly where x > 0.
    """
    out = xp.maximum(x, 0)
    return out, out


RULES = ("gradient", "deconvnet", "guided")


def relu_backward(dout, cache, rule="gradient"):
    """Gradient through ReLU: dout where the forward output was positive, 0 elsewhere.

    dout: same shape as the forward output. Returns dx, same shape.
    rule: "gradient" (the derivative), "deconvnet" (``max(dout, 0)``) or "guided"
    (``max(dout, 0)`` where the output was positive); see the module docstring.
    """
    out = cache
    if rule == "gradient":
        return dout * (out > 0)
    if rule == "deconvnet":
        return xp.maximum(dout, 0)
    if rule == "guided":
        return xp.maximum(dout, 0) * (out > 0)
    raise ValueError(f"relu_backward: unknown rule {rule!r} (expected one of {', '.join(RULES)})")
