"""Errors a user can cause, kept apart from bugs.

A `ConfigError` is bad input (a mistyped key, an impossible design); the command line prints
its message and exits with code 2, never a traceback. A `DeadlockError` means the event queue
emptied while work remained; the command line exits with code 3.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """Bad input: names the file, the key path and what was expected."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None):
        self.file = file
        self.key = key
        self.message = message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)

    def in_file(self, file: str) -> ConfigError:
        """This error, naming `file` if it names none yet (raised where the file is unknown,
        as the workload's capture)."""
        return self if self.file else ConfigError(self.message, file=file, key=self.key)

    def within(self, section: str) -> ConfigError:
        """This error with its key under `section` (`section` itself if it names no key):
        raised by code that reads a section's values without knowing where they sit."""
        key = f"{section}.{self.key}" if self.key else section
        return ConfigError(self.message, file=self.file, key=key)


def out_of_memory(err: BaseException) -> bool:
    """Whether `err` is an allocation that failed: Python's MemoryError, or torch's CPU
    allocator, which raises a RuntimeError instead, as it does for a size whose bytes
    overflow 64 bits (a model argument of 10^12 channels)."""
    return isinstance(err, MemoryError) or (
        isinstance(err, RuntimeError) and any(
            text in str(err) for text in ("can't allocate memory",
                                          "Storage size calculation overflowed")))


@contextmanager
def out_of_memory_as(error: ConfigError | Callable[[], ConfigError]) -> Iterator[None]:
    """Within it, an allocation that fails (`out_of_memory`) is bad input: `error` is raised
    in its place (or, given a function, the error it makes then, once it has freed some
    memory to make it with); any other error passes. The one form of the memory guards of the
    capture, the mapper, the model builder and a SCALE-Sim topology."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        if not out_of_memory(err):
            raise
        raise (error if isinstance(error, ConfigError) else error()) from None


# The stops met (signal numbers), whether or not they were caught since: the Ctrl-Cs inside
# `interrupts_kept`, and those `desim sweep`'s own handler meets (its `_STOPPED`, the same
# list): one record, which `raise_if_interrupted` reads.
STOPS: list[int] = []


@contextmanager
def interrupts_kept() -> Iterator[None]:
    """Within it (in the main thread, where Python's own Ctrl-C handler is in place; else
    it does nothing), a Ctrl-C raises KeyboardInterrupt as always and is kept in mind too,
    so that code that swallows it cannot lose it: an import torch makes lazily, cut short
    by it, surfaced as an AttributeError ("partially initialized module"), which a broad
    `except` then took for a fault of the model (a false input error, exit 2); and twice a
    run went on to the end (exit 0), the interrupt lost where a library or a finalizer had
    caught it. `raise_if_interrupted` raises it again; the block raises it at its end, in
    place of any other error it ends with. Nested, the outermost keeps it."""
    import signal
    import threading

    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield  # not ours to change: another thread, an installed handler (or ours, nested)
        return

    def kept(signum: int, frame: object) -> None:
        STOPS.append(signum)
        raise KeyboardInterrupt

    STOPS.clear()
    signal.signal(signal.SIGINT, kept)
    try:
        try:
            yield
        except BaseException:  # whatever the Ctrl-C surfaced as, it is the Ctrl-C
            raise_if_interrupted()
            raise
        raise_if_interrupted()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        STOPS.clear()


def raise_if_interrupted() -> None:
    """KeyboardInterrupt, if a stop is on record (`STOPS`: a Ctrl-C within `interrupts_kept`,
    or a sweep's stop), caught since or not."""
    if STOPS:
        raise KeyboardInterrupt


class DeadlockError(Exception):
    """The simulation stopped with work left; the message lists who waits for what."""


def fail(code: int, message: str) -> None:
    """The one way every command says an error: one line on stderr, printed as it is (never
    read as rich markup), then exit `code` (2 for a ConfigError, 3 for a DeadlockError)."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True).print(f"[bold red]error:[/] {escape(message)}", highlight=False,
                               soft_wrap=True)
    raise SystemExit(code)


EXIT_CODES = {ConfigError: 2, DeadlockError: 3}


def guarded(action: Callable[[], T]) -> T:
    """Run `action`; the user's errors become one line and an exit code, never a traceback:
    bad input (ConfigError) exits 2, a deadlocked simulation (DeadlockError) exits 3."""
    try:
        return action()
    except (ConfigError, DeadlockError) as err:
        fail(EXIT_CODES[type(err)], str(err))
        raise  # unreachable: fail exits
