"""Running a sweep's points on Dask (`desim.sweep`): the tasks the workers run (a capture,
shared by the points that need it; a point's simulation, whose failure is a result too),
and the cluster they run on, a local one or a running scheduler's, with the ways it can fail
that are not the sweep's input (`ClusterFailed`: a local cluster that does not start;
`SchedulerLost`: the connection lost mid-sweep, the finished points kept)."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from desim.errors import ConfigError
from desim.summary_text import plural

if TYPE_CHECKING:
    from distributed import Client

    from desim.experiment import Experiment
    from mappings.workload import Workload

TRACEBACK_FRAMES = 8  # the innermost frames kept in a failed point's file


_WORKER_TUNED = False


def _tune_worker() -> None:
    """Set a worker process up for simulating, once (after its first task's imports).

    The Dask nanny sets `MALLOC_TRIM_THRESHOLD_=65536`, and with it glibc also freezes its
    mmap threshold at 128 KiB, so every numpy array the mapper and the kernel allocate is a
    fresh mmap, page-faulted and zeroed: a point took twice as long in a worker as in `desim
    run` (more system than user time). Generous thresholds, set here rather than in the
    cluster's environment, hold on remote workers too. Other C libraries: nothing to do.
    And the imports' objects (torch's, pandas', some 200,000) are frozen out of the garbage
    collector's reach: every full collection walked them, 0.5 s of a quickstart point (0.1
    frozen), as in `desim run`."""
    global _WORKER_TUNED
    if _WORKER_TUNED:
        return
    _WORKER_TUNED = True
    gc.collect()
    gc.freeze()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: keep up to 128 MiB freed memory
        libc.mallopt(-3, 32 << 20)   # M_MMAP_THRESHOLD: heap, not mmap, below 32 MiB
    except (OSError, AttributeError):
        pass


@dataclass(frozen=True)
class CaptureFailed:
    """A capture's error, handed to the points that needed it: they record it as theirs
    (returned rather than raised, so Dask neither logs it per point nor retries)."""

    failure: dict[str, Any]


def _capture_task(workload: Any, pruning: Any, cache_dir: str | None
                  ) -> Workload | CaptureFailed:
    """One capture, shared by every point whose runs need it (Dask passes the result on)."""
    from desim.workload_cache import load_or_capture

    _tune_worker()
    try:
        return load_or_capture(workload, pruning, cache_dir)
    except Exception as err:  # noqa: BLE001 - recorded in each dependent point's file
        return CaptureFailed(failure_record(err, err.__traceback__))


def _point_task(experiment: Experiment, captures: dict[str, Workload | CaptureFailed]
                ) -> dict[str, Any]:
    """Simulate every run of one point. A failure is a result too (status "failed", the
    error and the innermost frames), so one bad point never stops the sweep."""
    from desim.runner import run, summarize
    from desim.workload_cache import cache_key

    _tune_worker()
    started = time.perf_counter()
    worker = {"host": socket.gethostname(), "pid": os.getpid()}
    for captured in captures.values():
        if isinstance(captured, CaptureFailed):
            return {**captured.failure, "elapsed_s": 0.0, "worker": worker}
    try:
        results = run(experiment, capture=lambda w, p: captures[cache_key(w, p)],
                      elaborated=True)  # by `_compute`, before dispatching the point
        summary = summarize(experiment, results)
    except Exception as err:  # noqa: BLE001 - recorded in the point's file
        return {**failure_record(err, err.__traceback__),
                "elapsed_s": time.perf_counter() - started, "worker": worker}
    return {"status": "ok", "error": None, "error_type": None, "traceback": None,
            "runs": summary["runs"], "comparison": summary["comparison"],
            "elapsed_s": time.perf_counter() - started, "worker": worker}


def failure_record(err: BaseException, tb: Any) -> dict[str, Any]:
    lines = traceback.format_exception(type(err), err, tb, limit=-TRACEBACK_FRAMES)
    return {"status": "failed", "error": str(err) or type(err).__name__,
            "error_type": type(err).__name__, "traceback": "".join(lines),
            "runs": None, "comparison": None}


class ClusterFailed(Exception):
    """The local Dask cluster did not start (its workers could not spawn, no port was free,
    it timed out): a failure of this machine, not of the sweep's input, so `desim sweep`
    exits 1 with this message; the folder is left as it was."""


class SchedulerLost(Exception):
    """The connection to the Dask scheduler broke mid-sweep (it stopped, or the network
    failed). The points it had not finished have no file, so a resumed sweep computes them;
    `desim sweep` exits 1 with this message."""


def run_on_dask(client: Client, scheduler: str | None,
                ready: list[tuple[Any, Experiment, list[str]]], out: Path
                ) -> Iterator[tuple[Any, Experiment, dict[str, Any]]]:
    """Submit the points (`desim.sweep_spec.Point`s, each with its experiment and its captures'
    cache keys; after the captures they need) and yield each with its result as it
    finishes. Losing the scheduler cancels every future left, or makes a call raise:
    then SchedulerLost, after the points that did finish. Only Dask's calls are made in
    here, so a point file that cannot be written is not taken for a lost scheduler."""
    from concurrent.futures import CancelledError

    from distributed import as_completed
    from distributed.client import ClosedClientError

    session = uuid.uuid4().hex[:8]  # two sweeps on one scheduler never share a point's key
    finished, cause = 0, ""
    try:
        captures: dict[str, Any] = {}
        futures = {}
        for point, experiment, keys in ready:
            needed = {}
            for run, key in zip(experiment.spec.runs, keys, strict=True):
                if key not in captures:
                    captures[key] = client.submit(
                        _capture_task, experiment.workloads[run.name], run.pruning,
                        str((out / "cache").resolve()), key=f"capture-{key}")
                needed[key] = captures[key]
            future = client.submit(_point_task, experiment, needed,
                                   key=f"point-{point.point_id}-{session}")
            futures[future] = (point, experiment)
        captures.clear()  # Dask keeps each capture while a point still needs it
        for future in as_completed(futures):
            point, experiment = futures.pop(future)
            if future.status == "cancelled":  # the scheduler went away: not the point's fault
                continue
            if future.status == "finished":
                result = future.result()
            else:  # its worker died again and again (KilledWorker: out of memory, a crash)
                result = {**failure_record(future.exception(), future.traceback()),
                          "elapsed_s": None, "worker": None}
            future.release()
            finished += 1
            yield point, experiment, result
    # CommClosedError and TimeoutError are OSErrors; a client closed after failing to
    # reconnect (Dask tries for distributed.comm.timeouts.connect) refuses to submit
    except (OSError, CancelledError, ClosedClientError) as err:
        cause = f" ({type(err).__name__}: {' '.join(str(err).split())})"
    if finished < len(ready):
        raise SchedulerLost(
            "lost the connection to the Dask scheduler "
            f"{'at ' + scheduler if scheduler else 'of the local cluster'}{cause}: "
            f"{len(ready) - finished} of {plural(len(ready), 'point')} unfinished (the finished "
            "ones are written): run the same command again to compute them")


@contextlib.contextmanager
def _silenced(name: str) -> Iterator[None]:
    """Logger `name` says nothing below CRITICAL meanwhile (its level restored after)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


class _CancelBeforeStartRace(logging.Filter):
    """Drops the one record that distributed 2026.8's `sync` logs through tornado on a
    Ctrl-C that comes before its coroutine started: the `cancel` callback it queues reads a
    future not yet assigned, and tornado logs the NameError with its traceback (seen in CI,
    after our one line "interrupted: ..."). Nothing was lost; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, NameError) or "'future'" not in str(error):
            return True
        frames = traceback.extract_tb(error.__traceback__)
        return not (frames and frames[-1].name == "cancel"
                    and Path(frames[-1].filename).parts[-2:] == ("distributed", "utils.py"))


CANCEL_BEFORE_START_RACE = _CancelBeforeStartRace()


@contextlib.contextmanager
def _signals_held_while_spawning() -> Iterator[None]:
    """While the local cluster starts (a second or two):
    - the processes spawned ignore SIGINT (an ignored signal stays ignored across exec, and
      Python then installs no KeyboardInterrupt handler): a Ctrl-C reaches the whole
      process group, and each local worker printed its KeyboardInterrupt's traceback. This
      process still gets a later one and closes the cluster, which stops the workers. A
      Ctrl-C meanwhile is ignored: the disposition is the process's, and a signal blocked
      in this thread alone reached another thread, ignored there.
    - a SIGTERM is held by a handler here and raised again once the cluster has started,
      which is then closed whole (a handler is not inherited across exec: the workers still
      stop on their nanny's SIGTERM). Met midway, it left a half-made cluster that Dask's
      exit hook failed to close, with a traceback.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set a handler (a notebook's executor, say)
        return
    held: list[int] = []
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
                signal.SIGTERM: signal.signal(signal.SIGTERM,
                                              lambda signum, _frame: held.append(signum))}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if held:
            signal.raise_signal(signal.SIGTERM)


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Client]:
    """A client of the scheduler at `scheduler`, or of a local cluster of `workers` worker
    processes of one thread each, closed on leaving: an unreachable scheduler is bad input
    (ConfigError), a local cluster that does not start `ClusterFailed`."""
    from distributed import Client, LocalCluster

    # the callback may run after this returns (a Ctrl-C's exit): on for the process
    logging.getLogger("tornado.application").addFilter(CANCEL_BEFORE_START_RACE)
    if scheduler:
        try:  # the wait: Dask's distributed.comm.timeouts.connect, 30 s unless configured
            remote = Client(scheduler)
        except (OSError, ValueError) as err:  # nothing there, or not an address
            raise ConfigError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler "
                              f"there ({err})") from None
        # A lost scheduler: Dask logs its failed reconnection (while the sweep waits for
        # points), or the one that closing cancels; SchedulerLost says it in a line
        with _silenced("distributed.client"):
            try:
                yield remote
            finally:  # every finished point is written by now: a failed close loses nothing
                with contextlib.suppress(OSError):
                    remote.close()
        return
    saved = dict(os.environ)  # the nanny sets its workers' variables in our environment
    try:
        # No dashboard; the scheduler's HTTP server, which starts anyway, on a free local
        # port: dashboard_address=None alone binds 8787 (dask/distributed#8136), in use
        # when another cluster runs on the machine
        with contextlib.ExitStack() as stack:
            try:
                # The workers' Dask logs CRITICAL only, from their start (the level their
                # distributed logger takes from the environment as it loads) to their
                # close: a point's error is its record's, and a worker fetching a shared
                # capture from one a Ctrl-C was closing logged a CommClosedError's traceback
                # at ERROR (a race, seen once in CI), past silence_logs, which ends as the
                # worker closes
                os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"
                with _signals_held_while_spawning():
                    cluster = stack.enter_context(LocalCluster(
                        n_workers=workers, threads_per_worker=1, processes=True,
                        dashboard_address=None, silence_logs=logging.ERROR,
                        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}))
                # as for a remote scheduler, until the client is closed: a scheduler that
                # dies makes Dask log at ERROR; SchedulerLost says it in a line
                stack.enter_context(_silenced("distributed.client"))
                client = stack.enter_context(Client(cluster))
            # a worker that cannot spawn, no port or file descriptor left, a start that
            # times out (TimeoutError is an OSError): not the user's input, nothing computed
            except (OSError, RuntimeError) as err:
                raise ClusterFailed(
                    f"could not start a local Dask cluster of {plural(workers, 'worker')} "
                    f"({type(err).__name__}: "
                    f"{' '.join(str(err).split()) or 'no message'}): nothing was computed; "
                    "try fewer --workers, or a running scheduler with --scheduler") from None
            try:
                yield client
            except KeyboardInterrupt:  # a Ctrl-C or SIGTERM (`desim.sweep`): closing the
                # cluster mid-sweep, its scheduler, in this process, logged at ERROR the
                # results it could no longer gather; the sweep says it in one line
                with _silenced("distributed"):
                    stack.close()
                raise
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)
