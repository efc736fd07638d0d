"""The one exception type that commands turn into a one-line message.

Raise ``UserError("path/to/file: what is wrong")`` for anything a user can fix
(a missing file, a bad argument, a corrupt input). Command-line entry points run
through :func:`minicnnrnn.core.cli.run`, which prints ``error: <message>``
and exits with status 2 instead of showing a traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line."""
