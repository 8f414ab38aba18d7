"""User-facing errors: the CLI prints ``error: <message>`` on one line and exits non-zero."""


class UserError(Exception):
    """A mistake the user can fix (bad argument, missing file, budget that cannot be met)."""
