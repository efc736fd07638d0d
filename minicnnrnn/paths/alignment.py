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
path loss with the chosen targets; ``gradcheck/cases_paths.py`` checks the training loss that
runs (``training.kinds``, ``--label-order pla`` / ``mla``) against finite differences of the
whole function, alignment included. Like the other searches of ``paths/`` this knows no
model: it runs the model's one-step decoder ``step`` (``rnn.model.make_step``).

Shapes: N images, K labels, T steps (the largest label count of the batch), E, H as usual.
"""

import numpy as np
from scipy.optimize import linear_sum_assignment

from minicnnrnn.core import backend
from minicnnrnn.core.backend import xp
from minicnnrnn.paths import grammar, label_paths, tokens

ALIGNED = ("pla", "mla")


def rollout(step, N, T):
    """Greedy decoding of T labels per image, the model fed its own predictions.

    step: the model's one-step decoder of N images (``model.make_step``). END is never
    chosen and no label is chosen twice (``grammar.forbid`` with ``min_labels = T``).
    Returns host arrays (pred (T, N) int64 labels, logp (T, N, K) float64 log-softmax of
    the Eq. 5 scores over the K + 1 outputs, restricted to the K labels).
    """
    K = tokens.n_labels_of_step(step)
    rows = xp.arange(N)
    used = xp.zeros((N, K), dtype=bool)
    prev, state, preds, logps = None, None, [], []  # None: the step feeds START
    for t in range(T):
        lp, state = step(prev, state, rows)
        lp = lp.astype(xp.float64)
        logps.append(lp[:, :K])
        choice = grammar.forbid(lp.copy(), used, t, T, T)[:, :K].argmax(axis=1)
        used[xp.arange(N), choice] = True
        preds.append(choice)
        prev = choice
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


def aligned_paths(step, labels, how):
    """Training paths of a batch in the model's own order: (inputs, targets, mask), (T, N) host
    arrays as ``label_paths.make_paths`` gives them. step: the model's one-step decoder of
    the batch's N images; labels: (N, K) 0/1 host; how: "mla" or "pla"."""
    labels = np.asarray(labels)
    T = int(labels.sum(axis=1).max(initial=0))
    pred, logp = rollout(step, len(labels), T)
    return label_paths.paths_from_sequences(align(labels, pred, logp, how), labels.shape[1])
