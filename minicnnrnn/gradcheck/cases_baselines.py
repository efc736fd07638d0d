"""Gradient checks of the baselines of Tables 1-3 (``baselines/``), as training runs them.

Each case checks the model kind's batch loss (``training.kinds.KINDS[...].batch_loss``, the
function the epoch loop calls) against centred finite differences in float64, with the same
dropout mask (and, for WARP, the same sampled violators) in every evaluation. KNN has no
gradient (it is fit once).
"""

import numpy

from minicnnrnn.core import backend
from minicnnrnn.gradcheck.cases_layers import randn
from minicnnrnn.gradcheck.cases_paths import LABELS, batch_loss_check, small_config
from minicnnrnn.training import kinds


def batch_loss_case(model_name):
    """Case function: ``KINDS[model_name].batch_loss`` on the frequency order's label paths
    (path models) or label sets (classifiers, WARP), with random biases so every term counts."""

    def case(rng):
        K, D, E, H = LABELS.shape[1], 4, 3, 4
        cfg = small_config(model_name, K, D, E, H)
        params = backend.params_to_device(kinds.KINDS[model_name].init(cfg, rng), numpy.float64)
        for name in ("b_e", "b_l", "b"):  # biases that start at 0
            if name in params:
                params[name] = params[name] + randn(rng, *params[name].shape, scale=0.1)
        if model_name == "warp":  # the initial weights are tiny: no margin would be violated
            params["W"] = params["W"] * 30.0
        return batch_loss_check(cfg, params, randn(rng, len(LABELS), D), LABELS, order=numpy.array([2, 0, 4, 1, 3]))

    return case


CASES = [
    ("no-rnn training loss (baselines/no_rnn.py)", batch_loss_case("no-rnn")),
    ("bce training loss (baselines/classifiers.py)", batch_loss_case("bce")),
    ("softmax training loss (baselines/classifiers.py)", batch_loss_case("softmax")),
    ("warp training loss (baselines/warp.py)", batch_loss_case("warp")),
]
