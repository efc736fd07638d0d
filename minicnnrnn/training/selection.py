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
    row = selection.validation_row(cfg, params, data)  # row["val_score"]

The scored epoch is the model: ``predict`` and ``analyze`` read a run folder's best.npz
(:func:`scored_checkpoint`) unless told otherwise, and say which file and epoch they use.
"""

import dataclasses
import math
import os

import numpy as np

from minicnnrnn.core.errors import UserError
from minicnnrnn.evaluation import metrics
from minicnnrnn.training import data as train_data
from minicnnrnn.training import kinds

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
    """What the best epoch maximises: O-F1 + C-F1 (fractions, from ``metrics.precision_recall_f1``).
    An undefined F1 (NaN: no validation image has a label) counts 0, the same for every epoch,
    so that the comparison of epochs stays a comparison of numbers."""
    return sum(0.0 if math.isnan(prf[key]) else prf[key] for key in ("O-F1", "C-F1"))


def validation_row(cfg, params, data):
    """The log entries of the model on ``data``'s validation split: the label sets of
    ``kinds.predict_sets`` (no ranking scores) scored by §4.1's metrics.
    Returns {"val_O-F1", "val_C-F1", "val_score"} in percent (val_score: :func:`selection_score`)."""
    pred, _ = kinds.predict_sets(cfg, params, data.val_features, ranking=False)
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


def decoding_candidates(cfg):
    """The decodings :func:`tune_decoding` tries, in its order of preference on ties: the
    run's own path decoding first; with ``cfg.tune_decoding`` or ``cfg.decode`` auto the
    beam widths (cfg.beam, 5) and shortest paths 0 .. k; with auto also the marginal
    decodings (at the run's min_labels: they rank by the same presence as the path)."""
    path = dataclasses.replace(cfg, decode="path")
    if cfg.decode not in ("auto", "path"):
        return [cfg]
    trials = [path]
    if cfg.tune_decoding or cfg.decode == "auto":
        for beam in dict.fromkeys((cfg.beam, 5)):
            trials += [dataclasses.replace(path, beam=beam, min_labels=m) for m in range(cfg.k + 1)]
    if cfg.decode == "auto":
        trials += [dataclasses.replace(cfg, decode=how) for how in ("marginal", "marginal-f1")]
    seen, unique = set(), []
    for trial in trials:  # each once, at its first place
        if (trial.decode, trial.beam, trial.min_labels) not in seen:
            seen.add((trial.decode, trial.beam, trial.min_labels))
            unique.append(trial)
    return unique


def describe(cfg):
    """A decoding in words: ``path (beam 3, min-labels 0)``, ``marginal``."""
    if cfg.decode == "path":
        return f"path (beam {cfg.beam}, min-labels {cfg.min_labels})"
    return cfg.decode


def tune_decoding(cfg, params, data):
    """The path models' decoding chosen on validation (``--decode auto``, ``--tune-decoding``):
    every :func:`decoding_candidates` trial scored by :func:`selection_score` on the validation
    split; the first of equal scores wins (the run's own path decoding first). Returns (cfg
    with the chosen decode, beam and min_labels, {"decode", "beam", "min_labels", "val_score",
    "tried": {description: val_score}})."""
    tried, best_cfg, best = {}, cfg, float("-inf")
    for trial in decoding_candidates(cfg):
        score = validation_row(trial, params, data)["val_score"]
        tried[describe(trial)] = score
        if score > best:
            best_cfg, best = trial, score
    chosen = {"decode": best_cfg.decode, "beam": best_cfg.beam, "min_labels": best_cfg.min_labels}
    return best_cfg, dict(chosen, val_score=best, tried=tried)


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
