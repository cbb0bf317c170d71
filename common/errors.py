"""The base of every error a user can cause and fix.

Its message is one line saying what to do; the command prints it on stderr and ends with
the error's `exit_code`. Anything else that escapes is a bug and keeps its traceback.
"""
from __future__ import annotations

EXIT_ENVIRONMENT = 1  # the machine, a node, a file: something outside the command line
EXIT_USAGE = 2  # the command line or the input it names
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: 128 + SIGINT, as a shell reports it


class UserError(Exception):
    """Something the user can fix; str(error) is the one line that says how."""

    exit_code = EXIT_ENVIRONMENT


class UsageError(UserError):
    """A command-line option or the input it names is wrong."""

    exit_code = EXIT_USAGE
