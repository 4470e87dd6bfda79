"""The one exception type a user is meant to read.

A `UserError` is a mistake the user can fix (a bad config value, a corrupt file,
an unknown name). The CLI prints its message without a traceback and exits 2.
Everything else is a bug in coach and keeps its traceback.
"""


# Exit codes of every command (README, "Exit codes"):
EXIT_OK = 0            # done (also: stopped by Ctrl-C/SIGTERM after saving; the resume command is printed)
EXIT_PROBLEMS = 1      # coach check found problems (warnings or errors)
EXIT_USER = 2          # a user error: bad option, config, file or data; nothing was trained
EXIT_NOT_LEARNED = 3   # the model learned nothing usable: diverged, or no better than chance
EXIT_ABORTED = 130     # a second Ctrl-C: out at once, the last checkpoint kept


class UserError(Exception):
    """A problem with the user's input: the message names the field, file or value."""

    exit_code = 2
