"""Regenerate every measured figure of README.md and docs/*.md from the command that prints it.

    python benchmarks/regenerate.py                  # every block
    python benchmarks/regenerate.py --list           # the blocks and their commands
    python benchmarks/regenerate.py --only bench_beam --dry-run

A measured block sits between two markers that name the command printing it:

    <!-- measured: python benchmarks/bench_beam.py --threads 1 -->
    ...what the command printed...
    <!-- end measured -->

Each command runs in bash from the repository root; ``{tmp}`` in it becomes a fresh,
empty temporary folder (outputs: ``--out {tmp}/run``; an empty feature cache:
``MINICNNRNN_CACHE={tmp}/cache python ...``). The block's body becomes the command's
stdout plus one line naming the command, the date, the machine (cores, BLAS and its
version from threadpoolctl, the BLAS threads), the wall and CPU time of the command
(resource.getrusage of the children) and the load average before it ran. A command that
fails or runs past ``--timeout`` leaves its block as it was and is reported; the exit
status is 1 then. tests/test_docs_measured.py checks the markers.
"""

import argparse
import datetime
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = re.compile(r"^<!-- measured: (?P<command>.+?) -->$")
END = "<!-- end measured -->"
STAMP = "Measured by `"  # the first words of the line this script adds under each body


def doc_files(root=ROOT):
    """README.md and docs/*.md, relative to ``root``, sorted."""
    docs = os.path.join(root, "docs")
    names = sorted(f for f in os.listdir(docs) if f.endswith(".md")) if os.path.isdir(docs) else []
    return ["README.md"] + [os.path.join("docs", f) for f in names]


def find_blocks(lines, where="doc"):
    """[(begin line index, end line index, command)] of ``lines``; ValueError naming
    ``where`` and the line for a marker without its partner or an END without BEGIN."""
    blocks, open_at = [], None
    for i, line in enumerate(lines):
        text = line.strip()
        if text.startswith("<!-- measured:"):
            if open_at is not None:
                raise ValueError(f"{where}:{i + 1}: a measured block opens inside the one of line {open_at + 1}")
            if not BEGIN.match(text):
                raise ValueError(f"{where}:{i + 1}: expected '<!-- measured: COMMAND -->' on one line")
            open_at = i
        elif text == END:
            if open_at is None:
                raise ValueError(f"{where}:{i + 1}: '{END}' without '<!-- measured: ... -->' above it")
            blocks.append((open_at, i, BEGIN.match(lines[open_at].strip())["command"]))
            open_at = None
    if open_at is not None:
        raise ValueError(f"{where}:{open_at + 1}: '<!-- measured: ... -->' without '{END}'")
    return blocks


def blas_words():
    """'openblas 0.3.27' (the BLAS that numpy loaded) and its thread count, via threadpoolctl."""
    try:
        import numpy  # noqa: F401  (loads the BLAS)
        from threadpoolctl import threadpool_info

        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except ImportError:
        return "BLAS unknown (no threadpoolctl)"
    if not info:
        return "BLAS unknown"
    return f"{info[0].get('internal_api')} {info[0].get('version')}"


def threads_of(command):
    """The BLAS threads a command asks for: its --threads, else the environment, else the default."""
    m = re.search(r"--threads[ =](\S+)", command) or re.search(r"(?:OPENBLAS|OMP|MKL)_NUM_THREADS=(\S+)", command)
    if m:
        return m.group(1)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(name):
            return os.environ[name]
    return "the command's default"


def run_block(command, timeout):
    """Run ``command`` (``{tmp}`` -> a fresh temporary folder) from the repository root.
    Returns (stdout, stamp line); raises RuntimeError with the tail of stderr on failure."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="regenerate-") as tmp:
        start = time.perf_counter()
        try:
            done = subprocess.run(
                ["bash", "-c", command.replace("{tmp}", tmp)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"ran past --timeout {timeout:g} s") from None
        wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"exit status {done.returncode}:\n{tail}")
    stamp = (
        f"{STAMP}{command}` on {datetime.date.today().isoformat()}, {platform.machine()} "
        f"({os.cpu_count()} cores, {blas_words()}, threads {threads_of(command)}), load average {load:.1f}: "
        f"{wall:.0f} s wall, {cpu:.0f} s CPU."
    )
    return done.stdout.rstrip("\n"), stamp


def _read(full):
    with open(full, encoding="utf-8") as f:
        return f.read().split("\n")


def regenerate(path, options, log=print):
    """Regenerate the chosen blocks of one file in place. Returns the number that failed.
    The file is read again before each write, so edits made while a command ran are kept."""
    full = os.path.join(ROOT, path)
    failed = 0
    for begin, _, command in find_blocks(_read(full), path):
        if options.only and not any(text in command for text in options.only):
            continue
        if options.list or options.dry_run:
            log(f"{path}:{begin + 1}: {command}")
            continue
        log(f"{path}:{begin + 1}: running {command}")
        try:
            body, stamp = run_block(command, options.timeout)
        except RuntimeError as exc:
            log(f"{path}:{begin + 1}: FAILED, block kept: {exc}")
            failed += 1
            continue
        log(f"  {stamp}")
        lines = _read(full)
        spans = [(b, e) for b, e, c in find_blocks(lines, path) if c == command]
        for b, e in reversed(spans):  # the same command twice in a file: both get its output
            lines[b + 1 : e] = [body, "", stamp] if body else [stamp]
        with open(full, "w", encoding="utf-8") as f:  # after every block: a later failure keeps it
            f.write("\n".join(lines))
    return failed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", metavar="TEXT", help="only blocks whose command contains TEXT")
    p.add_argument("--list", action="store_true", help="list the blocks and their commands, run nothing")
    p.add_argument("--dry-run", action="store_true", help="say what would run, run nothing")
    p.add_argument("--timeout", type=float, default=3600, help="seconds one command may run (default 3600)")
    options = p.parse_args(argv)
    failed = 0
    for path in doc_files():
        try:
            failed += regenerate(path, options)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if failed:
        print(f"{failed} block(s) failed and were kept as they were", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
