"""The semantic interface: the CNN-RNN on top of per-label concepts (beyond the paper).

Liu et al., "Semantic Regularisation for Recurrent Image Annotation" (CVPR 2017), put a
layer of K concept probabilities between the CNN and the RNN. Here the concept layer is the
project's BCE classifier, the very network of the bce baseline (``layers/classifier.py``:
the image half of Eq. 4, ReLU, dropout, one score per label), trained with one sigmoid per
label (binary cross-entropy), and the RNN of §3.2 sees its probabilities as its image::

    a = classifier(I)                                    # (N, K) concept scores (the bce network)
    c = sigmoid(a)                                       # (N, K) P(label l on the image)
    x_t = ReLU(o(t) @ U_o_x + c @ U_I_x + b_x)           # Eq. 4 with c as the image: U_I_x (K, E)

everything else is rnn/model.py's CNN-RNN (Eq. 1, 2, 5). Why: the independent classifiers
already give good per-label evidence; the RNN then only has to model how labels go together
(the order to name them in, when to stop, which exclude each other), on a K-dimensional
input whose units mean one label each, instead of learning the evidence from I as well.

The joint loss of a batch (stage 3)::

    loss = bce_weight * BCE(a, y) + path loss (§3.4)

and the path loss's gradient reaches the concept network through c (``dc * c (1 - c)``
added to the BCE's gradient of a). Training goes in three stages (:data:`STAGES`, the
``stage`` of :func:`sr_loss`; which epochs run which: :func:`stage_at`):

========= ================ =========== =================================================
stage     train_concepts   train_rnn   loss, and the parameters that get gradients
========= ================ =========== =================================================
1         True             False       bce_weight * BCE: the ``c_`` ones (no RNN is run)
2         False            True        path loss: the RNN's parameters; c is a fixed input
3         True             True        both terms: every parameter
========= ================ =========== =================================================

Parameters, one flat dict (rmsprop and checkpoints keep it flat): those of
``model.init_params`` with D = K (so ``U_I_x: (K, E)``), plus the concept network's under
the prefix :data:`CONCEPT` (``c_``), since both halves have a ``U_I_x``, ``b_x`` and
``U_l``: ``c_U_I_x: (D, E)``, ``c_b_x: (E,)``, ``c_U_l: (K, E)``, ``c_b_l: (K,)``, drawn
first from the seed, exactly as the bce baseline draws its own. The concept network's hidden
layer has the run's dropout in the stages that train it (1 and 3; the mask is drawn by the
caller); in stage 2 and at inference c is computed without dropout. Decoding runs the
CNN-RNN's own one-step decoder on the concepts, ``model.make_step(params,
concept_probabilities(params, I), variant)``, so every search of ``paths/`` (beam search,
P(label in path)) works on this model unchanged.
"""

import numpy

from minicnnrnn.layers import classifier, loss
from minicnnrnn.rnn import model

# The prefix of the concept network's parameters in the model's one flat dict.
CONCEPT = "c_"

# {stage: (train_concepts, train_rnn)}: which half of the model a stage trains.
STAGES = {1: (True, False), 2: (False, True), 3: (True, True)}


def sr_init_params(K, D, E, H, rng, variant, dtype=numpy.float32):
    """Fresh parameters of the semantic-interface model, drawn on the host from ``rng``.

    K labels, D CNN feature size, E embedding size (also the concept network's hidden size,
    as in the bce baseline), H LSTM size; variant: the LSTM's (see ``model.init_params``).
    Returns host arrays: first the concept network's, ``classifier.init_classifier(K, D, E,
    rng)`` under the prefix ``c_`` (the same draws as the bce baseline's from the same seed),
    then the CNN-RNN's with ``U_I_x: (K, E)``.
    """
    concepts = classifier.init_classifier(K, D, E, rng, dtype)
    params = {CONCEPT + name: value for name, value in concepts.items()}
    params.update(model.init_params(K, K, E, H, rng, variant, dtype))
    return params


def concept_forward(I, params, dropout_mask=None):
    """Concept scores ``a``: the bce network (``classifier.classifier_forward``) on the ``c_``
    parameters. I: (N, D); dropout_mask: None or (N, E) on its hidden layer.
    Returns (a (N, K), cache)."""
    return classifier.classifier_forward(I, {name: params[CONCEPT + name] for name in classifier.PARAMS}, dropout_mask)


def concept_backward(dscores, cache):
    """Backward of :func:`concept_forward`. dscores: (N, K). Returns the gradients of the
    ``c_`` parameters, {"c_U_I_x": (D, E), "c_b_x": (E,), "c_U_l": (K, E), "c_b_l": (K,)}
    (the CNN feature is fixed, so no gradient for I)."""
    return {CONCEPT + name: grad for name, grad in classifier.classifier_backward(dscores, cache).items()}


def concept_probabilities(params, I):
    """The image the RNN sees: ``c = sigmoid(a)``, without dropout. I: (n, D) -> (n, K) on
    the backend. Also the model's per-label probabilities after stage 1 (its BCE classifier).
    """
    return loss.sigmoid(concept_forward(I, params)[0])


def stage_at(epoch, concept_epochs, rnn_epochs):
    """The training stage (1, 2 or 3) of epoch ``epoch`` (0-based): the first
    ``concept_epochs`` epochs train the concepts alone, the next ``rnn_epochs`` the RNN alone
    on the fixed concepts, every later epoch both (the module docstring's table)."""
    if epoch < concept_epochs:
        return 1
    return 2 if epoch < concept_epochs + rnn_epochs else 3


def sr_loss(
    params,
    I,
    labels01,
    inputs,
    targets,
    mask,
    variant,
    stage=3,
    dropout_mask=None,
    concept_dropout_mask=None,
    bce_weight=1.0,
):
    """Loss and gradients of a batch in one training stage (the module docstring's table).

    params: backend arrays (:func:`sr_init_params`); I: (N, D) CNN features; labels01: (N, K)
    0/1 label sets (the BCE targets); inputs, targets, mask: (T, N) the label paths
    (``label_paths.make_paths``; None in stage 1, which runs no RNN); variant: the LSTM's;
    stage: 1, 2 or 3 (:data:`STAGES`); dropout_mask: None or (T, N, E) for Eq. 4's output;
    concept_dropout_mask: None or (N, E) for the concept network's hidden layer (the stages
    that train the concepts; in stage 2 c is a fixed input, so pass None); bce_weight: the
    BCE term's weight (in stage 1, alone, it scales the gradient, which rmsprop largely divides out).
    Returns (loss: float, grads): grads holds only the parameters the stage trains.
    """
    train_concepts, train_rnn = STAGES[stage]
    logits, concept_cache = concept_forward(I, params, concept_dropout_mask)
    c = loss.sigmoid(logits)  # (N, K): the image of Eq. 4
    value, grads, dlogits = 0.0, {}, None
    if train_concepts:
        bce, dlogits = loss.sigmoid_cross_entropy(logits, labels01)  # the BCE baseline's loss
        value += bce_weight * bce
        dlogits *= bce_weight
    if train_rnn:
        scores, cache = model.path_forward(params, c, inputs, mask, variant, dropout_mask)  # Eq. 1, 2, 4, 5
        path, dscores = loss.softmax_cross_entropy(scores, targets, mask, out=scores)  # §3.4
        value += path
        if train_concepts:  # stage 3: the path loss also trains the concepts, through c
            grads, dc = model.path_backward(dscores, cache, image_grad=True)
            dlogits += dc * c * (1 - c)  # sigmoid'(a) = c (1 - c)
        else:  # stage 2: c is a fixed input, like the CNN feature of the plain CNN-RNN
            grads = model.path_backward(dscores, cache)
    if train_concepts:
        grads.update(concept_backward(dlogits, concept_cache))
    return value, grads
