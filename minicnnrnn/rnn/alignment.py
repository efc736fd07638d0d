"""Orderless training targets (beyond the paper): ``--label-order pla`` and ``mla``.

The paper fixes one label order for all images (§3.4). Yazici et al. (CVPR 2020,
"Orderless Recurrent Models for Multi-label Classification") instead let the model's own
predictions decide the order of each image's path, anew at every training step:

* **MLA**, minimal-loss alignment: the n ground-truth labels of an image are assigned to
  its first n steps so that the summed cross-entropy ``sum_t -log p_t(y_{a(t)})`` is
  smallest, a linear assignment problem solved exactly by the Hungarian algorithm
  (``scipy.optimize.linear_sum_assignment``).
* **PLA**, predicted-label alignment: where the model's prediction at step t is one of
  the image's labels, that label stays at step t; the remaining labels go to the
  remaining steps by the same minimal-loss assignment.

Here ``p_t`` is the label distribution at step t of a greedy rollout (:func:`rollout`):
the model, without dropout, is fed its own most probable label at each step (no label
twice, END not allowed), for as many steps as the image has labels. The aligned label
sequence then becomes an ordinary training path (``label_paths.paths_from_sequences``)
and is trained exactly as before: teacher forcing and the hand-written BPTT of
``model.path_loss``. (Yazici et al. feed the predictions during training as well; we
keep the paper's teacher forcing, so the alignment's ``p_t`` come from the rollout's
prefixes, an approximation of the training pass's.) The assignment is a discrete choice
that does not move under a small change of the parameters, so the gradient is that of the
path loss with the chosen targets; ``gradcheck_cases.aligned_loss_case`` checks it against
finite differences of the whole function, alignment included.

Shapes: N images, K labels, T steps (the largest label count of the batch), E, H as usual.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.rnn import beam_search, label_paths, model, projection
from minicnnrnn.rnn.tokens import start_token

ALIGNED = ("pla", "mla")


def rollout(params, I, T, variant="relu", step_fn=None):
    """Greedy decoding of T labels per image, the model fed its own predictions.

    params: backend arrays; I: (N, D) on the backend; step_fn: the model's step (None:
    ``beam_search.cnn_rnn_step``). END is never chosen and no label is chosen twice.
    Returns host arrays (pred (T, N) int64 labels, logp (T, N, K) float64 log-softmax of
    the Eq. 5 scores over the K + 1 outputs, restricted to the K labels).
    """
    step_fn = step_fn or beam_search.cnn_rnn_step
    K = params["U_l"].shape[0] - 2
    N = I.shape[0]
    image = projection.image_and_bias(I, params)
    tokens = xp.full(N, start_token(K), dtype=xp.int64)
    used = xp.zeros((N, K), dtype=bool)
    state, preds, logps = None, [], []
    for _ in range(T):
        lp, state = step_fn(params, tokens, state, image, variant)
        lp = lp[:, :K].astype(xp.float64)
        logps.append(lp)
        choice = xp.where(used, -np.inf, lp).argmax(axis=1)
        used[xp.arange(N), choice] = True
        preds.append(choice)
        tokens = choice
    if T == 0:
        return np.zeros((0, N), np.int64), np.zeros((0, N, K))
    return backend.to_host(xp.stack(preds)), backend.to_host(xp.stack(logps))


def align(labels, pred, logp, how):
    """The aligned label sequence of every image (module docstring).

    labels: (N, K) 0/1 host; pred: (T, N) and logp: (T, N, K) from :func:`rollout` with
    T >= the largest label count; how: "mla" or "pla". Returns a list of N int64 arrays,
    image n's labels in path order. Steps from an image's first non-finite ``logp`` on
    (an overflowing rollout) take its remaining labels in label order.
    """
    if how not in ALIGNED:
        raise ValueError(f"unknown alignment {how!r}")
    sequences = []
    for n, row in enumerate(np.asarray(labels)):
        truth = np.flatnonzero(row)
        m = truth.size
        # A free-running uncapped ReLU LSTM (--variant relu) can overflow on long rollouts (its
        # gates grow with its state, docs/training.md "Stability" 4.): from the first step that is not finite on,
        # the model has no opinion, so those steps take the labels that are left, in label order.
        finite = np.isfinite(logp[:m, n]).all(axis=1)
        m_ok = int(np.argmin(finite)) if not finite.all() else m
        seq = np.full(m, -1, dtype=np.int64)
        steps, todo = np.arange(m_ok), truth
        if how == "pla":
            hit = np.isin(pred[:m_ok, n], truth)
            seq[:m_ok][hit] = pred[:m_ok, n][hit]
            steps, todo = np.flatnonzero(~hit), truth[~np.isin(truth, seq)]
        if todo.size and steps.size:
            cost = -logp[steps[:, None], n, todo[None, :]]  # (steps, labels)
            rows, cols = linear_sum_assignment(cost)
            seq[steps[rows]] = todo[cols]
        left = truth[~np.isin(truth, seq)]
        seq[seq < 0] = left  # steps m_ok .. m-1: every step before them has its label already
        sequences.append(seq)
    return sequences


def aligned_paths(params, I, labels, how, variant="relu", step_fn=None):
    """Training paths of a batch in the model's own order: (inputs, targets, mask), (T, N) host
    arrays as ``label_paths.make_paths`` gives them. labels: (N, K) 0/1 host; I on the backend."""
    labels = np.asarray(labels)
    T = int(labels.sum(axis=1).max(initial=0))
    pred, logp = rollout(params, I, T, variant, step_fn)
    return label_paths.paths_from_sequences(align(labels, pred, logp, how), labels.shape[1])


def aligned_path_loss(params, I, labels, how, variant="relu", dropout_mask=None):
    """The CNN-RNN's path loss (§3.4) on PLA/MLA-aligned paths. Returns (loss, grads)."""
    inputs, targets, mask = (backend.to_device(a) for a in aligned_paths(params, I, labels, how, variant))
    if dropout_mask is not None:
        dropout_mask = dropout_mask[: inputs.shape[0]]
    return model.path_loss(params, I, inputs, targets, mask, variant, dropout_mask)
