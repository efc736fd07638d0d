"""The token alphabet of a label path (§3.1): the one place that says which number means what.

With K labels a path is written with K + 2 tokens::

    0 .. K-1   the labels
    K          END    closes every path (an output, never an input)
    K + 1      START  the first input (an input, never an output)

So the embedding matrix ``U_l`` has K + 2 rows (every token is an input), and the Eq. 5 scores
have K + 1 columns (every token but START is an output).
"""

from minicnnrnn.core.backend import xp


def end_token(K):
    """The END token that closes every path: K."""
    return K


def start_token(K):
    """The START token fed at the first step: K + 1."""
    return K + 1


def n_outputs(K):
    """Number of Eq. 5 outputs (the K labels and END): K + 1."""
    return K + 1


def n_tokens(K):
    """Number of embedded tokens, rows of ``U_l`` (labels, END, START): K + 2."""
    return K + 2


def n_labels(U_l):
    """K, read from the label embedding ``U_l: (K + 2, E)`` (one row per token)."""
    return U_l.shape[0] - 2


def n_labels_of_step(step):
    """K of a one-step decoder (``rnn.model.make_step``): the width of its output, K + 1,
    less END. It is asked about zero rows, which costs nothing."""
    log_probs, _ = step(None, None, xp.zeros(0, dtype=xp.int64))
    return log_probs.shape[1] - 1
