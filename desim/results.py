"""Writing results so that nothing is half-written: a temporary file, then an atomic rename;
the names of the files `desim report` writes beside them (which `desim run` removes when
it writes the folder again, without importing the report); and the record of which desim
wrote them (`provenance`)."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desim.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


def writable_folder(path: str | Path, holding: str = "results") -> Path:
    """`path`, created if need be and checked writable: a folder results (or what
    `holding` says: "the workload cache (--cache)") cannot go to is bad input, said before
    anything is simulated rather than after."""
    if not str(path).strip():  # Path("") is the current folder: results beside one's files
        raise ConfigError(f"an empty path; expected a folder to write {holding} in")
    path = Path(path)
    if path.exists() and not path.is_dir():  # mkdir's "File exists" named no cause
        raise ConfigError(f"is a file, not a folder; expected a folder to write {holding} in",
                          file=str(path))
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError as err:
        raise ConfigError(f"cannot write {holding} there ({err.strerror or err})",
                          file=str(path)) from None
    return path


@contextmanager
def held_by_this_process(folder: Path, what: str,
                         then: str | None = "run the same command again then: what it "
                                            "finished is kept") -> Iterator[None]:
    """Hold `folder` for this process while it writes `what` there: two `desim sweep`
    commands on one folder had both computed every point, each writing its files over the
    other's, and two `desim run`s had each renamed and removed the other's files. The lock
    is the kernel's (`flock` on the folder itself: no file is left), so a killed process's
    lock goes with it: a sweep resumed after a kill is never refused. Where the file
    system cannot lock a folder (NFS, whose client takes `flock` for a write lock, which a
    folder opened to read cannot have), the folder is not held. A second hold, by
    this process too (another thread, a nested call), is refused: the holder must pass
    the folder on. `then`: what the refusal advises once the other has ended."""
    import fcntl

    removed = ConfigError(f"removed by another desim while {what} were to be written there; "
                          "run the same command again", file=str(folder))
    try:
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:  # made, then removed by the desim that made it (its run failed)
        raise removed from None
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # (its `what` is not known here: a run's or a sweep's)
            advice = f" ({then})" if then else ""
            raise ConfigError(f"another desim is writing in this folder now: wait for it to "
                              f"end{advice}, or write elsewhere", file=str(folder)) from None
        except OSError:  # a file system that cannot lock a folder (NFS: EBADF, ENOLCK)
            yield  # not held, as before there was a lock (README says so)
            return
        try:
            moved = os.stat(folder).st_ino != os.fstat(handle).st_ino
        except FileNotFoundError:
            moved = True
        if moved:  # removed (or replaced) by the desim whose lock this one waited for
            raise removed
        yield
    finally:
        os.close(handle)  # (the lock goes with it)


def writable_file(path: str | Path) -> Path:
    """`path`, a file to write: its folder created and checked writable (`writable_folder`),
    and `path` itself no folder, which the atomic rename onto it would fail on with a
    traceback, after the work is done."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError("is a folder; expected a file to write", file=str(path))
    writable_folder(path.parent, path.name)  # (a report's folder: not "results")
    return path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write whole: renamed onto `path`
    when the block ends, removed if it fails, so `path` is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are ordinary files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, frame.to_csv(index=False, lineterminator="\n"))


# `desim report DIR`'s report unless --out says otherwise; `desim run` removes it (and its
# HTML copy and plots: `report_files`) when it writes DIR again
DEFAULT_REPORT = "report.md"
# What each plot shows, last in its name (`plot_path`)
PLOT_KINDS = ("energy", "busiest_part", "bound_timeline", "timeline", "layer_energy",
              "topology", "roofline")


def plot_path(out_dir: Path, prefix: str, kind: str, run: str | None = None) -> Path:
    """A plot's file: `prefix` (the report's stem and the experiment's slug), the run if the
    plot is one run's, then its kind, one of PLOT_KINDS, so that `report_files` finds it;
    joined by dots, which neither a slug nor a run's name holds (both [A-Za-z0-9_-]): the
    stem, whatever it holds, is the same for every plot of a report. Joined
    by "_" as they were, run e's bound_timeline and run e_bound's timeline were one file
    (r_x_e_bound_timeline.png), the later drawn over the earlier and both linked to it."""
    assert kind in PLOT_KINDS, kind
    return out_dir / ".".join([prefix, *([run] if run is not None else []), kind, "png"])


def report_files(stem: str = Path(DEFAULT_REPORT).stem) -> tuple[str, ...]:
    """Glob patterns of what `desim.report.build_report` writes for a report named
    `stem`.md: the report, its HTML copy and its plots (`plot_path`), then the plots an
    older desim named <stem>_..._<kind>.png (so that a report written again, or `desim run`
    into its folder, removes those too)."""
    return (f"{stem}.md", f"{stem}.html", *(f"{stem}_*.{kind}.png" for kind in PLOT_KINDS),
            *(f"{stem}_*_{kind}.png" for kind in PLOT_KINDS))


@functools.cache
def provenance() -> dict[str, Any]:
    """Which desim made the results (gem5 records its build beside its stats): the
    package's version (None when it runs from a source tree not installed), and from a git
    checkout its commit and whether files tracked there differ from it, with the sha256 of
    that difference (`git diff HEAD`). Two folders of one configuration whose numbers
    differ were made by different code; `desim compare` says so."""
    root = Path(__file__).resolve().parents[1]
    try:
        version: str | None = importlib.metadata.version("desim")
    except importlib.metadata.PackageNotFoundError:
        version = None
    made: dict[str, Any] = {"version": version}
    if (root / ".git").exists():
        def git(*args: str) -> str:
            return subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=30, check=True).stdout
        try:
            made["commit"] = git("rev-parse", "HEAD").strip()
            diff = git("diff", "HEAD")
            made["modified"] = bool(diff)
            if diff:
                made["diff_sha256"] = hashlib.sha256(diff.encode()).hexdigest()
        except (OSError, subprocess.SubprocessError):  # no git here: the version alone
            pass
    return made
