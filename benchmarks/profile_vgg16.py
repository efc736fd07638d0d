"""Where the time of our VGG16 forward goes, layer by layer, against each layer's matrix products alone.

    OPENBLAS_NUM_THREADS=1 python benchmarks/profile_vgg16.py --markdown   # the table of docs/vgg16.md
    python benchmarks/profile_vgg16.py --batches 8 --repeat 5

Runs the inference path of ``cnn/vgg.py`` (random weights, 224x224 images, the Winograd
kernels transformed once as extraction does) one layer at a time with the same calls
``vgg.vgg_forward`` makes, on one thread (``MINICNNRNN_THREADS=1``; CPU time then measures the
work, which other programs on a shared machine disturb less than the wall clock). For each layer:

* ``ms``: the layer (the minimum over ``--repeat`` passes);
* ``products ms``: its matrix products alone, same shapes, into preallocated outputs: for a
  Winograd layer the 16 (tiles, C_in) @ (C_in, C_out) products, for the im2col layer (the RGB
  input) one (pixels, 27) @ (27, C_out) product, for an fc layer (N, D_in) @ (D_in, D_out); a
  pooling layer has none. Large products are timed on a slice of the rows and scaled;
* ``other ms`` = ms - products ms: the Winograd transforms, im2col, pooling, ReLU and copies;
* the share of the whole forward pass, and GFLOP/s counted as a direct convolution would.

Below the table: the sum of the layers against one full ``vgg.vgg_forward`` call, and the
sgemm peak (float32, 2048^3) measured in the same run.
"""

import argparse
import os
import sys
import time

os.environ.setdefault("MINICNNRNN_THREADS", "1")  # before the package reads it
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
from tables import print_table  # noqa: E402  (benchmarks/tables.py, next to this script)

from minicnnrnn.cnn import vgg  # noqa: E402
from minicnnrnn.layers import conv, dense, pool, winograd  # noqa: E402

SIZE = 224
PRODUCT_ROWS = 8192  # rows of a large product timed, then scaled to the layer's rows


def best_of(fn, repeat, clock):
    """Minimum time of ``repeat`` calls of fn, in ms, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        start = clock()
        fn()
        times.append(clock() - start)
    return 1e3 * min(times)


def product_ms(rows, inner, cols, repeat, clock, batch=1):
    """ms of ``batch`` (rows, inner) @ (inner, cols) float32 products, timed on at most
    PRODUCT_ROWS rows and scaled linearly to ``rows``."""
    rng = np.random.default_rng(0)
    r = min(rows, PRODUCT_ROWS)
    a = rng.standard_normal((batch, r, inner), dtype=np.float32)
    b = rng.standard_normal((batch, inner, cols), dtype=np.float32)
    out = np.empty((batch, r, cols), dtype=np.float32)
    return best_of(lambda: np.matmul(a, b, out=out), repeat, clock) * rows / r


def profile(batch, repeat, clock):
    """[(layer, kind, ms, products ms, direct GFLOP)] of one forward pass, and the whole pass in ms."""
    meta = vgg.make_meta()
    rng = np.random.default_rng(0)
    params = vgg.init_params(meta, rng)
    h = rng.standard_normal((batch, SIZE, SIZE, 3), dtype=np.float32)
    flops = {name: f for name, _, _, f in vgg.layer_table(meta)}
    kernels, rows = {}, []
    for kind, name, shape in vgg.layers(meta):
        x = h
        if kind == "conv":
            W, b = params[f"{name}/W"], params[f"{name}/b"]
            if conv.uses_winograd(W.shape, 1):
                kernels[name] = U = winograd.transform_kernels(W)
                how = "conv, Winograd"
                N, Hh, Ww, _ = x.shape
                tiles = N * ((Hh + 1) // 2) * ((Ww + 1) // 2)
                floor = product_ms(tiles, shape[2], shape[3], repeat, clock, batch=16)
            else:
                U, how = None, "conv, im2col"
                floor = product_ms(x.shape[0] * x.shape[1] * x.shape[2], 9 * shape[2], shape[3], repeat, clock)

            def run(x=x, W=W, b=b, U=U):
                return conv.conv_forward(x, W, b, 1, 1, "auto", relu=True, U=U)[0]

        elif kind == "pool":
            how, floor = "max pool", 0.0

            def run(x=x):
                return pool.max_pool_forward_rows_first(x)[0]

        else:
            x = x.reshape(x.shape[0], -1)
            how = "fc"
            floor = product_ms(x.shape[0], shape[0], shape[1], repeat, clock)

            def run(x=x, name=name):
                out = dense.dense_forward(x, params[f"{name}/W"], params[f"{name}/b"])[0]
                return out if name == "logits" else np.maximum(out, 0, out=out)

        ms = best_of(run, repeat, clock)
        h = run()
        rows.append((name, how, ms, floor, flops.get(name, 0.0) * batch / 1e9))
    x = rng.standard_normal((batch, SIZE, SIZE, 3), dtype=np.float32)  # drawn once: not timed
    whole = best_of(lambda: vgg.vgg_forward(params, meta, x, ("logits",), kernel_cache=kernels), repeat, clock)
    return rows, whole


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeat", type=int, default=3, help="passes per layer; the minimum is kept")
    ap.add_argument("--clock", choices=("cpu", "wall"), default="cpu", help="cpu: process time (one thread)")
    ap.add_argument("--markdown", action="store_true", help="print markdown tables, for the docs")
    args = ap.parse_args(argv)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    peak = 2 * 2048**3 / best_of(lambda: a @ a, 3, clock) * 1e3
    print(
        f"VGG16 forward to the logits, {SIZE}x{SIZE}, random weights, one thread "
        f"(MINICNNRNN_THREADS={os.environ['MINICNNRNN_THREADS']}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'default')}), {args.clock} clock, "
        f"min of {args.repeat} passes; load average {os.getloadavg()[0]:.1f}"
    )
    for batch in args.batches:
        rows, whole = profile(batch, args.repeat, clock)
        total = sum(r[2] for r in rows)
        table = []
        for name, how, ms, floor, gflop in rows:
            rate = f"{gflop / ms * 1e3:.0f}" if gflop else "-"
            table.append((name, how, f"{ms:.1f}", f"{floor:.1f}", f"{ms - floor:.1f}", f"{ms / total:.0%}", rate))
        by_kind = {}
        for _, how, ms, floor, _ in rows:
            k = by_kind.setdefault(how, [0.0, 0.0])
            k[0], k[1] = k[0] + ms, k[1] + floor
        for how, (ms, floor) in by_kind.items():
            table.append((f"all {how}", "", f"{ms:.1f}", f"{floor:.1f}", f"{ms - floor:.1f}", f"{ms / total:.0%}", ""))
        gflop = sum(r[4] for r in rows)
        print(
            f"\nbatch {batch}: layers {total:.0f} ms in all, one vgg_forward call {whole:.0f} ms "
            f"({batch / whole * 1e3:.2f} images/s, {gflop / whole * 1e3:.0f} GFLOP/s counted as direct "
            f"convolution = {gflop / whole * 1e12 / peak:.0%} of the sgemm peak {peak / 1e9:.0f} GFLOP/s)"
        )
        header = ("layer", "kind", "ms", "products ms", "other ms", "share", "GFLOP/s (direct)")
        print_table(header, table, args.markdown)


if __name__ == "__main__":
    main()
