"""The one exception type a user is meant to read.

A `UserError` is a mistake the user can fix (a bad config value, a corrupt file,
an unknown name). The CLI prints its message without a traceback and exits 2.
Everything else is a bug in coach and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: the message names the field, file or value."""

    exit_code = 2
