"""Pieces shared by every ``python -m minicnnrnn.<command>``.

Each command builds its parser with :func:`make_parser`, parses with
:func:`parse`, and runs its ``main`` through :func:`run`, so that

* ``--backend numpy|cupy`` (default: $MINICNNRNN_BACKEND or numpy) selects the
  array library before any array is made, and
* a :class:`~minicnnrnn.core.errors.UserError` becomes ``error: <one line>`` on
  stderr with exit status 2, never a traceback; so do running out of memory
  (``MemoryError``) and an operating-system error no reader caught (permission, disk
  full, read-only file system: ``OSError``, named by its path).
"""

import argparse
import sys
import warnings

import minicnnrnn
from minicnnrnn.core import backend, fileio, limits, progress, threads
from minicnnrnn.core.errors import UserError


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose mistakes are reported in one line, like every other error.

    argparse normally prints the whole usage text before the error; we print
    ``error: <prog>: <what was wrong> (see --help)`` and exit with status 2.
    """

    def error(self, message):
        print(f"error: {self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: X)" to an option's help only where it says something: not when the
    help already states its default, and not for None or on/off flags."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, False, True, argparse.SUPPRESS):
            return text
        if action.required or isinstance(action, argparse._VersionAction):
            return text
        return super()._get_help_string(action)


def add_backend_argument(parser):
    """Add ``--backend`` to an argparse parser."""
    default = backend.from_environment()
    parser.add_argument(
        "--backend",
        default=default,
        choices=backend.BACKENDS,
        help=f"array library: numpy (CPU) or cupy (NVIDIA GPU); the default comes from ${backend.ENV_VAR}",
    )
    return parser


def make_parser(prog, description):
    """An ArgumentParser with the shared ``--backend``, ``--version``, ``--quiet`` and ``--threads`` options."""
    parser = OneLineParser(prog=prog, description=description, formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--version", action="version", version=f"minicnnrnn {minicnnrnn.__version__}")
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or progress lines (results and warnings still print)"
    )
    parser.add_argument(
        "--threads",
        type=threads_argument,
        default="auto",
        help="BLAS threads: a number, or auto = 1 (extract, pretrain: every core), never the load (core/threads.py)",
    )
    return add_backend_argument(parser)


def non_negative_int(text):
    """argparse type for counts and seeds: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def positive_int(text):
    """argparse type for sizes: a whole number >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def threads_argument(text):
    """argparse type of ``--threads``: 'auto' or a whole number >= 1."""
    return text if text == "auto" else positive_int(text)


def run(main, argv=None):
    """Call ``main(argv)``; turn UserError into a one-line error and exit code 2.

    ``main`` parses its own arguments and must select the backend (through
    :func:`parse`, or :func:`minicnnrnn.core.backend.use`) before it creates arrays.

    NumPy's overflow and invalid-value warnings raised in this package's code are not
    shown: every such value is caught by a check (divergence, finiteness) that says what
    happened in its one line, and the warnings would only add lines before it. Other
    libraries' warnings are held back while ``main`` runs: a run that ends in an error
    prints its one line alone; a run that succeeds prints each warning as one line
    (``warning: RuntimeWarning: ...``, not Python's two-line form with the source line).
    """
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"minicnnrnn\.")
    try:
        with warnings.catch_warnings(record=True) as caught:
            code = main(argv)
        for w in caught:  # a run that succeeded: each library warning as one line, after the work
            first = str(w.message).strip().splitlines()[0] if str(w.message).strip() else ""
            print(f"warning: {w.category.__name__}: {first}", file=sys.stderr)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except MemoryError:
        print(
            "error: out of memory (an input larger than this machine can hold; see docs/limits.md "
            "for the size limits, or use smaller batches)",
            file=sys.stderr,
        )
        sys.exit(2)
    except OSError as exc:
        where = exc.filename if exc.filename is not None else "input/output"
        print(f"error: {fileio.os_error_message(where, exc, 'failed')}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)


def parse(parser, argv=None, big_matrices=False):
    """Parse arguments, select the backend they name and set the BLAS threads. Returns the namespace.

    big_matrices: the command's work is large matrix products (VGG16), where every
    core pays even on a busy machine (see :mod:`minicnnrnn.core.threads`).
    """
    args = parser.parse_args(argv)
    limits.check_environment()  # junk in a $MINICNNRNN_MAX_* limit: one line now, not per input
    backend.use(args.backend)
    progress.set_quiet(getattr(args, "quiet", False))
    threads.apply(getattr(args, "threads", "auto"), big_matrices)
    return args
