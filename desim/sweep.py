"""`desim sweep`: a design-space sweep, one Dask task per point, resumable after any kill.

An experiment file with a `sweep:` section (schema in `desim.sweep_spec`) names axes: key
paths as `--set` takes them (`workload.batch`, `runs.1.pruning.sparsity`) or
`arch.<run name>.<key.path>`, which overrides that run's architecture YAML only (`arch.*.`:
every run's; see
`desim.experiment.load_experiment`). A point is one value per axis; its id is a hash of those
overrides, so the same point has the same id in every run of the sweep.

Why it is built this way:
- The client (this process) resolves every point's configuration first: a point whose values
  are invalid fails at once, recorded with its error, and the others go on. A sweep none of
  whose points is valid (a misspelt axis) is refused before it writes anything. Workers receive
  the resolved `Experiment`, so they need neither the YAML files nor the results folder; a
  remote `--scheduler` works as a local cluster does. Points that resolve to one design
  (two spellings of a value) are computed once, and each gets its file.
- The tasks the workers run, and the cluster they run on, are `desim.sweep_dask`'s.
- The points a sweep section plans are `desim.sweep_spec`'s; the table they are gathered
  into, `desim.sweep_results`'; its plots, and the refusals of a `--plot` before any point
  is computed, `desim.sweep_plots`'.
- Captures are tasks of their own, keyed by (workload, pruning): a point depends on the
  captures of its runs, Dask computes each once and hands it to every point that needs it,
  and a worker that can see `DIR/cache` keeps it there for a resumed sweep
  (`desim.workload_cache`).
- Only the client writes `DIR/points/<point_id>.json`, atomically, as each point finishes.
  A point is done exactly when its file exists: kill the sweep at any moment, start it again,
  and it computes only the points without a file. `DIR/sweep.json` records what the folder
  is a sweep of (its inputs' `fingerprint`); a resumed sweep whose experiment or
  architecture files changed is refused rather than mixing old and new numbers. Each point
  file records that fingerprint too: a file that records another (copied from a sweep of
  other inputs: a point's id is its axis values alone) or none (written by a desim before
  points recorded it) is not taken as done nor gathered; the sweep computes the point
  again, in its place, and says so in sweep.log.
- At the end (and on every resume) the point files are gathered into `DIR/results.parquet`,
  one row per point, run and phase (and phase "total"), with the base `--set` items, which
  every point took, in its metadata (`attrs["set"]` of the frame pandas reads), and
  `DIR/pareto.png` is drawn. A
  sweep with points to compute removes an earlier table and plots first, once connected: a
  sweep that stops unfinished (a lost scheduler, a kill) then leaves none, rather than an
  earlier sweep's that would pass for its results.
- Failed points are not retried on resume (their file records the error); `--retry-failed`
  (`retry_failed=True`) does. `desim sweep` exits 1 when any point failed, after writing
  the others, so that a script can tell.
- A scheduler lost mid-sweep (stopped, or the network failed) cancels the points it had not
  finished: `SchedulerLost`, one line and exit 1; they have no file, so a resumed sweep
  computes them. An unreachable `--scheduler` is refused (exit 2) before the folder is
  touched; a local cluster that cannot start is `ClusterFailed` (exit 1), the folder
  untouched too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from desim.errors import STOPS, ConfigError, fail
from desim.options import path_given
from desim.results import held_by_this_process, provenance, writable_folder, write_json
from desim.summary_text import plural
from desim.sweep_dask import (
    ClusterFailed,
    SchedulerLost,
    dask_client,
    failure_record,
    run_on_dask,
)
from desim.sweep_results import axis_columns, gather, read_point, write_parquet
from desim.sweep_spec import Point, plan_points

if TYPE_CHECKING:
    import pandas as pd
    from distributed import Client

    from desim.experiment import Experiment
    from desim.sweep_spec import SweepSpec

# --- the sweep file -------------------------------------------------------------------------

def load_sweep_spec(path: Path, overrides: Sequence[str] = ()) -> SweepSpec:
    """The experiment's `sweep:` section (after `--set` overrides), validated."""
    from desim.configio import validate
    from desim.experiment import apply_overrides, read_experiment, split_overrides
    from desim.sweep_spec import SweepSpec

    experiment_sets, _ = split_overrides(overrides, path)
    path, raw, _ = read_experiment(path)
    raw = apply_overrides(raw, experiment_sets, str(path))
    if raw.get("sweep") is None:
        what = "an empty sweep: section" if "sweep" in raw else "no sweep: section"
        raise ConfigError(f"{what} (expected mode and axes; see desim/sweep_spec.py)",
                          file=str(path), key="sweep")
    return validate(SweepSpec, raw["sweep"], path, prefix="sweep")


def fingerprint(path: Path, overrides: Sequence[str]) -> str:
    """What a sweep folder's points depend on besides their own overrides: the experiment
    file (less its sweep section), the `--set` overrides, the architecture files' text, and
    the bytes of the other files the experiment, its overrides or its axes name (a model's
    Python file, a SCALE-Sim topology CSV): an edited file is another sweep; and which
    desim computes them (its version, commit and uncommitted edits,
    `desim.results.provenance`): points of other code would be mixed in one table."""
    from desim.experiment import apply_overrides, read_experiment, split_overrides

    kept = [item for item in overrides if item.partition("=")[0].split(".")[0] != "sweep"]
    experiment_sets, _ = split_overrides(kept, path)
    path, raw, recorded = read_experiment(path)
    raw = apply_overrides(raw, experiment_sets, str(path))
    axes = raw.pop("sweep", None)
    # a results folder's config.json: its recorded designs, not their files
    archs: dict[str, Any] = dict(recorded.designs) if recorded else {}
    arch_paths = set()
    for run in raw.get("runs") or []:
        if isinstance(run, dict) and isinstance(run.get("arch"), str):
            arch_paths.add(run["arch"])
            arch_path = path.parent / run["arch"]
            if recorded is None:
                archs[str(run.get("name"))] = (arch_path.read_bytes().decode("utf-8", "replace")
                                                if arch_path.is_file() else None)
    inputs = {"experiment": raw, "overrides": kept, "archs": archs, "desim": provenance()}
    files = _named_files([raw, axes], (recorded.source if recorded else path).parent,
                         arch_paths)
    if files:  # (absent: the folder of a sweep that names no such file keeps its fingerprint)
        inputs["files"] = files
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _named_files(values: Any, folder: Path, skip: set[str]) -> dict[str, str]:
    """The sha256 of each file that a string among `values` names (but those in `skip`),
    relative to `folder` or absolute: the whole string, or what follows a `key=` (a run's
    `workload_set` item), less a model file's `:factory`."""
    found: dict[str, str] = {}
    stack = [values]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            name = value.rpartition("=")[2].strip()
            file, _, factory = name.rpartition(":")
            name = file if file and factory.isidentifier() else name
            try:
                if name not in skip and (folder / name).is_file():
                    found[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
            except (OSError, ValueError):  # no file's name: too long, a NUL character
                pass
    return found


# --- the sweep ------------------------------------------------------------------------------

# The most worker processes of a local cluster (`--workers`): each imports torch (~0.5 GB);
# 10^5 of them spun for minutes before a point ran, and would not stop on Ctrl-C.
MAX_LOCAL_WORKERS = 256


def sweep(path: str | Path, out: str | Path, scheduler: str | None = None, workers: int = 2,
          *, overrides: Sequence[str] = (), retry_failed: bool = False,
          progress: bool = False, plots: Sequence[tuple[str, str]] = (),
          tell: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run (or resume) the sweep declared in the experiment file `path`; results in `out`.

    `scheduler`: address of a running Dask scheduler (`tcp://host:8786`); default a local
    cluster of `workers` processes with one thread each (the simulator is single-threaded
    Python: processes, not threads, run points in parallel). `overrides`: `--set` items
    applied to every point before its own. Returns results.parquet's table (see `gather`).
    Raises `SchedulerLost` if the scheduler goes away before every point is finished.
    `tell`: what is said of the sweep before it runs (a results folder's record written by
    another desim, or resolved otherwise by this one: `desim.resolved.rerun_notes`), also
    written to sweep.log. One sweep at a time writes a folder (`held_by_this_process`).
    """
    from desim.experiment import experiment_path
    from desim.sweep_plots import (
        check_plot,
        check_plot_parts,
        metric_plot_path,
        plot_files,
        plot_metric,
        plot_pareto,
    )

    path, out = experiment_path(path), Path(out)  # a results folder's: its config.json
    if not 1 <= workers <= MAX_LOCAL_WORKERS:
        raise ConfigError(f"--workers must be 1 to {MAX_LOCAL_WORKERS}, got {workers:,} (each is a "
                          "process of its own, with torch imported: a larger sweep wants a Dask "
                          "cluster, --scheduler)")
    base = list(overrides)
    spec = load_sweep_spec(path, base)
    for metric, axis in plots:
        check_plot(metric, axis, list(spec.axes))
    points = plan_points(spec)
    notes = check_sweepable(path, base, points)
    for note in notes if tell is not None else []:  # as `desim run` says them
        tell(f"note: {path}: {note}")
    check_plot_parts(path, base, points, [metric for metric, _ in plots])
    writable_folder(out)
    with held_by_this_process(out, "a sweep"):
        current = _check_manifest(out, path, base)

        done, foreign = _points_done(out, points, current, retry_failed)
        todo = [p for p in points if p.point_id not in done]
        failed_before = sum(status != "ok" for status in done.values())
        workers = min(workers, len(todo))  # a worker no point waits for only takes starting
        # Connected first: a scheduler that is not there leaves the folder as it was.
        with dask_client(scheduler, workers) if todo else contextlib.nullcontext() as client:
            _write_manifest(out, path, base, spec, points, current)
            if todo:  # an earlier table (and its plots) would pass for this unfinished sweep's
                for finished in (out / "results.parquet", out / "pareto.png", *plot_files(out)):
                    finished.unlink(missing_ok=True)
            log = _Log(out / "sweep.log")
            for note in notes:
                log(f"note: {note}")
            for line in foreign:
                log(line)
            where = (f"scheduler {scheduler}" if scheduler
                     else f"local cluster, {plural(workers, 'worker')}")
            log(f"start: {plural(len(points), 'point')}, {len(done)} already done, "
                f"{len(todo)} to compute" + (f" ({where})" if todo else ""))
            with _progress_bar(progress, len(points), len(done), failed_before) as bar:
                _compute(path, out, base, todo, client, scheduler, log, bar, current)
        frame = gather(out, points, spec, current)
        frame.attrs["set"] = base  # kept in the file's metadata: read_parquet(...).attrs["set"]
        write_parquet(out / "results.parquet", frame)
        plot_pareto(frame, spec.objectives, out / "pareto.png")
        for metric, axis in plots:
            plot_metric(frame, metric, axis, metric_plot_path(out, metric, axis))
        totals = frame.drop_duplicates("point_id")
        log(f"end: {int((totals['status'] == 'ok').sum())} ok, "
            f"{int((totals['status'] == 'failed').sum())} failed")
        return frame


def check_sweepable(path: Path, base: list[str], points: list[Point]) -> list[str]:
    """Refuse a sweep none of whose points is valid, before it writes anything: an axis's
    name or values are wrong then, not one point's (those fail alone, recorded, later).
    Refuse one that asks for traces or waveforms too: a point keeps its summary only, so
    they would be dropped without a word. `desim check` refuses what this refuses, by
    calling it (`desim.check`): a file it passes is a sweep `desim sweep` runs. Returns
    the first valid point's rerun notes (`desim.resolved.rerun_notes`)."""
    from desim.experiment import load_experiment, read_experiment, run_index_key
    from desim.resolved import rerun_notes

    raw = read_experiment(path)[1]
    keys = list(points[0].values) if points else []
    for i, key in enumerate(keys):
        other = next((o for o in keys[:i] if _overlapping(run_index_key(raw, o),
                                                          run_index_key(raw, key))), None)
        if other is not None:  # the one applied last would win, the other a mere label
            raise ConfigError(f"sets what the axis sweep.axes.{other} sets too, so one would "
                              "replace the other's values in every point: keep one",
                              file=str(path), key=f"sweep.axes.{key}")
        if key.split(".")[0] == "observe":  # the rule below sees one point's observe
            raise ConfigError("a sweep's points keep their summaries only: observe is no "
                              "axis (trace one point with desim run and its values as --set)",
                              file=str(path), key=f"sweep.axes.{key}")
        for item in base:  # a point's values are applied after `base`: they would win
            if _overlapping(run_index_key(raw, item.partition("=")[0]),
                            run_index_key(raw, key)):
                raise ConfigError(f"also given by --set {item}, which every point would "
                                  "replace by the axis's values: drop the --set or the axis",
                                  file=str(path), key=f"sweep.axes.{key}")
    first: ConfigError | None = None
    for point in points:
        try:
            experiment = load_experiment(path, base + point.overrides)
        except ConfigError as err:
            first = first or point.error_of(err, path)
            continue
        observe = experiment.spec.observe
        if observe.trace or observe.vcd or observe.tiles:
            asked = " and ".join(k for k in ("trace", "vcd", "tiles") if getattr(observe, k))
            raise ConfigError(f"a sweep's points keep their summaries only, not {asked}: "
                              "set observe off to sweep, and trace one point with desim run "
                              "and its values as --set", file=str(path), key="observe")
        return rerun_notes(experiment.recorded)
    if first is not None:
        raise ConfigError(f"{first.message} (no point of the sweep is valid; the first: "
                          f"{points[0].values})", file=first.file, key=first.key)
    return []


def _overlapping(a: str, b: str) -> bool:
    """Whether key paths `a` and `b` set the same value, or one a part of the other's
    (`runs.1.pruning` and `runs.1.pruning.sparsity`); `arch.*.` is every run's arch."""
    parts_a, parts_b = a.split("."), b.split(".")
    return all(x == y or (i == 1 and parts_a[0] == "arch" and "*" in (x, y))
               for i, (x, y) in enumerate(zip(parts_a, parts_b, strict=False)))


def _compute(path: Path, out: Path, base: list[str], todo: list[Point], client: Client | None,
             scheduler: str | None, log: _Log, bar: _Bar, current: str) -> None:
    """Resolve and elaborate each point here (as `desim check` does: a design or pruning a
    point cannot take fails it now, not after its capture), run the valid ones on Dask
    (`client`, None only when `todo` is empty; `scheduler`: its address, None for the local
    cluster), write each file as it finishes, recording the sweep's fingerprint
    (`current`)."""
    from desim.elaborate import Shared, elaborate
    from desim.experiment import load_experiment
    from desim.workload_cache import cache_key

    ready: list[tuple[Point, Experiment, list[str]]] = []
    # a resolved design -> the points that spell it, each with its own experiment
    twins: dict[str, list[tuple[Point, Experiment]]] = {}
    shared = Shared()  # the points' untrained iterations and tile checks, each made once
    for point in todo:
        sets = base + point.overrides
        try:
            experiment = load_experiment(path, sets)
        except Exception as err:  # noqa: BLE001 - a ConfigError, mostly: the point's values
            tb = None if isinstance(err, ConfigError) else err.__traceback__
            err = point.error_of(err, path) if isinstance(err, ConfigError) else err
            _finish(out, point, sets, None, {**failure_record(err, tb), "elapsed_s": 0.0,
                                             "worker": None}, log, bar, current)
            continue
        try:
            elaborate(experiment, shared)
        except ConfigError as err:  # its design, model or pruning: said before any capture
            err = point.error_of(err, path)
            _finish(out, point, sets, experiment, {**failure_record(err, None), "elapsed_s": 0.0,
                                                   "worker": None}, log, bar, current)
            continue
        design = one_design(experiment)
        if design in twins:  # another spelling of a point already planned: computed once
            twins[design].append((point, experiment))
            continue
        twins[design] = [(point, experiment)]
        keys = [cache_key(experiment.workloads[run.name], run.pruning)
                for run in experiment.spec.runs]
        ready.append((point, experiment, keys))
    if not ready:
        return
    # Points sharing captures run together, so a capture's memory is freed early.
    ready.sort(key=lambda item: item[2])
    spellings = {group[0][0].point_id: group for group in twins.values()}
    assert client is not None
    try:
        for point, _, result in run_on_dask(client, scheduler, ready, out):
            for twin, spelt in spellings[point.point_id]:  # the first spelling's file first
                _finish(out, twin, base + twin.overrides, spelt, result, log, bar, current)
            _raise_if_stopped()
    except SchedulerLost as err:
        log(str(err))
        raise


def one_design(experiment: Experiment) -> str:
    """The resolved experiment and architectures as text: two points with the same text
    are one design spelt two ways (`true` and the list of all an operand's phases; `0` and
    `0.0` an axis already merges), so the sweep computes it once and writes both files."""
    from desim.resolved import resolved_config

    config = resolved_config(experiment)
    return json.dumps([config["experiment"], config["architectures"]], sort_keys=True)


def _finish(out: Path, point: Point, sets: list[str], experiment: Experiment | None,
            result: dict[str, Any], log: _Log, bar: _Bar, current: str) -> None:
    """Write the point's file (atomically: the point is done exactly when it exists), with
    the sweep's fingerprint (`current`, as sweep.json records it): a file of this id copied
    from another sweep's folder is not taken for this one's (`read_point`)."""
    from desim.resolved import resolved_config

    # config.json's, as `desim run` with `sets` writes it: the base --set items included
    config = None if experiment is None else resolved_config(experiment)
    record = {"point_id": point.point_id, "fingerprint": current, "overrides": point.values,
              "set": sets, **result, "config": config,
              "finished": datetime.now(UTC).isoformat(timespec="seconds")}
    write_json(out / "points" / f"{point.point_id}.json", record)
    if result["status"] == "ok":
        log(f"point {point.point_id} ok in {result['elapsed_s']:.2f} s {point.values}")
    else:
        log(f"point {point.point_id} failed {point.values}: {result['error']}")
    bar.advance(result["status"] != "ok", point, result)


def _points_done(out: Path, points: list[Point], current: str, retry_failed: bool
                 ) -> tuple[dict[str, str], list[str]]:
    """The points whose files this sweep takes as done (id -> status; a failed one not,
    with `retry_failed`), each file read once; and what sweep.log says of a file that is
    not this sweep's (another fingerprint, or none: `read_point`), computed again."""
    done, foreign = {}, []
    for point in points:
        record = read_point(out, point.point_id)
        if record is None:
            continue
        theirs = record.get("fingerprint")
        if theirs != current:  # (none: written by a desim before point files recorded it)
            said = "it records none" if theirs is None else f"it records {theirs}"
            foreign.append(f"point {point.point_id}: its file is not this sweep's ({said}, "
                           f"this sweep's fingerprint is {current}): computed again "
                           f"{point.values}")
        elif not (retry_failed and record["status"] != "ok"):
            done[point.point_id] = record["status"]
    return done, foreign


def _check_manifest(out: Path, path: Path, base: list[str]) -> str:
    """Refuse to resume into a folder whose points were computed from other inputs; return
    the inputs' fingerprint for `_write_manifest` (nothing is written here)."""
    current = fingerprint(path, base)
    manifest = out / "sweep.json"
    recorded: Any = {}
    if manifest.is_file():
        try:
            recorded = json.loads(manifest.read_text())
        except (OSError, ValueError):
            recorded = {}
    previous = recorded.get("fingerprint") if isinstance(recorded, dict) else None
    if previous is None and any((out / "points").glob("*.json")):
        # sweep.json is written before any point: without it (deleted, cut short, copied
        # without it) nothing says which inputs the points were computed from, and they
        # were taken for this sweep's
        raise ConfigError("this folder holds points but no readable sweep.json saying what "
                          "they are a sweep of: they cannot be told from another sweep's; "
                          "use another --out, or delete the folder to start over",
                          file=str(out))
    if previous is not None and previous != current:
        code = recorded.get("desim") != provenance()
        raise ConfigError("this folder holds a sweep of other inputs ("
                          + ("desim's code changed since its points were computed"
                             if code else "the experiment, its --set overrides or a file "
                             "it names changed since")
                          + "); use another --out, or delete the folder to start over",
                          file=str(out))
    return current


def _write_manifest(out: Path, path: Path, base: list[str], spec: SweepSpec,
                    points: list[Point], current: str) -> None:
    """DIR/sweep.json: what the folder is a sweep of (`current`: `_check_manifest`'s)."""
    manifest = out / "sweep.json"
    # writes cut short by a kill: point files, captures (large), the table, the plots
    for folder in (out / "points", out / "cache", out):
        for stale in folder.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
    write_json(manifest, {"experiment": str(path.resolve()), "fingerprint": current,
                          "desim": provenance(),  # the code its points were computed by
                          "overrides": base, "sweep": spec.model_dump(mode="json"),
                          "points": [{"point_id": p.point_id, "overrides": p.values}
                                     for p in points]})


class _Log:
    """DIR/sweep.log, appended line by line: what each (re)start computed, point by point."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, message: str) -> None:
        stamp = datetime.now().isoformat(sep=" ", timespec="seconds")
        with self.path.open("a") as f:
            f.write(f"{stamp} {message}\n")


class _Bar:
    """The progress bar (rich), or nothing: points done, failed, time left."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task, self.failed = progress, task, 0

    def advance(self, failed: bool, point: Point, result: dict[str, Any]) -> None:
        if self.progress is None:
            return
        if failed:
            self.progress.console.print(f"[red]point {point.point_id} failed[/] "
                                        + escape(f"{point.values}: {result['error']}"),
                                        highlight=False)
        self.failed += failed
        self.progress.update(self.task, advance=1, failed=self.failed)


def time_left(elapsed_s: float, finished: int, remaining: int) -> str:
    """H:MM:SS left for `remaining` points at the mean rate of the `finished` ones (this
    run's, not a resumed sweep's earlier points); "-:--:--" before the first."""
    if finished <= 0:
        return "-:--:--"
    left = int(elapsed_s / finished * remaining)
    return f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d}"


@contextlib.contextmanager
def _progress_bar(show: bool, total: int, done: int, failed: int) -> Iterator[_Bar]:
    if not show:
        yield _Bar(None, None)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    class MeanTimeLeft(ProgressColumn):
        """Time left at the mean rate of the points this run has finished. Rich's own
        estimate takes the rate of the last few, and workers that finish together made it
        read "0:00:01" with most of a sweep to go."""

        def render(self, task: Any) -> Text:
            return Text(time_left(task.elapsed or 0.0, task.completed - task.fields["resumed"],
                                  task.total - task.completed))

    columns = (TextColumn("[bold]sweep"), BarColumn(), MofNCompleteColumn(),
               TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
               TextColumn("left"), MeanTimeLeft())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("sweep", total=total, completed=done, failed=failed,
                                 resumed=done)
        bar = _Bar(progress, task)
        bar.failed = failed
        yield bar


# --- command line -----------------------------------------------------------------------------

def register(app: typer.Typer) -> None:
    """Add the `sweep` command to the command line (called from `desim.cli`)."""

    @app.command("sweep")
    def sweep_command(
        config: Annotated[Path, typer.Argument(
            help="experiment YAML with a sweep: section (or a results folder whose "
                 "config.json has one)", parser=path_given)],
        out: Annotated[Path, typer.Option("--out", "-o", help="sweep folder: points/, "
                                          "results.parquet, pareto.png, the --plot images, "
                                          "sweep.json, sweep.log, cache/", parser=path_given)],
        scheduler: Annotated[str | None, typer.Option(
            "--scheduler", help="address of a running Dask scheduler (tcp://host:8786); "
            "default: a local cluster")] = None,
        workers: Annotated[int, typer.Option("--workers", "-j", help="local cluster: worker "
                                             "processes (one thread each)")] = 2,
        set_: Annotated[list[str] | None, typer.Option(
            "--set", help="override key.path=value or arch.<run or *>.<key.path>=value for "
            "every point (not an axis's key)")] = None,
        plot: Annotated[list[str] | None, typer.Option(
            "--plot", help="metric:axis, e.g. energy_j:runs.1.pruning.sparsity (or a "
            "component's joules, energy_j.dram); writes DIR/<metric>_vs_<axis>.png")] = None,
        retry_failed: Annotated[bool, typer.Option(
            "--retry-failed", help="compute failed points again")] = False,
    ) -> None:
        """Run a grid or random sweep over an experiment's parameters, on Dask.

        Resumable: run it again after any interruption and only the missing points are
        computed."""
        from desim.console import console as make_console
        from desim.sweep_plots import metric_plot_path, parse_plot

        console, errors = make_console(), make_console(stderr=True)
        started = time.perf_counter()
        try:
            plots = [parse_plot(p) for p in plot or []]
            with _stopped_quietly():
                frame = sweep(config, out, scheduler, workers, overrides=set_ or [],
                              retry_failed=retry_failed, progress=True, plots=plots,
                              tell=lambda note: errors.print(escape(note), highlight=False))
        except ConfigError as err:
            fail(2, str(err))
        except (SchedulerLost, ClusterFailed) as err:  # a runtime failure, not bad input
            fail(1, str(err))
        except KeyboardInterrupt as err:  # 128 + the signal's number, as a shell reports it
            points = out / "points"
            kept = (f"finished points are in {points}" if points.is_dir()
                    and any(points.iterdir()) else "no point finished")
            errors.print(escape(f"interrupted: {kept}; run the same command again to compute "
                                "the others"), highlight=False)
            raise typer.Exit(143 if isinstance(err, Terminated) else 130) from None
        print_sweep(console, frame)
        status = frame.drop_duplicates("point_id")["status"]
        failed = int((status == "failed").sum())
        drawn = "".join(f", {metric_plot_path(out, metric, axis).name}" for metric, axis in plots)
        cache = ", cache/" if (out / "cache").is_dir() else ""  # the points' captures
        console.print(f"results in {escape(str(out))}/ (results.parquet, pareto.png{escape(drawn)}"
                      f", points/{cache}, sweep.json, sweep.log); "
                      f"{time.perf_counter() - started:.1f} s"
                      + (f"; {failed} of {len(status)} points failed: exit 1" if failed else ""))
        if failed:  # everything that succeeded is written; a script must still be told
            raise typer.Exit(1)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch system's cancel) met by the sweep command."""


# The signals `_stopped_quietly` met. Its handler raises where the signal finds the main
# thread, and that may be inside a finalizer (`__del__`, a weakref or garbage-collection
# callback: Dask has all three), where Python cannot raise: it hands the exception to
# `sys.unraisablehook`, which printed it with a traceback, and goes on. The hook installed
# by `_stopped_quietly` drops those quietly, and the sweep raises again after each point it
# writes and once more at its end. The errors module's record (`desim.errors.STOPS`), the
# same list: a stop a library swallowed while a model was traced in the client is seen by
# `raise_if_interrupted` there too (it had failed that point as bad input).
_STOPPED = STOPS


def _raise_if_stopped() -> None:
    if _STOPPED:
        raise Terminated if _STOPPED[0] == signal.SIGTERM else KeyboardInterrupt


@contextlib.contextmanager
def _stopped_quietly() -> Iterator[None]:
    """A Ctrl-C (SIGINT) or SIGTERM stops the sweep with its cluster closed, the finished
    points kept, and one line said (`sweep_command`). Dask says nothing from the signal on:
    its threads went on and logged, at ERROR, the results they could no longer gather while
    the interrupt reached the cluster's close. SIGTERM, by default, killed the process where
    it stood, and Python's resource tracker warned of the semaphores it left."""
    def stop(signum: int, frame: Any) -> None:
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        _STOPPED.append(signum)
        _raise_if_stopped()

    def unraisable(info: Any) -> None:  # a stop met in a finalizer: kept in _STOPPED
        if not (_STOPPED and isinstance(info.exc_value, KeyboardInterrupt)):
            previous_hook(info)

    _STOPPED.clear()
    level = logging.getLogger("distributed").level
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous_hook, sys.unraisablehook = sys.unraisablehook, unraisable
    try:
        yield
        _raise_if_stopped()
    except KeyboardInterrupt:  # one `raise_if_interrupted` raised: SIGTERM's, Terminated
        _raise_if_stopped()
        raise
    except Exception:
        # A stop that found the main thread inside a lock's wait (Dask's as_completed)
        # leaves the lock unheld, and the `with` releasing it raises RuntimeError in the
        # stop's place: a stop still, not a failure.
        _raise_if_stopped()
        raise
    finally:
        sys.unraisablehook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        logging.getLogger("distributed").setLevel(level)
        # said by now: a later sweep of this process (`sweep()`, a notebook's) had raised
        # KeyboardInterrupt after its first point, the stop still on record
        _STOPPED.clear()


def print_sweep(console: Any, frame: pd.DataFrame) -> None:
    """Counts, the Pareto designs, and the first errors."""
    from rich.table import Table

    per_point = frame.drop_duplicates("point_id")
    count = per_point["status"].value_counts()
    console.print(f"{plural(len(per_point), 'point')}: {count.get('ok', 0)} ok, "
                  f"{count.get('failed', 0)} failed"
                  + (f", {count['pending']} pending (run the sweep again to compute them)"
                     if count.get("pending") else ""))
    axes = axis_columns(frame)
    front = frame[frame["pareto"].fillna(False).astype(bool)]
    if len(front):
        on_chip = "on_chip_energy_j" in front and front["on_chip_energy_j"].notna().all()
        table = Table(title="Pareto front")
        for column in ("point", "run", *(a.split(".")[-1] for a in axes), "cycles",
                       "time (ms)", "energy (mJ)", *(["on chip (mJ)"] if on_chip else [])):
            table.add_column(column, overflow="fold")  # a narrow terminal: figures whole
        for _, row in front.iterrows():
            table.add_row(str(row["point_id"]), str(row["run"]),
                          *(escape(str(row[a])) for a in axes),
                          f"{int(row['cycles']):,}", f"{row['seconds'] * 1e3:.4g}",
                          f"{row['energy_j'] * 1e3:#.4g}",
                          *([f"{row['on_chip_energy_j'] * 1e3:#.4g}"] if on_chip else []))
        console.print(table)
    for _, row in per_point[per_point["status"] == "failed"].head(5).iterrows():
        console.print(f"[red]failed[/] {row['point_id']}: " + escape(str(row["error"])),
                      highlight=False)


def main(argv: list[str] | None = None) -> None:
    """`desim sweep` on its own (`python -c "from desim.sweep import main; main()" ...`),
    before or without the main command line."""
    app = typer.Typer(add_completion=False)
    register(app)
    app(args=argv, prog_name="desim sweep")
