"""Throughput and memory of our VGG16 forward pass against torch-CPU and the machine's sgemm peak.

    python benchmarks/bench_vgg16.py            # batch 1 and 8, Winograd and im2col, torch, sgemm
    python benchmarks/bench_vgg16.py --quick    # batch 1 only, our default path, two timed runs

Every measurement runs in its own child process (this script with --child), so
that each reports its own peak memory (max RSS, which includes the 553 MB of
VGG16 weights) and torch is never imported next to our code. Weights are random
(the speed of a forward pass does not depend on their values); images are
224x224x3. Each child times one warm-up pass and then --repeats passes; we print
the best and the spread. Throughput is also given in GFLOP/s counted as a direct
convolution would (2 per multiply-add, 30.9 GFLOP per image): the Winograd path
really performs fewer, so its figure can approach or exceed the sgemm peak.

The CPU is shared: the load average before and after is printed; run it a few
times and compare ratios measured in the same run, not absolute numbers.
"""
import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

import numpy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux reports KiB


def _time_passes(run, repeats):
    run()                                          # warm-up: first-touch of buffers, BLAS threads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def child_ours(batch, repeats, method, backend_name):
    sys.path.insert(0, REPO)
    from minicnnrnn import backend, vgg
    backend.use(backend_name)
    meta = vgg.make_meta()
    rng = numpy.random.default_rng(0)
    params = backend.params_to_device(vgg.init_params(meta, rng))
    images = backend.to_device(rng.standard_normal((batch, 224, 224, 3), dtype=numpy.float32))
    kernels = {}       # Winograd kernels transformed once, as in feature extraction

    def run():
        vgg.forward(params, meta, images, ("logits",), method=method, kernel_cache=kernels)
        backend.synchronize()
    return _time_passes(run, repeats)


def child_torch(batch, repeats):
    import torch
    nn, layers, channels = torch.nn, [], 3
    for item in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(25088, 4096), nn.ReLU(inplace=True), nn.Dropout(),
                          nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(), nn.Linear(4096, 1000)).eval()
    images = torch.randn(batch, 3, 224, 224)

    def run():
        with torch.inference_mode():
            model(images)
    return _time_passes(run, repeats)


def child_sgemm(repeats, n=4096):
    a = numpy.random.default_rng(0).standard_normal((n, n), dtype=numpy.float32)
    b = a.T.copy()
    return [t / (2 * n ** 3) * 1e9 for t in _time_passes(lambda: a @ b, repeats)]  # seconds per GFLOP


def run_child(args):
    """One measurement in a fresh process; returns its JSON record."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"child {' '.join(args)} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="batch 1, our default path, one round of 2 passes")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="times every measurement is repeated, alternating")
    parser.add_argument("--methods", nargs="+", default=["auto", "im2col"], choices=["auto", "im2col"],
                        help="our convolution paths to time (auto = Winograd for 3x3 convs)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch-CPU reference")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, batch, repeats = args.child[0], int(args.child[1]), int(args.child[2])
        if kind == "ours":
            times = child_ours(batch, repeats, args.child[3], args.child[4])
        elif kind == "torch":
            times = child_torch(batch, repeats)
        else:
            times = child_sgemm(repeats)
        print(json.dumps({"times": times, "max_rss_mb": _max_rss_mb()}))
        return
    if args.quick:
        args.batches, args.repeats, args.methods, args.rounds = [1], 2, ["auto"], 1

    sys.path.insert(0, REPO)
    from minicnnrnn import vgg
    gflop = sum(row[3] for row in vgg.layer_table(vgg.make_meta())) / 1e9
    has_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    print(f"VGG16 forward to the logits, 224x224, random weights; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at start; {gflop:.1f} GFLOP per image (direct conv)")
    rows = [(f"minicnnrnn {m}" + (f" ({args.backend})" if args.backend != "numpy" else ""), ["ours", m, args.backend])
            for m in args.methods] + ([("torch-cpu", ["torch"])] if has_torch else [])
    # Rounds alternate the implementations, so that a busy moment of a shared machine
    # does not fall on one of them only; the table keeps every timed pass.
    peak, results = 0.0, {}
    for round_ in range(args.rounds):
        peak = max(peak, 1 / min(run_child(["sgemm", "0", "3"])["times"]))
        for batch in args.batches:
            for label, child in rows:
                rec = run_child([child[0], str(batch), str(args.repeats)] + child[1:])
                acc = results.setdefault((batch, label), {"times": [], "max_rss_mb": 0})
                acc["times"] += rec["times"]
                acc["max_rss_mb"] = max(acc["max_rss_mb"], rec["max_rss_mb"])
        print(f"  round {round_ + 1}/{args.rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    print(f"sgemm 4096^3 peak of this machine: {peak:.0f} GFLOP/s (best of the rounds)\n")
    print(f"{'batch':>5}  {'implementation':<22} {'img/s best':>10} {'(worst)':>8} {'GFLOP/s':>8} "
          f"{'of peak':>7} {'peak RSS':>9}  {'vs torch':>8}")
    for batch in args.batches:
        torch_best = batch / min(results[(batch, "torch-cpu")]["times"]) if has_torch else None
        for label, _ in rows:
            rec = results[(batch, label)]
            best, worst = batch / min(rec["times"]), batch / max(rec["times"])
            ratio = f"{best / torch_best:7.2f}x" if torch_best else "      -"
            print(f"{batch:>5}  {label:<22} {best:>10.2f} {worst:>8.2f} {best * gflop:>8.0f} "
                  f"{best * gflop / peak:>6.0%} {rec['max_rss_mb']:>7.0f} MB  {ratio:>8}")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end (2 or more on 2 cores means the numbers are "
          f"contended: compare ratios, not absolute numbers)")

if __name__ == "__main__":
    main()
