"""Honest model selection: a validation split of the training images, and the best epoch on it.

The test split is scored once, at the end, with the parameters chosen on validation; it
never picks an epoch or a setting. ``train --val-fraction F`` (default 0.1) holds out
``round(F * N)`` of the N training images, drawn by a generator seeded from ``--seed``
alone, so every model of a ``--compare`` run (and every run with the same seed and data)
holds out the same images. After each epoch the model predicts the validation label sets
(beam search for the path models, top-k for the classifiers; no ranking scores, which is
quick) and the epoch with the highest O-F1 + C-F1 (§4.1, k as for the test set) is kept:
its parameters go to ``OUT/best.npz`` (a checkpoint file, so ``predict --checkpoint
OUT/best.npz`` reads it), and they are what the test split is scored with.

    data = selection.split_validation(data, 0.1, seed)   # data.val_features, data.val_labels
    score, row = selection.validation_score(cfg, params, data)

The scored epoch is the model: ``predict`` and ``analyze`` read a run folder's best.npz
(:func:`scored_checkpoint`) unless told otherwise, and say which file and epoch they use.
"""

import dataclasses
import os

import numpy as np

from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.training import data as train_data
from minicnnrnn.training import models

_SPLIT_STREAM = 7919  # a second stream of the seed, apart from the training generator's


def split_validation(data, fraction, seed):
    """``data`` with ``round(fraction * N)`` training images moved to ``val_features`` /
    ``val_labels`` (at least one when fraction > 0), chosen by ``seed``; fraction 0: unchanged.
    Training images stay in their original order (sorted rows read memory-mapped files in order)."""
    if fraction <= 0:
        return data
    n = len(data.train_labels)
    n_val = max(1, int(round(fraction * n)))
    if n_val >= n:
        raise UserError(f"--val-fraction {fraction}: leaves no training image of {n}")
    perm = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    val, train = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    f = data.train_features
    return dataclasses.replace(
        data,
        train_features=train_data.Rows(f.array, f.rows[train], f.norm),
        train_labels=data.train_labels[train],
        val_features=train_data.Rows(f.array, f.rows[val], f.norm),
        val_labels=data.train_labels[val],
    )


def selection_score(prf):
    """What the best epoch maximises: O-F1 + C-F1 (fractions, from ``metrics.precision_recall_f1``)."""
    return prf["O-F1"] + prf["C-F1"]


def validation_row(cfg, params, data):
    """The log entries of the model on ``data``'s validation split: the label sets of
    ``models.predict_sets`` (no ranking scores) scored by §4.1's metrics.
    Returns {"val_O-F1", "val_C-F1", "val_score"} in percent (val_score: :func:`selection_score`)."""
    pred, _ = models.predict_sets(cfg, params, data.val_features, ranking=False)
    prf = {key: round(100 * value, 3) for key, value in metrics.precision_recall_f1(pred, data.val_labels).items()}
    return {"val_O-F1": prf["O-F1"], "val_C-F1": prf["C-F1"], "val_score": round(selection_score(prf), 3)}


def best_epoch(history):
    """(epoch, val_score) of the best validation score in a log history (the first of ties),
    or (None, -inf) when the history holds no validation scores."""
    best, score = None, float("-inf")
    for row in history:
        if row.get("val_score") is not None and row["val_score"] > score:
            best, score = row["epoch"], row["val_score"]
    return best, score


def scored_line(cfg, history):
    """What ``train`` prints after training: "scored epoch N of M (validation ...)"."""
    chosen, _ = best_epoch(history)
    if chosen is None:
        last = history[-1]["epoch"] if history else cfg.epochs
        return f"{cfg.model}: scored epoch {last} of {cfg.epochs} (the last: no validation split)"
    row = next(r for r in history if r["epoch"] == chosen)
    return (
        f"{cfg.model}: scored epoch {chosen} of {cfg.epochs} (validation O-F1 {row['val_O-F1']:.1f} "
        f"C-F1 {row['val_C-F1']:.1f}, the best of {len(history)} epochs; saved as best.npz)"
    )


def tune_decoding(cfg, params, data):
    """The path models' decoding settings chosen on validation (``--tune-decoding``): the
    beam width in (cfg.beam, 5) and the shortest path ``min_labels`` in 0 .. k, by
    :func:`selection_score`; the run's own settings win ties. Returns (cfg with the chosen
    beam and min_labels, {"beam", "min_labels", "val_score"})."""
    best_cfg, best = cfg, validation_row(cfg, params, data)["val_score"]
    for beam in dict.fromkeys((cfg.beam, 5)):
        for min_labels in range(cfg.k + 1):
            trial = dataclasses.replace(cfg, beam=beam, min_labels=min_labels)
            score = validation_row(trial, params, data)["val_score"]
            if score > best:
                best_cfg, best = trial, score
    return best_cfg, {"beam": best_cfg.beam, "min_labels": best_cfg.min_labels, "val_score": best}


def scored_checkpoint(path, last_epoch=False):
    """The checkpoint file that ``--checkpoint PATH`` means: a run folder gives the epoch
    train scored, RUN/best.npz (RUN/checkpoint.npz, the last epoch, with ``last_epoch`` or
    when the run had no validation split, whose last epoch is the one scored); a file is
    used as given."""
    if not os.path.isdir(path):
        if last_epoch:
            raise UserError(f"--last-epoch: give the run folder as --checkpoint (got the file {path})")
        return path
    best, last = os.path.join(path, "best.npz"), os.path.join(path, "checkpoint.npz")
    if not last_epoch and os.path.isfile(best):
        return best
    if not os.path.isfile(last):
        raise UserError(f"{path}: no checkpoint.npz in this folder (give a run folder written by train, or a .npz)")
    return last


def describe_checkpoint(path, state):
    """One line saying which model a command uses: the file, its epoch of the run's epochs,
    and whether it is the epoch train scored (best.npz beside checkpoint.npz says otherwise)."""
    epoch, epochs = state["epoch"], state["config"].epochs
    history = state["extra"].get("history") or []
    chosen, _ = best_epoch(history)
    if state["extra"].get("selected") == "validation":
        what = "the epoch train chose on validation and scored"
    elif chosen is None or chosen == epoch:
        what = "the last epoch, the one train scored" if epoch == epochs else "the last epoch written"
    else:
        what = f"the last epoch; train scored epoch {chosen}, in best.npz beside it"
    return f"using {path}: epoch {epoch} of {epochs} ({what})"
