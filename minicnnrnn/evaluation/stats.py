"""Comparisons over seeds: mean ± sd of one method, and the paired difference of two.

A single run's table is one draw: the seed picks the initialisation, the shuffles, the
dropout masks and the validation split, and moves the metrics by a point or two. So a
comparison trains every method on the same seeds and reads, per seed, the difference of
the two methods on that seed's split and features (a paired difference): what the seed
moves in both methods alike cancels. With differences d_1..d_n over n seeds,

    mean d = (1/n) sum_i d_i,   SE = sd(d) / sqrt(n),   sd with n - 1 in the denominator

and a method "beats" (or "trails") the other only where |mean d| > 2 SE
(:func:`is_clear`); within that the two are level at this number of seeds.

    mean, sd = mean_sd([61.0, 60.2, 62.1])
    diff, se = paired_difference(cnn_rnn_by_seed, bce_by_seed)    # same seeds, same order
"""

import math

import numpy as np

CLEAR = 2.0  # a difference counts where it exceeds this many standard errors


def _values(values, name):
    """values as a 1-D float array; NaNs kept (a run that failed, a metric a method lacks): the callers drop them."""
    a = np.asarray(values, dtype=float).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name}: no values")
    return a


def mean_sd(values):
    """(mean, sample standard deviation) of ``values`` (n,), NaNs ignored.
    sd is NaN for fewer than two values: one seed says nothing about the spread."""
    a = _values(values, "mean_sd")
    a = a[np.isfinite(a)]
    if a.size == 0:
        return math.nan, math.nan
    sd = float(np.std(a, ddof=1)) if a.size > 1 else math.nan
    return float(np.mean(a)), sd


def paired_difference(values, reference):
    """(mean, standard error) of ``values[i] - reference[i]`` over the seeds i.

    values, reference: (n,) the same seeds in the same order; a seed where either is NaN
    is left out of both. SE = sd of the differences / sqrt(n); NaN for n < 2."""
    a, b = _values(values, "paired_difference"), _values(reference, "paired_difference")
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.size} values against {b.size} reference values")
    d = (a - b)[np.isfinite(a) & np.isfinite(b)]
    mean, sd = mean_sd(d) if d.size else (math.nan, math.nan)
    return mean, sd / math.sqrt(d.size) if d.size > 1 else math.nan


def is_clear(diff, se):
    """Whether a paired difference exceeds CLEAR standard errors (False where SE is unknown)."""
    return bool(math.isfinite(diff) and math.isfinite(se) and abs(diff) > CLEAR * se)


def parse_seeds(text):
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,1,2"`` -> [0, 1, 2]; ``"3"`` -> [3]; mixed
    ``"0-2,7"`` too. Raises ValueError naming the text when it is not such a list."""
    seeds = []
    for part in text.split(","):
        lo, sep, hi = part.strip().partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"seeds {text!r}: expected e.g. 0-4, 0,1,2 or 3")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"seeds {text!r}: range {part.strip()} runs backwards")
        seeds += range(first, last + 1)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {text!r}: a seed is listed twice")
    return seeds
