"""User-facing errors: the CLI prints ``error: <message>`` on one line and exits non-zero.

Exit codes: 2 for usage and data mistakes (``UserError``), 1 for a model that does not fit its
budget or board (``DoesNotFit``) and for a C-vs-reference mismatch (reported, not raised).
"""


class UserError(Exception):
    """A mistake the user can fix (bad argument, missing file, bad data)."""

    exit_code = 2


class DoesNotFit(UserError):
    """The model (or every model of the search space) needs more SRAM or flash than the budget."""

    exit_code = 1
