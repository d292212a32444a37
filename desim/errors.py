"""Errors a user can cause, kept apart from bugs.

A `ConfigError` is bad input (a mistyped key, an impossible design); the command line prints
its message and exits with code 2, never a traceback. A `DeadlockError` means the event queue
emptied while work remained; the command line exits with code 3.
"""


class ConfigError(Exception):
    """Bad input: names the file, the key path and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class DeadlockError(Exception):
    """The simulation stopped with work left; the message lists who waits for what."""
