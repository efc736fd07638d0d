"""NumPy and CuPy agree on the same seed, to float32 tolerance (part of benchmarks/gpu_check.sh).

    python benchmarks/gpu_agree.py                              # the in-process checks
    python benchmarks/gpu_agree.py --runs RUN_NUMPY RUN_CUPY    # + two finished `train` runs

In-process, the same host inputs (one numpy Generator, seed 0) go through both backends:

* one CNN-RNN training batch at the paper's E = 64, H = 512 (loss and every gradient),
  then 20 rmsprop steps on it (the parameters after them);
* beam search (N = 3) on 64 images: the paths must be identical, log-probabilities close;
* a VGG16-layout forward on 2 images of 64x64 (random weights): fc7 close.

With ``--runs``, the two runs' metrics.json must agree within 1 point (percent) and their
final parameters (checkpoint.npz) within a loose float32 tolerance: training for epochs
amplifies 1e-7 differences, so this is a sanity bound, not bitwise equality.

Prints one line per check (max relative difference, tolerance, PASS/FAIL); exit status 1 if
any check fails. The ``cupy`` here is whatever ``--backend cupy`` selects, so the script
also runs on a machine without a GPU under the test stand-in (tests/strict_site).
"""

import argparse
import json
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from tables import print_table  # noqa: E402  (benchmarks/tables.py, next to this script)

from minicnnrnn.cnn import vgg  # noqa: E402
from minicnnrnn.core import backend  # noqa: E402
from minicnnrnn.paths import beam_search, label_paths  # noqa: E402
from minicnnrnn.rnn import model  # noqa: E402
from minicnnrnn.training import optim  # noqa: E402

K, D, E, H, N = 81, 512, 64, 512, 64


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)) if a.size else 0.0


def training_batch(name):
    backend.use(name)
    rng = np.random.default_rng(0)
    params = backend.params_to_device(model.init_params(K, D, E, H, rng, "relu"))
    I = backend.to_device(np.maximum(rng.standard_normal((N, D)), 0).astype(np.float32))
    labels = (rng.random((N, K)) < 0.05).astype(np.uint8)
    labels[labels.sum(1) == 0, 0] = 1
    inputs, targets, mask = (backend.to_device(a) for a in label_paths.make_paths(labels, np.arange(K)))
    drop = backend.to_device(((rng.random(inputs.shape + (E,)) >= 0.5) * 2.0).astype(np.float32))
    value, grads = model.path_loss(params, I, inputs, targets, mask, "relu", drop)
    first = (value, backend.params_to_host(grads))
    opt = optim.RMSprop(params, lr_scale={"U_r": 0.01})  # as `train` does for the ReLU LSTM
    for _ in range(20):
        _, g = model.path_loss(params, I, inputs, targets, mask, "relu", drop)
        optim.clip_by_global_norm(g, 5.0)
        opt.step(params, g, 1e-4)
    return first, backend.params_to_host(params)


def beam(name):
    backend.use(name)
    rng = np.random.default_rng(1)
    params = backend.params_to_device(model.init_params(K, D, E, H, rng, "relu"))
    I = backend.to_device(rng.standard_normal((64, D)).astype(np.float32))
    r = beam_search.beam_search(model.make_step(params, I, "relu"), len(I), beam_size=3, max_labels=5)
    return backend.to_host(r.paths), backend.to_host(r.log_prob), backend.to_host(r.confidence)


def cnn(name):
    backend.use(name)
    rng = np.random.default_rng(2)
    meta = vgg.make_meta()
    params = backend.params_to_device(vgg.init_params(meta, rng))
    x = backend.to_device(rng.standard_normal((2, 64, 64, 3)).astype(np.float32))
    outs, _ = vgg.vgg_forward(params, meta, x, ("conv5_3",))
    return backend.to_host(outs["conv5_3"])


def compare_runs(run_np, run_cp, rows):
    missing = [r for r in (run_np, run_cp) if not os.path.isfile(os.path.join(r, "metrics.json"))]
    if missing:
        rows.append((f"train runs: {', '.join(missing)} unfinished", float("inf"), 0.0))
        return
    m_np = json.load(open(os.path.join(run_np, "metrics.json")))
    m_cp = json.load(open(os.path.join(run_cp, "metrics.json")))
    worst = max(abs(m_np[k] - m_cp[k]) for k in m_np)
    rows.append(("train runs: metrics (points)", worst, 1.0))
    a, b = np.load(os.path.join(run_np, "checkpoint.npz")), np.load(os.path.join(run_cp, "checkpoint.npz"))
    keys = [k for k in a.files if k.startswith("params/")]
    rows.append(("train runs: final parameters", max(rel(b[k], a[k]) for k in keys), 5e-2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", nargs=2, metavar=("RUN_NUMPY", "RUN_CUPY"), help="two finished `train --out` folders")
    ap.add_argument("--markdown", action="store_true", help="print the checks as one markdown table")
    args = ap.parse_args()
    rows = []
    (v_np, g_np), p_np = training_batch("numpy")
    (v_cp, g_cp), p_cp = training_batch("cupy")
    rows.append(("batch loss", rel(v_cp, v_np), 1e-5))
    rows.append(("batch gradients (worst parameter)", max(rel(g_cp[k], g_np[k]) for k in g_np), 1e-4))
    rows.append(("parameters after 20 rmsprop steps", max(rel(p_cp[k], p_np[k]) for k in p_np), 1e-3))
    b_np, b_cp = beam("numpy"), beam("cupy")
    rows.append(("beam search: paths differ (count)", float((b_np[0] != b_cp[0]).any(axis=1).sum()), 0.0))
    rows.append(("beam search: log P", rel(b_cp[1], b_np[1]), 1e-4))
    rows.append(("beam search: label scores", rel(b_cp[2], b_np[2]), 1e-4))
    rows.append(("VGG16 conv5_3 (2 images, 64x64)", rel(cnn("cupy"), cnn("numpy")), 1e-3))
    if args.runs:
        compare_runs(*args.runs, rows)
    backend.use("numpy")
    failed = sum(value > tol for _, value, tol in rows)
    print_table(
        ("NumPy vs CuPy (same seed)", "max rel diff", "tolerance", "result"),
        [(label, f"{value:.2e}", f"{tol:.0e}", "PASS" if value <= tol else "FAIL") for label, value, tol in rows],
        args.markdown,
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
