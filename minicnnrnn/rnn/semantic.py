"""The semantic interface: the CNN-RNN on top of per-label concepts (beyond the paper).

Liu et al., "Semantic Regularisation for Recurrent Image Annotation" (CVPR 2017), put a
layer of K concept probabilities between the CNN and the RNN. Here it is a linear map of
the CNN feature, trained with one sigmoid per label (binary cross-entropy), and the RNN of
§3.2 sees these concepts as its image::

    a = I @ W_c + b_c                                    # (N, K) concept logits
    c = sigmoid(a)                                       # (N, K) P(label l on the image)
    x_t = ReLU(o(t) @ U_o_x + c @ U_I_x + b_x)           # Eq. 4 with c as the image: U_I_x (K, E)

everything else is rnn/model.py's CNN-RNN (Eq. 1, 2, 5). Why: the independent classifiers
already give good per-label evidence; the RNN then only has to model how labels go together
(the order to name them in, when to stop, which exclude each other), on a K-dimensional
input whose units mean one label each, instead of learning the evidence from I as well.

The joint loss of a batch (stage 3)::

    loss = bce_weight * BCE(a, y) + path loss (§3.4)

and the path loss's gradient reaches W_c, b_c through c (``dc * c (1 - c)`` added to the
BCE's gradient of a). Training goes in three stages, chosen by two flags of :func:`sr_loss`:

========= ================ =========== =================================================
stage     train_concepts   train_rnn   loss, and the parameters that get gradients
========= ================ =========== =================================================
1         True             False       bce_weight * BCE: W_c, b_c (the RNN is not run)
2         False            True        path loss: the RNN's parameters; c is a fixed input
3         True             True        both terms: every parameter
========= ================ =========== =================================================

Parameters: those of ``model.init_params`` with D = K (so ``U_I_x: (K, E)``), plus
``W_c: (D, K)`` and ``b_c: (K,)``. Decoding builds the model's step on
:func:`concept_probabilities` instead of I: any decoder that takes the CNN-RNN's params and
an image feature takes ``(params, c)``.
"""

import numpy

from minicnnrnn.layers import dense, loss
from minicnnrnn.rnn import embedding, lstm, model, projection


def sr_init_params(K, D, E, H, rng, variant, dtype=numpy.float32):
    """Fresh parameters of the semantic-interface model, drawn on the host from ``rng``.

    K labels, D CNN feature size, E embedding size, H LSTM size; variant: the LSTM's (see
    ``model.init_params``). Returns host arrays: the CNN-RNN's with ``U_I_x: (K, E)``, plus
    ``W_c: (D, K) ~ N(0, 1 / D)`` (unit-size logits for unit-size features) and ``b_c: (K,)``
    of zeros (every concept starts at 0.5).
    """
    params = model.init_params(K, K, E, H, rng, variant, dtype)
    params["W_c"] = (rng.standard_normal((D, K)) / numpy.sqrt(D)).astype(dtype)
    params["b_c"] = numpy.zeros(K, dtype=dtype)
    return params


def concept_forward(I, params):
    """Concept logits ``a = I @ W_c + b_c``. I: (N, D). Returns (a (N, K), cache)."""
    return dense.dense_forward(I, params["W_c"], params["b_c"])


def concept_backward(dlogits, cache):
    """Backward of :func:`concept_forward`. dlogits: (N, K). Returns {"W_c": (D, K), "b_c": (K,)}
    (the CNN feature is fixed, so no gradient for I)."""
    _dI, grads = dense.dense_backward(dlogits, cache)
    return {"W_c": grads["W"], "b_c": grads["b"]}


def concept_probabilities(params, I):
    """The image the RNN sees: ``c = sigmoid(I @ W_c + b_c)``. I: (n, D) -> (n, K) on the backend.

    Also the model's per-label probabilities of stage 1 (its BCE classifier).
    """
    return loss.sigmoid(concept_forward(I, params)[0])


def _path_backward(dscores, cache, image_grad):
    """``model.path_backward`` that can also return the gradient of its image input.

    dscores: (T, N, K + 1); cache: ``model.path_forward``'s. Returns (grads, dc (N, K) or
    None). The same chain as ``model.path_backward``, with ``image_grad`` passed to Eq. 4.
    """
    embed_cache, lstm_cache, proj_cache, score_cache = cache
    dx, score_grads = embedding.tied_scores_backward(dscores, score_cache)  # Eq. 5
    do, dc, grads = projection.projection_backward(dx, proj_cache, image_grad)  # Eq. 4
    dw, lstm_grads = lstm.lstm_backward(do, lstm_cache)  # Eq. 1
    grads.update(lstm_grads)
    grads["U_l"] = score_grads["U_l"] + embedding.embed_backward(dw, embed_cache)["U_l"]  # Eq. 2 and 5
    return grads, dc


def sr_loss(
    params,
    I,
    labels01,
    inputs,
    targets,
    mask,
    variant,
    bce_weight=1.0,
    dropout_mask=None,
    train_concepts=True,
    train_rnn=True,
):
    """Loss and gradients of a batch for one training stage (module docstring's table).

    params: backend arrays (:func:`sr_init_params`); I: (N, D) CNN features; labels01: (N, K)
    0/1 label sets (the BCE targets); inputs, targets, mask: (T, N) the label paths
    (``label_paths.make_paths``); variant: the LSTM's; bce_weight: the BCE term's weight
    (in stage 1 it only scales the step); dropout_mask: None or (T, N, E) for Eq. 4's output;
    train_concepts, train_rnn: the stage.
    Returns (loss: float, grads): grads holds only the parameters the stage trains.
    """
    if not (train_concepts or train_rnn):
        raise ValueError("sr_loss: train_concepts and train_rnn are both False: nothing to train")
    logits, concept_cache = concept_forward(I, params)
    c = loss.sigmoid(logits)
    value, grads, dlogits = 0.0, {}, None
    if train_concepts:
        bce, dlogits = loss.sigmoid_cross_entropy(logits, labels01)
        value += bce_weight * bce
        dlogits *= bce_weight
    if train_rnn:
        scores, cache = model.path_forward(params, c, inputs, mask, variant, dropout_mask)
        path, dscores = loss.softmax_cross_entropy(scores, targets, mask, out=scores)
        value += path
        grads, dc = _path_backward(dscores, cache, image_grad=train_concepts)
        if train_concepts:  # stage 3: the path loss also trains the concepts, through c
            dlogits += dc * c * (1 - c)
    if train_concepts:
        grads.update(concept_backward(dlogits, concept_cache))
    return value, grads
