"""Throughput and memory of our VGG16 forward pass against torch-CPU and the machine's sgemm peak.

    python benchmarks/bench_vgg16.py            # batch 1 and 8: Winograd, im2col, torch-CPU, sgemm
    python benchmarks/bench_vgg16.py --quick    # batch 1: our default path and torch-CPU, 3 passes
    python benchmarks/bench_vgg16.py --quick --backend cupy --torch-device cuda   # both on the GPU
    python benchmarks/bench_vgg16.py --threads 1 --clock cpu --markdown   # the table of docs/vgg16.md

Each implementation runs in its own child process (this script with --child),
which builds the model, does one warm-up pass, and then times one forward pass
each time the parent asks. The parent asks the children in turn, pass after
pass, so that a busy moment of a shared machine falls on all of them alike, and
each child reports its own peak memory (max RSS, including the 528 MB of VGG16
weights). torch is never imported next to our code.

Weights are random (speed does not depend on their values); images are
224x224x3; the forward pass runs to the logits. We print the best, median and
worst throughput over the passes, and GFLOP/s counted as a direct convolution
would (2 per multiply-add, 30.9 GFLOP per image): the Winograd path really does
fewer multiplications, so its figure can exceed the sgemm peak. The CPU may be
shared with other programs; compare ratios measured in the same run.
"""

import argparse
import importlib.util
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import numpy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tables import print_table  # noqa: E402  (benchmarks/tables.py, next to this script)

SIZE = 224
SGEMM_N = 3072  # side of the square float32 matrices of the sgemm reference


def _max_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def make_ours(batch, method, backend_name):
    """A function running our VGG16 forward once (Winograd kernels transformed once, as in extraction)."""
    sys.path.insert(0, REPO)
    from minicnnrnn.cnn import vgg
    from minicnnrnn.core import backend

    backend.use(backend_name)
    meta = vgg.make_meta()
    rng = numpy.random.default_rng(0)
    params = backend.params_to_device(vgg.init_params(meta, rng))
    images = backend.to_device(rng.standard_normal((batch, SIZE, SIZE, 3), dtype=numpy.float32))
    kernels = {}

    def run():
        vgg.vgg_forward(params, meta, images, ("logits",), method=method, kernel_cache=kernels)
        backend.synchronize()

    return run


def make_torch(batch, device="cpu"):
    """A function running torchvision's VGG16 layout, built from torch.nn layers, once."""
    import torch

    nn, layers, channels = torch.nn, [], 3
    for item in [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU(inplace=True)]
            channels = item
    model = nn.Sequential(
        *layers,
        nn.Flatten(),
        nn.Linear(25088, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(),
        nn.Linear(4096, 1000),
    ).eval()
    model = model.to(device)
    images = torch.randn(batch, 3, SIZE, SIZE, device=device)

    def run():
        with torch.inference_mode():
            model(images)
        if device == "cuda":
            torch.cuda.synchronize()

    return run


def make_sgemm(n=SGEMM_N):
    """A function multiplying two n x n float32 matrices (2 n^3 FLOP)."""
    a = numpy.random.default_rng(0).standard_normal((n, n), dtype=numpy.float32)
    b = a.T.copy()
    return lambda: a @ b


def serve(args):
    """Child process: build, warm up, then time one pass per "run" line read from stdin."""
    kind, batch = args[0], int(args[1])
    clock = time.process_time if os.environ.get("BENCH_CLOCK") == "cpu" else time.perf_counter
    if kind == "torch" and os.environ.get("OMP_NUM_THREADS"):
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    makers = {
        "ours": lambda: make_ours(batch, args[2], args[3]),
        "torch": lambda: make_torch(batch, args[2]),
        "sgemm": make_sgemm,
    }
    run = makers[kind]()
    run()  # first touch of buffers, thread pools
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        start = clock()
        run()
        print(clock() - start, flush=True)
    print(json.dumps({"max_rss_mb": _max_rss_mb()}), flush=True)


class Child:
    """A measuring child process, asked for one timed pass at a time."""

    def __init__(self, args, env=None):
        self.args = args
        self.proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--child", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._read()  # "ready"

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"benchmark child {' '.join(self.args)} failed (its error is printed above)")
        return line.strip()

    def time_pass(self):
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self._read())

    def close(self):
        """Stop the child; returns its peak memory in MB."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        record = json.loads(self._read())
        self.proc.wait()
        return record["max_rss_mb"]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="batch 1, our default path and torch, 3 passes")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--passes", type=int, default=5, help="timed passes of each implementation")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["auto", "im2col"],
        choices=["auto", "im2col"],
        help="our convolution paths (auto = Winograd for the 3x3 convs with >= 8 inputs)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the torch-CPU reference")
    parser.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    parser.add_argument("--torch-device", default="cpu", choices=["cpu", "cuda"], help="where the torch reference runs")
    parser.add_argument(
        "--threads", type=int, help="threads of every child (BLAS, OpenMP, torch, our Winograd workers)"
    )
    parser.add_argument(
        "--clock",
        default="wall",
        choices=("wall", "cpu"),
        help="cpu: each child's process time, steadier on a shared machine (use with --threads 1)",
    )
    parser.add_argument("--markdown", action="store_true", help="print the results as one markdown table")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return serve(args.child)
    if args.quick:
        args.batches, args.passes, args.methods = [1], 3, ["auto"]

    sys.path.insert(0, REPO)
    from minicnnrnn.cnn import vgg

    gflop = sum(row[3] for row in vgg.layer_table(vgg.make_meta())) / 1e9
    has_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    print(
        f"VGG16 forward to the logits, {SIZE}x{SIZE}, random weights, {os.cpu_count()} CPUs, "
        f"{gflop:.1f} GFLOP per image; load average {os.getloadavg()[0]:.2f} at start"
    )
    env = dict(os.environ, BENCH_CLOCK=args.clock)
    if args.threads:
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "MINICNNRNN_THREADS"):
            env[name] = str(args.threads)
    sgemm, peak, rows = Child(["sgemm", "0"], env), 0.0, []
    for batch in args.batches:
        labels = [
            f"minicnnrnn {m}" + ("" if args.backend == "numpy" else f" ({args.backend})") for m in args.methods
        ] + ([f"torch-{args.torch_device}"] if has_torch else [])
        children = [Child(["ours", str(batch), m, args.backend], env) for m in args.methods]
        children += [Child(["torch", str(batch), args.torch_device], env)] if has_torch else []
        times = {label: [] for label in labels}
        for _ in range(args.passes):  # in turn, pass after pass
            peak = max(peak, 2 * SGEMM_N**3 / sgemm.time_pass() / 1e9)
            for label, child in zip(labels, children):
                times[label].append(child.time_pass())
        rss = {label: child.close() for label, child in zip(labels, children)}
        rows += [(batch, label, times[label], rss[label]) for label in labels]
        print(f"  batch {batch} done", flush=True)
    sgemm.close()
    table = []
    for batch, label, times, rss in rows:
        best, median, worst = (batch / t for t in (min(times), statistics.median(times), max(times)))
        torch_times = [r[2] for r in rows if r[0] == batch and r[1].startswith("torch-")]
        ratio = f"{best / (batch / min(torch_times[0])):.2f}x" if torch_times else "-"
        table.append(
            (
                batch,
                label,
                f"{best:.2f}",
                f"{median:.2f}",
                f"{worst:.2f}",
                f"{best * gflop:.0f}",
                f"{best * gflop / peak:.0%}",
                f"{rss:.0f} MB",
                ratio,
            )
        )
    print(
        f"{args.clock} clock, threads {args.threads or 'default'}; sgemm {SGEMM_N}^3 peak of this machine "
        f"(best pass): {peak:.0f} GFLOP/s; load average {os.getloadavg()[0]:.2f} at the end "
        "(above ~0.5 per core, other programs were running)"
    )
    header = ("batch", "implementation", "img/s best", "median", "worst", "GFLOP/s", "of peak", "peak RSS", "vs torch")
    print_table(header, table, args.markdown)


if __name__ == "__main__":
    main()
