"""Decode-time levers of a trained CNN-RNN, scored on its validation split (and the test split).

    python benchmarks/ablate_decoding.py runs/cnn-rnn/best.npz

For a checkpoint of ``train`` on the built-in data (or ``--dataset npz:PATH``) this
rebuilds the run's validation split (same seed and ``val_fraction``) and scores:

* the default decoding (beam search, at most k labels, ``min_labels`` of the run);
* **no recurrence at decode time**: r(t-1) = 0 at every step (the model then sees the
  image and the previous label only, like the No-RNN ablation): does the state matter?
* **shortest path** ``min_labels`` = 1, 2, 3 (footnote 1): the CNN-RNN's paths are short
  (2.4 labels against 3.2 true on the built-in data); forcing more labels trades precision
  for recall;
* the beam width B = 1 (greedy) and 5.

Ranking metrics are left out (they do not depend on these settings except the recurrence);
``--presence`` adds mAP from P(label in path) for the default and the no-recurrence model.
"""

import argparse
import dataclasses
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from minicnnrnn import train  # noqa: E402
from minicnnrnn.core import backend  # noqa: E402
from minicnnrnn.evaluation import metrics  # noqa: E402
from minicnnrnn.paths import beam_search, presence  # noqa: E402
from minicnnrnn.rnn import model  # noqa: E402
from minicnnrnn.training import checkpoint, selection  # noqa: E402
from minicnnrnn.training import data as train_data  # noqa: E402


def no_state_step(params, I, variant):
    """The CNN-RNN's one-step decoder with r(t-1) = 0 always: the recurrence removed at decode time."""
    step = model.make_step(params, I, variant)
    return lambda prev, state, rows: step(prev, None, rows)


def score(cfg, params, features, labels, make_step=None, with_presence=False):
    """{C-F1, O-F1, L/img[, mAP]} of the decoded label sets (and P(label in path) ranking)."""
    I = backend.to_device(features[:])
    step = (make_step or model.make_step)(params, I, cfg.variant)
    res = beam_search.beam_search(step, len(I), cfg.beam, max_labels=cfg.k, min_labels=cfg.min_labels)
    pred = labels * 0
    paths = backend.to_host(res.paths)
    for n, path in enumerate(paths):
        pred[n, path[path >= 0]] = 1
    prf = metrics.precision_recall_f1(pred, labels)
    out = {"C-F1": 100 * prf["C-F1"], "O-F1": 100 * prf["O-F1"], "L/img": float(pred.sum(1).mean())}
    if with_presence:
        p, _, _ = presence.presence(step, len(I), None, cfg.min_labels, cfg.presence_samples)
        out["mAP"] = 100 * metrics.mean_average_precision(p, labels)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--presence", action="store_true")
    opts = p.parse_args(argv)
    state = checkpoint.load(opts.checkpoint)
    cfg, params = state["config"], backend.params_to_device(state["params"])
    argv = ["--dataset", cfg.dataset, "--n-train", str(opts.n_train), "--n-test", str(opts.n_test)]
    args = train.make_parser().parse_args(argv)
    data = selection.split_validation(train_data.load(args), cfg.val_fraction, cfg.seed).with_norm(cfg.feature_norm)
    variants = {"default": (cfg, None), "r(t) = 0 when decoding": (cfg, no_state_step)}
    for m in (1, 2, 3):
        variants[f"min_labels {m}"] = (dataclasses.replace(cfg, min_labels=m), None)
    for b in (1, 5):
        variants[f"beam {b}"] = (dataclasses.replace(cfg, beam=b), None)
    splits = {"val": (data.val_features, data.val_labels), "test": (data.test_features, data.test_labels)}
    print(f"{opts.checkpoint}: {cfg.model}, order {cfg.label_order}, seed {cfg.seed}, k {cfg.k}")
    print("| decoding | " + " | ".join(f"{s} C-F1 | {s} O-F1 | {s} L/img" for s in splits) + " |")
    for name, (c, step) in variants.items():
        cells = []
        for f, y in splits.values():
            r = score(c, params, f, y, step, opts.presence and name in ("default", "r(t) = 0 when decoding"))
            cells += [f"{r['C-F1']:.1f}", f"{r['O-F1']:.1f}", f"{r['L/img']:.2f}"]
            cells += [f"mAP {r['mAP']:.1f}"] if "mAP" in r else []
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
