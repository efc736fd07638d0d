"""Progress output that suits where it goes: bars on a terminal, plain lines in a log.

A tqdm bar redraws itself many times a second with carriage returns; in a terminal
that is one line that moves, in a redirected log it is thousands of lines. So:

* :func:`bar` is a tqdm bar only when stderr is a terminal and ``--quiet`` was not
  given; otherwise it is a stand-in with the same methods (``update``,
  ``set_postfix``, ``close``) that, when ``plain_lines`` is set, prints one plain
  line at most every ``PLAIN_EVERY_S`` seconds and one at the end (``extract``),
  and nothing otherwise (the training loop prints its own line per epoch);
* :func:`say` prints an informational line unless ``--quiet``;
* :func:`set_quiet` is called by :func:`minicnnrnn.core.cli.parse` for ``--quiet``.

Results (the metrics table, predictions) and warnings are not progress: commands
print them with ``print`` whatever ``--quiet`` says.
"""

import sys
import time

from tqdm import tqdm

PLAIN_EVERY_S = 30.0
_state = {"quiet": False}


def set_quiet(quiet):
    """Silence progress bars, progress lines and :func:`say` (``--quiet``)."""
    _state["quiet"] = bool(quiet)


def is_quiet():
    return _state["quiet"]


def say(*args, **kwargs):
    """print(...) unless --quiet (always flushed)."""
    if not _state["quiet"]:
        print(*args, flush=True, **kwargs)


def on_terminal(stream=None):
    """True if `stream` (default stderr) is an interactive terminal."""
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class PlainLines:
    """A stand-in for a tqdm bar: plain lines on stderr (or none when ``every`` is None)."""

    def __init__(self, total, initial=0, desc="", unit="it", every=PLAIN_EVERY_S):
        self.total, self.n, self.desc, self.unit, self.every = total, initial, desc, unit, every
        self.start = self.last = time.perf_counter()

    def update(self, n=1):
        self.n += n
        now = time.perf_counter()
        if self.every is not None and now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now):
        rate = self.n / max(now - self.start, 1e-9)
        print(f"{self.desc}: {self.n}/{self.total} {self.unit} ({rate:.1f} {self.unit}/s)", file=sys.stderr, flush=True)

    def set_postfix(self, *args, **kwargs):
        pass

    def close(self):
        if self.every is not None:
            self._line(time.perf_counter())
            self.every = None


def bar(total, desc="", unit="it", initial=0, plain_lines=False, **tqdm_options):
    """A tqdm bar on a terminal; otherwise :class:`PlainLines` (lines only if plain_lines, never when quiet)."""
    if _state["quiet"] or not on_terminal():
        every = PLAIN_EVERY_S if plain_lines and not _state["quiet"] else None
        return PlainLines(total, initial, desc, unit, every)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True, **tqdm_options)
