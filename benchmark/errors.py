"""The one exception type whose message the command line prints as a single line."""


class BenchmarkError(Exception):
    """A user-facing error: bad input, missing data, unwritable output.

    The message is one line that names the fix. The command line prints it as
    ``error: <message>`` with no traceback and exits with status 2.
    """
