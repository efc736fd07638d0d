"""Issue 25's hostile cases, run as a user would: each a command in a fresh process.

    python benchmarks/hostile.py                     # every case; a markdown table on stdout
    python benchmarks/hostile.py --missing 8000      # the extract-over-missing-paths case smaller
    python benchmarks/hostile.py --only merge        # the cases whose name contains "merge"

Each case builds its bad input in a temporary folder (a few hundred bytes, a FIFO, a damaged
shard, a foreign best.npz, ...), runs one ``python -m minicnnrnn.<command>`` and checks what
the issue promises: the expected exit status (2 for a refusal, with exactly the expected
number of lines on stderr, each ``error: ...``: one, or one per damaged shard), a peak
memory under 1 GB (the child's own ``ru_maxrss``, from ``os.wait4``), no hang (a timeout),
and no good file replaced (the SHA-256 of each file the case protects, before and after).
The table has one row per case and a last line with the count that held.
"""

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEAK_LIMIT_MB = 1024
TIMEOUT_S = 300
PIXELS = "MINICNNRNN_MAX_IMAGE_PIXELS"


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def run_child(argv, cwd, env):
    """(exit code, stderr lines, peak RSS in MB, seconds) of ``python -m minicnnrnn.<argv>``."""
    err_path = os.path.join(cwd, ".stderr")
    start = time.perf_counter()
    with open(err_path, "wb") as err, open(os.devnull, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=cwd, env=env, stdout=out, stderr=err)
        deadline = start + TIMEOUT_S
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.send_signal(signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    with open(err_path, encoding="utf-8", errors="replace") as f:
        lines = [line for line in f.read().splitlines() if line.strip()]
    return proc.returncode, lines, usage.ru_maxrss / 1024, seconds  # Linux: ru_maxrss in KiB


# ---------------------------------------------------------------- inputs


def dataset(path, feature=None):
    rng = np.random.default_rng(0)
    y = (rng.random((40, 3)) < 0.5).astype(np.uint8)
    y[y.sum(1) == 0, 0] = 1
    f = (y @ rng.standard_normal((3, 5))).astype(np.float64)
    if feature is not None:
        f[3, 1] = feature
    np.savez(path, train_features=f[:30], train_labels=y[:30], test_features=f[30:], test_labels=y[30:],
             label_names=np.array(["a", "b", "c"]))  # fmt: skip
    return path


def image(path, size=(16, 16), fmt="PNG"):
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path, format=fmt)
    return path


def fifo(path):
    os.mkfifo(path)
    return path


TINY = ["--embed", "4", "--hidden", "6", "--epochs", "1", "--quiet", "--threads", "1"]


def trained(d, name, env):
    """A finished tiny training run in d/name (checkpoint.npz, best.npz)."""
    data = os.path.join(d, "d.npz")
    if not os.path.exists(data):
        dataset(data)
    out = os.path.join(d, name)
    subprocess.run([sys.executable, "-m", "minicnnrnn.train", "--dataset", f"npz:{data}", "--out", out, *TINY],
                   cwd=d, env=env, check=True, capture_output=True)  # fmt: skip
    return out


def shards(d, env, count=2):
    """Finished shard folders d/s0 .. of 5 small images, and their good merge in d/merged."""
    os.makedirs(os.path.join(d, "imgs"))
    for i in range(5):
        image(os.path.join(d, "imgs", f"i{i}.png"), (20 + i, 24))
    folders = []
    for i in range(count):
        folders.append(os.path.join(d, f"s{i}"))
        argv = ["minicnnrnn.extract", "--images", "imgs", "--out", folders[-1], "--shard", f"{i}/{count}", "--quiet"]
        subprocess.run([sys.executable, "-m", *argv], cwd=d, env=env, check=True, capture_output=True)
    argv = ["minicnnrnn.scale_out", "--merge", *folders, "--out", "merged", "--quiet"]
    subprocess.run([sys.executable, "-m", *argv], cwd=d, env=env, check=True, capture_output=True)
    return folders


def edit_json(path, edit):
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    edit(meta)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(meta, f)


def rewrite_checkpoint_meta(path, text):
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["meta"] = np.array(text)
    np.savez(path, **arrays)


# ---------------------------------------------------------------- the cases
# Each: name -> setup(d, env, args) returning (argv, expected exit, expected stderr lines,
# [files that must keep their contents], extra environment).


def merge_damaged(damage, lines=1):
    def setup(d, env, args):
        folders = shards(d, env)
        damage(folders)
        kept = [os.path.join(d, "merged", "features.npy"), os.path.join(folders[0], "features.npy")]
        return ["minicnnrnn.scale_out", "--merge", *folders, "--out", "merged"], 2, lines, kept, {}

    return setup


def _rows(folder, rows):
    np.save(os.path.join(folder, "features.npy"), rows.astype(np.float32))


def _missing(d, env, args):
    paths = [os.path.join(d, "gone", f"img{i:06d}.jpg") for i in range(args.missing - 1)]
    paths.append(image(os.path.join(d, "good.png")))
    with open(os.path.join(d, "list.txt"), "w", encoding="utf-8") as f:
        f.write("".join(p + "\n" for p in paths))
    argv = ["minicnnrnn.extract", "--image-list", "list.txt", "--out", "f", "--quiet", "--workers", "1"]
    return argv + ["--threads", "1"], 0, args.missing - 1, [], {}  # one warning line per skipped image


def _foreign_best(command):
    def setup(d, env, args):
        a, b = trained(d, "a", env), trained(d, "b", env)
        os.replace(os.path.join(b, "best.npz"), os.path.join(a, "best.npz"))
        kept = [os.path.join(a, "checkpoint.npz"), os.path.join(a, "best.npz")]
        if command == "analyze":
            # the run folder: analyze then reads the epoch train scored, a/best.npz, here another run's
            argv = ["minicnnrnn.analyze", "--checkpoint", a, "--dataset", f"npz:{d}/d.npz", "--out", "an"]
        else:
            argv = ["minicnnrnn.train", "--dataset", f"npz:{d}/d.npz", "--out", a, "--resume", "--epochs", "2"]
            argv += ["--embed", "4", "--hidden", "6", "--quiet", "--threads", "1"]
        return argv, 2, 1, kept, {}

    return setup


def _lock_junk(d, env, args):
    image(os.path.join(d, "a.png"))
    os.makedirs(os.path.join(d, "f"))
    with open(os.path.join(d, "f", ".minicnnrnn.lock"), "w") as f:
        f.write("9" * 5000)
    return ["minicnnrnn.extract", "--images", "a.png", "--out", "f", "--quiet"], 0, 0, [], {}


def _deep_meta(d, env, args):
    a = trained(d, "a", env)
    path = os.path.join(d, "deep.npz")
    with open(os.path.join(a, "checkpoint.npz"), "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    rewrite_checkpoint_meta(path, "[" * 100_000 + "]" * 100_000)
    np.save(os.path.join(d, "f.npy"), np.ones((2, 5), np.float32))
    return ["minicnnrnn.predict", "--checkpoint", path, "--features", "f.npy"], 2, 1, [], {}


def _fifo_case(argv_of, needs_run=False):
    def setup(d, env, args):
        run = trained(d, "a", env) if needs_run else None
        np.save(os.path.join(d, "f.npy"), np.ones((2, 5), np.float32))
        return argv_of(fifo(os.path.join(d, "pipe")), run), 2, 1, [], {}

    return setup


CASES = {
    "EPS file named holiday.jpg (extract)": lambda d, env, args: (
        _write(os.path.join(d, "holiday.jpg"), b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\nshowpage\n"),
        ["minicnnrnn.extract", "--images", "holiday.jpg", "--out", "f", "--strict", "--quiet"], 2, 1, [], {})[1:],
    "1 x 60000 PNG (extract --strict)": lambda d, env, args: (
        image(os.path.join(d, "thin.png"), (1, 60000)),
        ["minicnnrnn.extract", "--images", "thin.png", "--out", "f", "--strict", "--quiet", "--resize", "crop"],
        2, 1, [], {})[1:],
    "newline in an image path (extract)": lambda d, env, args: (
        image(os.path.join(d, "two\nlines.png")),
        ["minicnnrnn.extract", "--images", "two\nlines.png", "--out", "f"], 2, 1, [], {})[1:],
    "MINICNNRNN_MAX_IMAGE_PIXELS=inf (extract)": lambda d, env, args: (
        image(os.path.join(d, "a.png")),
        ["minicnnrnn.extract", "--images", "a.png", "--out", "f"], 2, 1, [], {PIXELS: "inf"})[1:],
    "MINICNNRNN_MAX_IMAGE_PIXELS=abc (extract)": lambda d, env, args: (
        image(os.path.join(d, "a.png")),
        ["minicnnrnn.extract", "--images", "a.png", "--out", "f"], 2, 1, [], {PIXELS: "abc"})[1:],
    "MINICNNRNN_THREADS=99999, 8 images (extract)": lambda d, env, args: (
        [image(os.path.join(d, f"i{i}.png"), (64, 64)) for i in range(8)],
        ["minicnnrnn.extract", "--images", *[f"i{i}.png" for i in range(8)], "--out", "f", "--quiet"], 0, 0, [],
        {"MINICNNRNN_THREADS": "99999"})[1:],
    "lock file holding a 5000-digit number (extract)": _lock_junk,
    "FIFO as the dataset (train)": _fifo_case(lambda p, r: ["minicnnrnn.train", "--dataset", f"npz:{p}", "--out", "o"]),
    "FIFO as --checkpoint (predict)": _fifo_case(
        lambda p, r: ["minicnnrnn.predict", "--checkpoint", p, "--features", "f.npy"]),
    "FIFO as --features (predict)": _fifo_case(
        lambda p, r: ["minicnnrnn.predict", "--checkpoint", f"{r}/checkpoint.npz", "--features", p], True),
    "FIFO as --image-list (extract)": _fifo_case(lambda p, r: ["minicnnrnn.extract", "--image-list", p, "--out", "o"]),
    "FIFO as an image (extract --strict)": _fifo_case(
        lambda p, r: ["minicnnrnn.extract", "--images", p, "--out", "o", "--strict", "--quiet"]),
    "FIFO as convert's input": _fifo_case(lambda p, r: ["minicnnrnn.convert", p, "o.npz"]),
    "features of 1e300 (train)": lambda d, env, args: (
        dataset(os.path.join(d, "big.npz"), 1e300),
        ["minicnnrnn.train", "--dataset", "npz:big.npz", "--out", "o", *TINY], 2, 1, [], {})[1:],
    "best.npz of another run (analyze)": _foreign_best("analyze"),
    "best.npz of another run (train --resume)": _foreign_best("train"),
    "checkpoint metadata nested 100,000 deep (predict)": _deep_meta,
    "merge: a shard with 500 rows for its images": merge_damaged(
        lambda f: (_rows(f[1], np.ones((500, 256))), edit_json(f"{f[1]}/meta.json", lambda m: m.update(count=500)))),
    "merge: a shard of all-NaN features": merge_damaged(lambda f: _rows(f[1], np.full((3, 256), np.nan))),
    "merge: two shards with damaged meta.json": merge_damaged(
        lambda f: [_write(f"{s}/meta.json", b'{"dim": ') for s in f], lines=2),
    "merge: --out is a shard folder": lambda d, env, args: (
        lambda f: (["minicnnrnn.scale_out", "--merge", *f, "--out", f[0]], 2, 1,
                   [os.path.join(f[0], n) for n in ("features.npy", "images.txt", "meta.json")], {}))(shards(d, env)),
    "extract over N missing paths + 1 image": _missing,
}  # fmt: skip


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def run_case(name, setup, args):
    with tempfile.TemporaryDirectory(prefix="hostile-") as d:
        env = dict(os.environ, PYTHONPATH=args.repo, OMP_NUM_THREADS="1")
        argv, want_code, want_lines, kept, extra = setup(d, env, args)
        before = {p: sha(p) for p in kept}
        code, lines, peak, seconds = run_child(argv, d, dict(env, **extra))
        intact = all(os.path.isfile(p) and sha(p) == h for p, h in before.items())
        shown = lines if want_code else []
        prefix_ok = all(line.startswith("error: ") for line in shown)
        held = code == want_code and len(lines) == want_lines and prefix_ok and peak < PEAK_LIMIT_MB and intact
        first = (lines[0] if lines else "").replace("|", "\\|").replace(d + os.sep, "")
        return {"case": name.replace("N missing", f"{args.missing:,} missing"), "exit": f"{code} (want {want_code})",
                "lines": f"{len(lines)} (want {want_lines})", "peak MB": f"{peak:.0f}", "seconds": f"{seconds:.1f}",
                "kept": f"{len(before)}/{len(before)}" if intact else "REPLACED", "held": "yes" if held else "NO",
                "first line": first[:90]}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--missing", type=int, default=100_000, help="missing paths of the extract case")
    parser.add_argument("--only", default="", help="run only the cases whose name contains this text")
    parser.add_argument("--repo", default=REPO, help="the checkout whose minicnnrnn runs (compare an older one)")
    args = parser.parse_args()
    rows = [run_case(name, setup, args) for name, setup in CASES.items() if args.only in name]
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(row[c] for c in columns) + " |")
    held = sum(row["held"] == "yes" for row in rows)
    print(f"\n{held} of {len(rows)} cases held (exit status, line count, peak < {PEAK_LIMIT_MB} MB, good files kept).")


if __name__ == "__main__":
    main()
