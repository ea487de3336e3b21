"""The one exception type whose message the command line prints as a single line."""


class BenchmarkError(Exception):
    """A user-facing error: bad input, missing data, unwritable output.

    The message is one line that names the fix. The command line prints it as
    ``error: <message>`` with no traceback and exits with status 2.
    """


class MethodRefusal(BenchmarkError):
    """A method declines a cell it cannot run (e.g. UNSIR outside class forgetting).

    The runner records such a cell as ``skipped`` with this message; every other
    error inside a cell is ``failed``.
    """
