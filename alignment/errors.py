"""Errors that reach the user as one line.

Anything raised as a `UserError` is printed by the CLI as `rlhf <stage>: error: <message>`
and exits with status 2, without a traceback (set RLHF_TRACEBACK=1 to see one). Its
message must name what is wrong and where: the file, the row, the field or the key.
"""


class UserError(Exception):
    """Bad input or a bad setting that the user can fix."""


class RecipeError(UserError):
    """A recipe that cannot be loaded: unknown key, wrong type, missing file."""


class DataError(UserError):
    """A data file that cannot be used; the message names file, row and field."""
