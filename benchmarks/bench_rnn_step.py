"""One CNN-RNN training step at the paper's sizes: our NumPy code against torch autograd.

    python benchmarks/bench_rnn_step.py            # vocabularies 81 and 1000, 3 rounds
    python benchmarks/bench_rnn_step.py --steps 50 --vocab 81 --repeat 5 --threads 1
    python benchmarks/bench_rnn_step.py --threads 1 --clock cpu [--markdown]   # by part, shared machine
    python benchmarks/bench_rnn_step.py --device cuda   # ours on CuPy vs torch on the GPU

A step is what ``train`` does per mini-batch: forward through Eq. 2, 1, 4, 5 and the
softmax loss, backpropagation through time, gradient clipping and an rmsprop update
(momentum 0.9, weight decay 1e-4). Sizes (§4): batch 64, paths of 6 steps, image feature
D = 4096 (VGG16 fc7), embedding E = 64, recurrent H = 512, vocabulary K = 81 (NUS-WIDE
concepts) and 1000 (NUS-WIDE tags).

The same model (same initial weights, same batch, ReLU LSTM of Eq. 1) is timed in two
subprocesses, one per library, so that they do not fight over the cores:

* ``numpy``: ``model.path_loss`` + ``optim.clip_by_global_norm`` + ``optim.RMSprop.step``;
* ``torch``: the same equations as torch tensor code, ``loss.backward()`` (autograd),
  ``clip_grad_norm_`` and ``torch.optim.RMSprop``.

Each child reports ms per step (median over timed steps after warm-up), minor page
faults per step (``resource.getrusage``: the cost of large fresh temporaries), and the
first step's loss (the two must agree: same model). The numpy child also times each part
of the step (forward, loss, backward, clip, rmsprop) against the bare matrix products that
part performs (same shapes and memory layouts, preallocated outputs), in turns in one
process, minimum over the steps: the matmul-bound floor of this implementation on this
machine with this BLAS, and how far each part is above it. ``--clock cpu`` times the parts
in process CPU time, which other processes on a shared machine disturb less (use it with
``--threads 1``: it adds up the time of all threads).

The pair of children runs ``--repeat`` times, alternating (the machine may be shared): best
median of each, spread over the rounds, load average. ``--threads N`` sets the BLAS / intra-op
threads of both children (threadpoolctl, ``torch.set_num_threads``; default: each library's),
and the threading layer each used is printed. ``--markdown``: one table, for the docs.
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
from tables import print_table  # noqa: E402  (benchmarks/tables.py, next to this script)

N, T, D, E, H = 64, 6, 4096, 64, 512
LR, CLIP = 1e-5, 5.0  # a small step keeps the weights (and the timing) stable over many steps


def make_problem(K, seed=0):
    """Initial weights (host float32) and one batch of full-length paths."""
    from minicnnrnn.rnn import model

    rng = np.random.default_rng(seed)
    params = model.init_params(K, D, E, H, rng, "relu")
    I = np.maximum(rng.standard_normal((N, D)), 0).astype(np.float32)  # fc7-like: after a ReLU
    labels = np.stack([rng.choice(K, T - 1, replace=False) for _ in range(N)], axis=1)  # (T-1, N)
    inputs = np.concatenate([np.full((1, N), K + 1), labels])  # START, l1 .. l5
    targets = np.concatenate([labels, np.full((1, N), K)])  # l1 .. l5, END
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


def threading(threads):
    """Set the BLAS / OpenMP thread count (None: keep the default) and describe what is loaded."""
    try:
        import threadpoolctl
    except ImportError:
        if threads:
            raise SystemExit("--threads needs threadpoolctl (pip install threadpoolctl)") from None
        return "threadpoolctl not installed: thread count unknown"
    if threads:
        threadpoolctl.threadpool_limits(threads)
    libs = [
        " ".join(str(i[k]) for k in ("internal_api", "version", "architecture") if i.get(k))
        + f" {i['num_threads']} threads"
        for i in threadpoolctl.threadpool_info()
    ]
    env = [
        f"{k}={os.environ[k]}" for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS") if k in os.environ
    ]
    return "; ".join(libs + env)


def child_numpy(K, steps, warmup, threads, device="cpu", clock="wall"):
    from minicnnrnn.core import backend
    from minicnnrnn.rnn import model
    from minicnnrnn.training import optim

    blas = threading(threads)
    params, I, inputs, targets, mask, dropout = make_problem(K)
    if device == "cuda":  # our code on CuPy: everything moved once, before timing
        backend.use("cupy")
        params = backend.params_to_device(params)
        I, inputs, targets, mask, dropout = (backend.to_device(a) for a in (I, inputs, targets, mask, dropout))
        blas = "CuPy on CUDA"
    opt = optim.RMSprop(params, momentum=0.9, weight_decay=1e-4)

    def step():
        value, grads = model.path_loss(params, I, inputs, targets, mask, "relu", dropout)
        optim.clip_by_global_norm(grads, CLIP)
        opt.step(params, grads, LR)
        return value

    ms, faults, first = timed(step, steps, warmup)  # the loss is a float: each step ends synchronised
    if device == "cuda":  # the matmul floor and the phases are CPU measurements
        return {"ms": ms, "faults": faults, "loss": first, "matmul_ms": float("nan"), "phases": {}, "threading": blas}
    floors = matmul_floors(K, len(np.unique(inputs)), params)  # one gradient per parameter
    timer = time.process_time if clock == "cpu" else time.perf_counter
    parts = phases(params, I, inputs, targets, mask, dropout, opt, steps, floors, timer)
    return {
        "ms": ms,
        "faults": faults,
        "loss": first,
        "matmul_ms": sum(floor for _, floor in parts.values()),
        "phases": parts,
        "threading": blas,
    }


PARTS = ("forward", "loss", "backward", "clip", "rmsprop")


def phases(params, I, inputs, targets, mask, dropout, opt, steps, floors, clock):
    """Each part of the step against its own matrix products: {part: (ms, floor ms)}.

    Part and floor are timed in turns, step by step, in this one process, each keeping its
    minimum over the steps (``clock``: time.perf_counter or process_time): both see the same
    load. Parts without a matrix product (the loss, rmsprop) have floor 0.
    """
    from minicnnrnn.layers import loss
    from minicnnrnn.rnn import model
    from minicnnrnn.training import optim

    parts = {
        "forward": lambda s: model.path_forward(params, I, inputs, mask, "relu", dropout),
        "loss": lambda s: loss.softmax_cross_entropy(s["forward"][0], targets, mask),
        "backward": lambda s: model.path_backward(s["loss"][1], s["forward"][1]),
        "clip": lambda s: optim.clip_by_global_norm(s["backward"], CLIP),
        "rmsprop": lambda s: opt.step(params, s["backward"], LR),
    }
    best = {name: [float("inf"), float("inf")] for name in parts}
    for _ in range(steps):
        state = {}
        for name, fn in parts.items():
            t = clock()
            state[name] = fn(state)
            best[name][0] = min(best[name][0], clock() - t)
            if floors[name] is None:
                best[name][1] = 0.0
                continue
            t = clock()
            floors[name]()
            best[name][1] = min(best[name][1], clock() - t)
    return {name: (1e3 * ms, 1e3 * floor) for name, (ms, floor) in best.items()}


def matmul_floors(K, distinct_tokens, grads):
    """{part: function running the matrix products of that part of our step alone, or None}.

    Same shapes and memory layouts as the code (``.T``: a transposed view there too), into
    preallocated outputs: r(0) = 0 leaves T - 1 recurrent products each way and (T - 1) N rows
    of the U_r gradient; the embedding gradient is over the distinct tokens only; clipping is
    one dot product per gradient array (``grads``).
    """
    V, M, M1 = K + 2, T * N, (T - 1) * N
    r = np.random.default_rng(1)

    def a(*shape):
        return r.standard_normal(shape).astype(np.float32)

    U_r = a(H, 4 * H)
    products = {
        "forward": [
            (a(M, E), a(E, 4 * H)),  # Eq. 1 input half of the gates
            *[(a(N, H), U_r) for _ in range(T - 1)],  # r(t-1) @ U_r, t = 2 .. T
            (a(M, H), a(H, E)),
            (a(N, D), a(D, E)),  # Eq. 4
            (a(M, E), a(V, E)[: K + 1].T),  # Eq. 5
        ],
        "backward": [
            (a(M, K + 1), a(V, E)[: K + 1]),
            (a(M, K + 1).T, a(M, E)),  # Eq. 5 backward
            (a(M, H).T, a(M, E)),
            (a(N, D).T, a(N, E)),
            (a(M, E), a(H, E).T),  # Eq. 4 backward
            *[(U_r, a(N, 4 * H).T) for _ in range(T - 1)],  # (U_r @ dz(t).T).T, t = T .. 2
            (a(M, 4 * H), a(E, 4 * H).T),  # Eq. 1 backward to the inputs
            (a(M, E).T, a(M, 4 * H)),
            (a(M1, H).T, a(M1, 4 * H)),  # U_w and U_r gradients
            (a(M, distinct_tokens).T, a(M, E)),  # Eq. 2 backward (one-hot product)
        ],
        "clip": [(g.reshape(1, -1), g.reshape(-1, 1)) for g in grads.values()],  # global norm
    }
    outs = {part: [np.empty((x.shape[0], y.shape[1]), np.float32) for x, y in ps] for part, ps in products.items()}

    def run(part):
        def go():
            for (x, y), o in zip(products.get(part, ()), outs.get(part, ())):
                np.matmul(x, y, out=o)

        return go

    return {part: run(part) if part in products else None for part in PARTS}


def child_torch(K, steps, warmup, threads, device="cpu"):
    import torch

    if threads:
        torch.set_num_threads(threads)
    blas = threading(threads)
    host, I, inputs, targets, mask, dropout = make_problem(K)
    dev = torch.device(device)
    p = {k: torch.tensor(v, requires_grad=True, device=dev) for k, v in host.items()}
    I, dropout = torch.tensor(I, device=dev), torch.tensor(dropout, device=dev)
    inputs, targets = torch.tensor(inputs, device=dev), torch.tensor(targets, device=dev)
    opt = torch.optim.RMSprop(list(p.values()), lr=LR, alpha=0.9, momentum=0.9, weight_decay=1e-4)

    def forward():
        w = p["U_l"][inputs]  # Eq. 2
        gates_in = w @ p["U_w"] + p["b_lstm"]
        outs, r = [], None
        for t in range(T):  # Eq. 1, ReLU everywhere
            # r(0) = 0, so the first step has no recurrent terms (our code skips them too)
            pre = gates_in[t] if t == 0 else gates_in[t] + r @ p["U_r"]
            x, i, f, o = torch.relu(pre).split(H, dim=1)
            r = i * x if t == 0 else f * r + i * x
            outs.append(r * o)
        o = torch.stack(outs)
        x = torch.relu(o @ p["U_o_x"] + I @ p["U_I_x"] + p["b_x"]) * dropout  # Eq. 4
        s = x @ p["U_l"][: K + 1].T  # Eq. 5
        return torch.nn.functional.cross_entropy(s.reshape(-1, K + 1), targets.reshape(-1), reduction="sum") / N

    def step():
        opt.zero_grad()
        value = forward()
        value.backward()
        torch.nn.utils.clip_grad_norm_(list(p.values()), CLIP)
        opt.step()
        return value.item()

    ms, faults, first = timed(step, steps, warmup)
    return {
        "ms": ms,
        "faults": faults,
        "loss": first,
        "threading": f"torch {torch.__version__} intra-op {torch.get_num_threads()} threads; {blas}",
    }


def run_child(kind, K, args):
    cmd = [
        sys.executable,
        __file__,
        "--child",
        kind,
        "--vocab",
        str(K),
        "--steps",
        str(args.steps),
        "--warmup",
        str(args.warmup),
        "--device",
        args.device if kind == "numpy" else (args.torch_device or args.device),
        "--clock",
        args.clock,
    ] + (["--threads", str(args.threads)] if args.threads else [])
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def spread(runs, key):
    """(best, worst) of one number over the rounds."""
    return min(r[key] for r in runs), max(r[key] for r in runs)


def report(K, ours, ref, print=print):
    """Print the rows of one vocabulary (ours/ref: the children's results, one per round); returns
    (summary line, markdown row: K, step, floor, step / floor, torch, step / torch)."""
    (np_ms, np_worst), (t_ms, t_worst) = spread(ours, "ms"), spread(ref, "ms")
    floor = min(r["matmul_ms"] for r in ours)
    best_np = min(ours, key=lambda r: r["ms"])
    print(
        f"{K:>5} {np_ms:9.1f} {t_ms:9.1f} {np_ms / t_ms:5.2f}x {floor:10.1f} {best_np['faults']:10.0f} "
        f"{min(r['faults'] for r in ref):12.0f} {ours[0]['loss']:8.3f} / {ref[0]['loss']:.3f}"
    )
    print(
        f"      spread over {len(ours)} rounds: numpy {np_ms:.1f}-{np_worst:.1f} ms, torch {t_ms:.1f}-{t_worst:.1f} ms"
    )
    parts = min((r["phases"] for r in ours), key=lambda p: sum(ms for ms, _ in p.values()))  # one round's figures
    print("      numpy step by part, ms / its matrix products alone (floor) = ratio, one round:")
    for name, (ms, part_floor) in parts.items():
        ratio = f" = {ms / part_floor:.2f}x" if part_floor > 0 else "  (no products)"
        print(f"        {name:<9} {ms:7.2f} / {part_floor:7.2f}{ratio}")
    total, total_floor = sum(ms for ms, _ in parts.values()), sum(f for _, f in parts.values())
    print(f"        {'step':<9} {total:7.2f} / {total_floor:7.2f} = {total / total_floor:.2f}x")
    print(f"      numpy threading: {ours[0]['threading']}\n      torch threading: {ref[0]['threading']}")
    if abs(ours[0]["loss"] - ref[0]["loss"]) > 1e-3 * abs(ref[0]["loss"]):
        print("      warning: the first losses differ: the two steps do not compute the same model")
    summary = (
        f"summary K={K}: ours {np_ms:.1f} ms vs torch {t_ms:.1f} ms = {np_ms / t_ms:.2f}x torch "
        f"(target <= 0.60x); matmul floor {floor:.1f} ms = {floor / t_ms:.2f}x torch"
    )
    by_part = ", ".join(f"{name} {ms:.1f}" for name, (ms, _) in parts.items())
    ratios = f"{total / total_floor:.2f}x", f"{total / t_ms:.2f}x"  # the row's own step time over torch's
    rest = f"{total - total_floor:.1f} (rmsprop {parts['rmsprop'][0]:.1f})"  # the time outside the products
    return summary, (K, f"{total:.1f} ({by_part})", f"{total_floor:.1f}", ratios[0], rest, f"{t_ms:.1f}", ratios[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--vocab", type=int, nargs="+", default=[81, 1000])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="rounds of (numpy, torch) per vocabulary")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="BLAS / intra-op threads in both children (default: each library's default)",
    )
    ap.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: our step on CuPy (--backend cupy) against torch on the GPU",
    )
    ap.add_argument("--torch-device", choices=("cpu", "cuda"), help="where torch runs (default: --device)")
    clock_help = "clock of the by-part table: cpu (process time) is steadier on a shared machine with --threads 1"
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall", help=clock_help)
    ap.add_argument("--markdown", action="store_true", help="print one markdown table (the parts, floor, torch)")
    ap.add_argument("--child", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.child == "numpy":
            result = child_numpy(args.vocab[0], args.steps, args.warmup, args.threads, args.device, args.clock)
        else:
            result = child_torch(args.vocab[0], args.steps, args.warmup, args.threads, args.device)
        print(json.dumps(result))
        return
    detail = (lambda *a, **k: None) if args.markdown else print  # markdown: the table only
    print(
        f"one training step: batch {N}, {T} steps, D {D}, E {E}, H {H}; median of {args.steps} steps, "
        f"best of {args.repeat} rounds; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    )
    detail(
        f"{'K':>5} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6} {'matmul ms':>10} "
        f"{'np faults':>10} {'torch faults':>12} {'loss np / torch':>18}"
    )
    summaries = []
    for K in args.vocab:
        ours, ref = [], []
        for _ in range(args.repeat):  # alternate, so that both see the same load
            ours.append(run_child("numpy", K, args))
            ref.append(run_child("torch", K, args))
        failed = [r["error"] for r in ours + ref if "error" in r]
        if failed:
            print(f"{K:>5} failed: {failed[0]}")
            continue
        summaries.append(report(K, ours, ref, print=detail))
    detail("ratio = numpy / torch step time; matmul ms = our step's matrix products alone (the floor)")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.markdown:
        header = ("K", f"step ms, {args.clock}", "floor ms", "step / floor", "step - floor ms")
        header += ("torch ms, wall", f"step / torch ({args.clock} / wall)")
        print_table(header, [row for _, row in summaries], markdown=True)
        return
    for line, _ in summaries:
        print(line)


if __name__ == "__main__":
    main()
