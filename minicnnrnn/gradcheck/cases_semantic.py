"""Gradient checks of the semantic interface (``rnn/semantic.py``, beyond the paper), as
training runs it: ``KINDS["sr-cnn-rnn"].epoch_loss(cfg, epoch)``, the function the epoch
loop calls, in an epoch of each of the three stages, for every LSTM variant.

Stage 1 checks the concepts' BCE (the bce network's parameters, ``c_U_I_x``, ``c_b_x``,
``c_U_l``, ``c_b_l``, with a dropout mask on its hidden layer), stage 2 the path loss of the
CNN-RNN on fixed concepts (the RNN's parameters), stage 3 both, where the path loss's
gradient also flows back through the sigmoid of the concepts, the dropout and the ReLU of
the concept network into all four ``c_`` parameters. Only the parameters a stage trains
get gradients; the check covers exactly those.
"""

import dataclasses

import numpy

from minicnnrnn.core import backend
from minicnnrnn.gradcheck.cases_layers import randn
from minicnnrnn.gradcheck.cases_paths import LABELS, batch_loss_check, small_config
from minicnnrnn.rnn import lstm, semantic
from minicnnrnn.training import kinds


def sr_stage_case(stage, variant):
    """Case function: the sr-cnn-rnn batch loss in an epoch of ``stage`` (1, 2, 3)."""

    def case(rng):
        K, D, E, H = LABELS.shape[1], 4, 3, 4
        cfg = small_config("sr-cnn-rnn", K, D, E, H, variant=variant)
        cfg = dataclasses.replace(cfg, sr_concept_epochs=1, sr_rnn_epochs=1)
        epoch = stage - 1  # one epoch per stage: epoch 0 is stage 1, 1 stage 2, 2 stage 3
        assert semantic.stage_at(epoch, 1, 1) == stage
        params = backend.params_to_device(kinds.KINDS[cfg.model].init(cfg, rng), numpy.float64)
        # concepts away from 0.5 and from each other, so that c (1 - c) varies
        params["c_b_l"] = params["c_b_l"] + randn(rng, K, scale=1.0)
        I = randn(rng, len(LABELS), D)
        return batch_loss_check(cfg, params, I, LABELS, order=numpy.array([2, 0, 4, 1, 3]), epoch=epoch)

    return case


CASES = [
    (f"sr-cnn-rnn training loss, stage {stage} ({variant})", sr_stage_case(stage, variant))
    for stage in sorted(semantic.STAGES)
    for variant in lstm.VARIANTS
]
