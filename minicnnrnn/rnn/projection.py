"""Eq. 4: project the recurrent output and the image into the label-embedding space.

    x_t = ReLU(o(t) @ U_o_x + I @ U_I_x + b_x)        # Eq. 4, h = ReLU

``U_o_x: (H, E)`` maps the LSTM output, ``U_I_x: (D, E)`` maps the CNN feature ``I``,
``b_x: (E,)`` is a bias (optional: leave it out of ``params`` for Eq. 4 verbatim). The
image term ``I @ U_I_x`` (and the bias) is the same at every time step of a path, so it
is computed once per image and broadcast over time. A caller that runs the steps one
call at a time (beam search) computes it once with :func:`image_and_bias` and passes
it to :func:`projection_forward` as ``image=``.

Dropout (the paper uses rate 0.5 on the projection layers) is *inverted* dropout
on ``x_t`` during training: the caller passes a mask drawn on the host (see
``layers.dropout.make_mask``) whose entries are already scaled, i.e. ``0`` or
``1 / (1 - p)``, so that no rescaling is needed at test time (pass no mask).
"""

from minicnnrnn.core.backend import xp


def image_term(I, params):
    """The image half of Eq. 4. I: (N, D) -> (N, E), ``I @ U_I_x``."""
    return I @ params["U_I_x"]


def image_and_bias(I, params):
    """Everything in Eq. 4 that is the same at every time step: ``I @ U_I_x + b_x``.

    I: (N, D) -> (N, E).
    """
    term = image_term(I, params)
    if "b_x" in params:
        term += params["b_x"]
    return term


def projection_forward(o, I, params, dropout_mask=None, image=None):
    """Eq. 4 with optional inverted dropout.

    o: (T, N, H) or (N, H) LSTM outputs; I: (N, D) image features;
    params: U_o_x (H, E), U_I_x (D, E), optional b_x (E,);
    dropout_mask: None (no dropout) or an array shaped like x holding 0 or 1/(1-p);
    image: None, or the (N, E) ``image_and_bias(I, params)`` already computed by the
    caller; then I is not read here (pass it anyway if you will call :func:`projection_backward`).
    Returns (x, cache) with x: (T, N, E) or (N, E).
    """
    if image is None:
        image = image_and_bias(I, params)
    a = o @ params["U_o_x"]
    a += image  # (N, E), broadcast over time
    x = xp.maximum(a, 0, out=a)  # h = ReLU
    if dropout_mask is not None:
        x *= dropout_mask
    return x, (o, I, x, params, dropout_mask)


def projection_backward(dx, cache, image_grad=True):
    """Backward of :func:`projection_forward`.

    dx: shaped like x. Returns (do shaped like o, dI (N, D), grads) with grads
    holding U_o_x, U_I_x (and b_x if used). With ``image_grad=False`` dI is None
    (training keeps the CNN fixed, §3.4, so it skips this (N, D) product).
    """
    o, I, x, params, mask = cache
    da = dx * mask if mask is not None else dx.copy()
    da *= x > 0  # ReLU'; dropped units have x = 0 too
    H, E = params["U_o_x"].shape
    da_flat = da.reshape(-1, E)
    da_image = da.reshape(-1, I.shape[0], E).sum(axis=0)  # sum over time: (N, E)
    grads = {
        "U_o_x": o.reshape(-1, H).T @ da_flat,
        "U_I_x": I.T @ da_image,
    }
    if "b_x" in params:
        grads["b_x"] = da_flat.sum(axis=0)
    do = da @ params["U_o_x"].T
    dI = da_image @ params["U_I_x"].T if image_grad else None
    return do, dI, grads
