"""One CNN-RNN training step at the paper's sizes: our NumPy code against torch autograd.

    python benchmarks/bench_rnn_step.py            # vocabularies 81 and 1000
    python benchmarks/bench_rnn_step.py --steps 50 --vocab 81

A step is what ``train`` does per mini-batch: forward through Eq. 2, 1, 4, 5 and the
softmax loss, backpropagation through time, gradient clipping and an rmsprop update
(momentum 0.9, weight decay 1e-4). Sizes (§4): batch 64, paths of 6 steps, image feature
D = 4096 (VGG16 fc7), embedding E = 64, recurrent H = 512, vocabulary K = 81 (NUS-WIDE
concepts) and 1000 (NUS-WIDE tags).

The same model (same initial weights, same batch, ReLU LSTM of Eq. 1) is timed in two
subprocesses, one per library, so that they do not fight over the cores:

* ``numpy``: ``model.path_loss`` + ``rmsprop.clip_by_global_norm`` + ``rmsprop.RMSprop.step``;
* ``torch``: the same equations as torch tensor code, ``loss.backward()`` (autograd),
  ``clip_grad_norm_`` and ``torch.optim.RMSprop``.

Each child reports ms per step (median over timed steps after warm-up), minor page
faults per step (``resource.getrusage``: the cost of large fresh temporaries), and the
first step's loss (the two must agree: same model). The numpy child also times the bare
matrix products one step needs (preallocated outputs, ``out=``): the matmul-bound limit
of any implementation on this machine with this BLAS.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

N, T, D, E, H = 64, 6, 4096, 64, 512
LR, CLIP = 1e-5, 5.0    # a small step keeps the weights (and the timing) stable over many steps


def make_problem(K, seed=0):
    """Initial weights (host float32) and one batch of full-length paths."""
    from minicnnrnn import model
    rng = np.random.default_rng(seed)
    params = model.init_params(K, D, E, H, rng)
    I = np.maximum(rng.standard_normal((N, D)), 0).astype(np.float32)   # fc7-like: after a ReLU
    labels = np.stack([rng.choice(K, T - 1, replace=False) for _ in range(N)], axis=1)  # (T-1, N)
    inputs = np.concatenate([np.full((1, N), K + 1), labels])           # START, l1 .. l5
    targets = np.concatenate([labels, np.full((1, N), K)])              # l1 .. l5, END
    mask = np.ones((T, N), np.float32)
    dropout = (rng.random((T, N, E)) >= 0.5).astype(np.float32) * 2.0
    return params, I, inputs, targets, mask, dropout


def timed(step, steps, warmup):
    """Run step() warmup + steps times; returns (median ms, minor faults per step, first value)."""
    first = step()
    for _ in range(warmup - 1):
        step()
    times = []
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return 1e3 * statistics.median(times), faults / steps, first


def child_numpy(K, steps, warmup):
    from minicnnrnn import model, rmsprop
    params, I, inputs, targets, mask, dropout = make_problem(K)
    opt = rmsprop.RMSprop(params, lr=LR, momentum=0.9, weight_decay=1e-4)

    def step():
        value, grads = model.path_loss(params, I, inputs, targets, mask, "relu", dropout)
        rmsprop.clip_by_global_norm(grads, CLIP)
        opt.step(params, grads)
        return value

    ms, faults, first = timed(step, steps, warmup)
    return {"ms": ms, "faults": faults, "loss": first, "matmul_ms": matmul_bound(K, steps),
            "phases": phases(params, I, inputs, targets, mask, dropout, opt, steps)}


def phases(params, I, inputs, targets, mask, dropout, opt, steps):
    """Median ms of each part of the step: where the time goes."""
    from minicnnrnn import loss, model, rmsprop
    parts = {"forward": lambda s: model.path_forward(params, I, inputs, mask, "relu", dropout),
             "loss": lambda s: loss.softmax_cross_entropy(s["forward"][0], targets, mask),
             "backward": lambda s: model.path_backward(s["loss"][1], s["forward"][1]),
             "clip": lambda s: rmsprop.clip_by_global_norm(s["backward"], CLIP),
             "rmsprop": lambda s: opt.step(params, s["backward"])}
    times = {name: [] for name in parts}
    for _ in range(steps):
        state = {}
        for name, fn in parts.items():
            t = time.perf_counter()
            state[name] = fn(state)
            times[name].append(time.perf_counter() - t)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def matmul_bound(K, steps):
    """ms of the matrix products of one step alone, into preallocated outputs."""
    V, M = K + 2, T * N
    r = np.random.default_rng(1)

    def a(*shape):
        return r.standard_normal(shape).astype(np.float32)
    products = [  # (left, right) operands; T recurrent products each way
        (a(M, E), a(E, 4 * H)),                          # input half of the gates, all steps
        *[(a(N, H), a(H, 4 * H)) for _ in range(T)],     # r(t-1) @ U_r
        (a(M, H), a(H, E)), (a(N, D), a(D, E)),          # Eq. 4
        (a(M, E), a(E, K + 1)),                          # Eq. 5
        (a(M, K + 1), a(K + 1, E)), (a(K + 1, M), a(M, E)),   # Eq. 5 backward
        (a(H, M), a(M, E)), (a(D, N), a(N, E)), (a(M, E), a(E, H)),   # Eq. 4 backward
        *[(a(N, 4 * H), a(4 * H, H)) for _ in range(T)],  # dz @ U_r.T
        (a(M, 4 * H), a(4 * H, E)), (a(E, M), a(M, 4 * H)), (a(H, M), a(M, 4 * H)),  # Eq. 1 weights
        (a(V, M), a(M, E)),                              # Eq. 2 backward (one-hot product)
    ]
    outs = [np.empty((x.shape[0], y.shape[1]), np.float32) for x, y in products]

    def step():
        for (x, y), o in zip(products, outs):
            np.matmul(x, y, out=o)
    return timed(step, steps, 3)[0]


def child_torch(K, steps, warmup):
    import torch
    host, I, inputs, targets, mask, dropout = make_problem(K)
    p = {k: torch.tensor(v, requires_grad=True) for k, v in host.items()}
    I, dropout = torch.tensor(I), torch.tensor(dropout)
    inputs, targets = torch.tensor(inputs), torch.tensor(targets)
    opt = torch.optim.RMSprop(list(p.values()), lr=LR, alpha=0.9, momentum=0.9, weight_decay=1e-4)

    def forward():
        w = p["U_l"][inputs]                                   # Eq. 2
        gates_in = w @ p["U_w"] + p["b_lstm"]
        r = torch.zeros(N, H)
        outs = []
        for t in range(T):                                     # Eq. 1, ReLU everywhere
            g = torch.relu(gates_in[t] + r @ p["U_r"])
            x, i, f, o = g.split(H, dim=1)
            r = f * r + i * x
            outs.append(r * o)
        o = torch.stack(outs)
        x = torch.relu(o @ p["U_o_x"] + I @ p["U_I_x"] + p["b_x"]) * dropout   # Eq. 4
        s = x @ p["U_l"][:K + 1].T                             # Eq. 5
        return torch.nn.functional.cross_entropy(s.reshape(-1, K + 1), targets.reshape(-1),
                                                 reduction="sum") / N

    def step():
        opt.zero_grad()
        value = forward()
        value.backward()
        torch.nn.utils.clip_grad_norm_(list(p.values()), CLIP)
        opt.step()
        return value.item()

    ms, faults, first = timed(step, steps, warmup)
    return {"ms": ms, "faults": faults, "loss": first, "threads": torch.get_num_threads()}


def run_child(kind, K, steps, warmup):
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--vocab", str(K), "--steps", str(steps),
                          "--warmup", str(warmup)], capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[81, 1000])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--child", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        fn = child_numpy if args.child == "numpy" else child_torch
        print(json.dumps(fn(args.vocab[0], args.steps, args.warmup)))
        return
    print(f"one training step: batch {N}, {T} steps, D {D}, E {E}, H {H}; median of {args.steps} steps; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'K':>5} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'matmul ms':>10} "
          f"{'np faults':>10} {'torch faults':>12} {'loss np / torch':>18}")
    for K in args.vocab:
        ours = run_child("numpy", K, args.steps, args.warmup)
        ref = run_child("torch", K, args.steps, args.warmup)
        if "error" in ours or "error" in ref:
            print(f"{K:>5} numpy: {ours.get('error', 'ok')}; torch: {ref.get('error', 'ok')}")
            continue
        print(f"{K:>5} {ours['ms']:9.1f} {ref['ms']:9.1f} {ours['ms'] / ref['ms']:5.2f}x {ours['matmul_ms']:10.1f} "
              f"{ours['faults']:10.0f} {ref['faults']:12.0f} {ours['loss']:8.3f} / {ref['loss']:.3f}")
        print("      numpy step by part (ms): " + ", ".join(f"{k} {v:.1f}" for k, v in ours["phases"].items()))
        if abs(ours["loss"] - ref["loss"]) > 1e-3 * abs(ref["loss"]):
            print("      warning: the first losses differ: the two steps do not compute the same model")
    print("ratio = numpy / torch step time (target <= 0.6); matmul ms = the step's matrix products alone")


if __name__ == "__main__":
    main()
