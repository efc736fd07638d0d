"""Gradient checks of training on label paths that ``paths/`` makes: ``--label-order pla`` and
``mla`` (``paths/alignment.py``).

The function checked is the one training runs, the model kind's batch loss
(``training.kinds.KINDS[...].batch_loss``): the greedy rollout, the Hungarian alignment, the
dropout mask and the path loss, all recomputed inside every finite difference. The
alignment is piecewise constant in the parameters, so the gradient is that of the path
loss with the chosen targets; embeddings twice the usual size keep the step probabilities
apart, so that no near-tie in the assignment flips between two evaluations.
"""

import numpy

from minicnnrnn.core import backend
from minicnnrnn.core.numgrad import check
from minicnnrnn.gradcheck.cases_layers import randn
from minicnnrnn.training import config, kinds

LABELS = numpy.array([[1, 0, 1, 1, 0], [0, 1, 0, 0, 0], [1, 1, 0, 0, 1]])  # N = 3 images, K = 5


def small_config(model, K, D, E, H, variant="relu", label_order="freq"):
    """A RunConfig for a float64 check: the model's sizes, dropout 0.25."""
    return config.RunConfig(
        model=model, K=K, D=D, E=E, H=H, variant=variant, cnn=None, label_order=label_order, dropout=0.25
    )


def batch_loss_check(cfg, params, I, labels, order=None, seed=7, epoch=0):
    """The largest relative error of the batch loss that the epoch loop runs in epoch ``epoch``
    (``KINDS[cfg.model].epoch_loss``: the kind's ``batch_loss``, with the epoch's stage for
    a staged kind) against finite differences. Every call gets a fresh Generator(seed): the
    same dropout mask (and WARP sample) each time."""
    batch_loss = kinds.KINDS[cfg.model].epoch_loss(cfg, epoch)
    order = numpy.arange(cfg.K) if order is None else order

    def run():
        return batch_loss(cfg, params, I, labels, order, numpy.random.default_rng(seed))

    _, grads = run()
    return check(lambda: run()[0], params, grads)


def aligned_loss_case(how, model_name="cnn-rnn"):
    """Case function: the path model's batch loss with ``--label-order how`` (pla or mla)."""

    def case(rng):
        K, D, E, H = LABELS.shape[1], 4, 3, 4
        cfg = small_config(model_name, K, D, E, H, label_order=how)
        params = backend.params_to_device(kinds.KINDS[model_name].init(cfg, rng), numpy.float64)
        params["U_l"] *= 2.0  # distinct step probabilities: no near-ties in the assignment
        return batch_loss_check(cfg, params, randn(rng, len(LABELS), D), LABELS)

    return case


CASES = [
    ("cnn-rnn training loss, MLA-aligned paths", aligned_loss_case("mla")),
    ("cnn-rnn training loss, PLA-aligned paths", aligned_loss_case("pla")),
    ("no-rnn training loss, MLA-aligned paths", aligned_loss_case("mla", "no-rnn")),
]
