"""``python -m minicnnrnn.gradcheck``: every hand-written backward against centred finite differences.

Prints one row per case with the largest relative error over all of its inputs
and parameters and exits with status 1 if any row exceeds 1e-6. Every finite-difference
case of the project lives in this package, one module per room: ``cases_layers.py``
(``layers/``), ``cases_cnn.py`` (whole networks of ``cnn/``), ``cases_rnn.py`` (§3's
layers and the path loss), ``cases_semantic.py`` (the semantic interface's three training
stages, ``rnn/semantic.py``), ``cases_paths.py`` (the training losses on PLA/MLA-aligned
paths) and ``cases_baselines.py`` (the batch losses of the baselines as training runs
them). The tests run the same cases; the finite differences are in ``core/numgrad.py``.
"""

import sys

import numpy

from minicnnrnn.core import backend, cli
from minicnnrnn.core.errors import UserError
from minicnnrnn.core.numgrad import TOLERANCE
from minicnnrnn.gradcheck import cases_baselines, cases_cnn, cases_layers, cases_paths, cases_rnn, cases_semantic

ROOMS = (cases_rnn, cases_semantic, cases_paths, cases_baselines, cases_layers, cases_cnn)


def all_cases():
    """Every (name, case) pair: the RNN's, the semantic interface's, the paths', the baselines',
    the layers', the CNN's."""
    return [case for room in ROOMS for case in room.CASES]


def run_cases(cases, seed, out=None):
    """Run each (name, fn) with its own Generator(seed); print a table. Returns the worst error."""
    out = out or sys.stdout
    width = max(len(name) for name, _ in cases)
    print(f"{'case':<{width}}  max rel error", file=out)
    worst = 0.0
    for name, fn in cases:
        err = fn(numpy.random.default_rng(seed))
        worst = max(worst, err)
        status = "ok" if err <= TOLERANCE else "FAIL"
        print(f"{name:<{width}}  {err:.2e}  {status}", file=out, flush=True)
    return worst


def main(argv=None):
    parser = cli.make_parser(
        "python -m minicnnrnn.gradcheck",
        "Compare every hand-written backward with centred finite differences "
        f"in float64; exit 1 if any max relative error exceeds {TOLERANCE:g}.",
    )
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="seed of the random test problems")
    parser.add_argument(
        "--only",
        default="",
        metavar="TEXT",
        help="run only the cases whose name contains TEXT (any case), e.g. lstm; %(default)r runs every case",
    )
    args = cli.parse(parser, argv)
    cases = [(name, fn) for name, fn in all_cases() if args.only.lower() in name.lower()]
    if not cases:
        raise UserError(f"--only: no case name contains {args.only!r}")
    worst = run_cases(cases, args.seed)
    print(
        f"worst {worst:.2e} ({backend.name()}, seed {args.seed}): "
        f"{'PASS' if worst <= TOLERANCE else 'FAIL'} (tolerance {TOLERANCE:g})"
    )
    return 0 if worst <= TOLERANCE else 1
