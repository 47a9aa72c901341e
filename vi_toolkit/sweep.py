"""Sweeps: one experiment over a grid of settings and seeds, each trial a run folder, run on Dask distributed.

    import vi_toolkit as vt
    if __name__ == "__main__":                       # a local cluster starts its workers with spawn
        result = vt.sweep("guides.toml", out="sweeps/guides", workers=2)
        print(result.table)                           # one row per trial and table row, settings and seed as columns

``sweep(spec_or_path, out=None, client=None, workers=None, scheduler=None, progress=True)``:

- ``spec_or_path``: a sweep file (see :mod:`vi_toolkit.sweep_spec`) or a dict of its keys. The whole file is
  checked (experiment, every trial's configuration, seeds) before anything is made.
- ``out``: the sweep folder (default ``sweeps/<name>``). It holds ``sweep.json``, ``trials/<hash>/`` (one ordinary
  run folder per trial, named by the trial's content hash), ``trials.csv``, ``aggregates.csv``, ``tables/``,
  ``figures/``, ``executions.jsonl`` (one line per completed trial execution) and ``report.html``.
- Engine: ``client`` (a ``distributed.Client`` you made: the sweep neither starts nor stops it); else
  ``scheduler="tcp://host:port"`` (an existing cluster); else a ``LocalCluster`` of ``workers`` processes
  (default: the number of cores), one thread each, started and stopped here. ``workers=0`` runs the trials one
  after another in this process, without Dask. Every trial runs on one torch thread
  (:func:`vi_toolkit.isolation.threads_limited`). The local cluster starts its workers with multiprocessing's
  spawn, which re-imports a script that calls ``sweep`` without an ``if __name__ == "__main__":`` guard: use the
  guard, or pass ``client=``. A remote cluster's workers must have vi-toolkit installed and see ``out``.
- Resumable: a trial whose folder is complete (``run.json`` says ``"complete": true`` and names the trial's hash)
  is skipped; an incomplete one (a killed sweep, a failed trial) is deleted and run again. A lock per trial
  folder keeps two executions of one trial from overlapping.
- Fault-isolated: a trial that raises is recorded with its one-line error and the sweep goes on; a trial whose
  worker dies is run once more (then recorded as failed).
"""

import contextlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .errors import RunFolderError, VIToolkitError
from .sweep_spec import load_spec

SWEEPS_ROOT = "sweeps"
SWEEP_MARKER = "sweep.json"
TRIALS = "trials"
EXECUTIONS = "executions.jsonl"
LOCK = ".sweep.lock"


@dataclass
class SweepResult:
    """What a sweep did: its folder and report, the trial table (pandas), and counts."""

    folder: Path
    report: Path
    table: object
    aggregates: object
    trials: int
    ran: int
    skipped: int
    failed: int
    seconds: float

    @property
    def all_failed(self):
        return self.trials > 0 and self.failed == self.trials


# --------------------------------------------------------------------------------------------------------------
# One trial (runs in a worker process, or in this one with workers=0)


def trial_complete(path, trial_hash):
    """Whether ``path`` is a complete run folder of the trial ``trial_hash``."""
    try:
        meta = json.loads((Path(path) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("complete") is True and meta.get("trial_hash") == trial_hash \
        and (Path(path) / "experiment.json").is_file()


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock on ``path`` (a lock file), held until the block ends; no lock where flock fails."""
    import fcntl

    try:
        handle = open(path, "a+")
    except OSError:
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:
            pass
        yield
    finally:
        handle.close()


def run_trial(sweep_dir, experiment_name, settings, seed, trial_hash, folder_name):
    """Run one trial into ``sweep_dir/trials/folder_name`` and return its record (a dict). Ordinary exceptions
    are recorded, not raised: only the death of the worker makes Dask retry a trial."""
    start = time.perf_counter()
    record = {"hash": trial_hash, "folder": folder_name, "status": "failed", "error": "", "reused": False,
              "pid": os.getpid()}
    try:
        from .isolation import threads_limited

        with threads_limited(1):
            record.update(_run_trial(Path(sweep_dir), experiment_name, settings, seed, trial_hash, folder_name))
    except Exception as exc:  # noqa: BLE001 - a trial's failure is its record, never the sweep's
        record["error"] = _one_line(exc)
    record["seconds"] = record.pop("trial_seconds", None) or time.perf_counter() - start
    return record


def _run_trial(sweep_dir, experiment_name, settings, seed, trial_hash, folder_name):
    from vi_toolkit import __version__, experiments
    from .experiment import build_config, run_experiment
    from .io import write_json
    from .report import build_report
    from .run_folder import RunFolder

    path = sweep_dir / TRIALS / folder_name
    with _locked(sweep_dir / TRIALS / f".{folder_name}.lock"):
        if trial_complete(path, trial_hash):  # done by an earlier (or concurrent, killed) sweep
            if not (path / "report.html").is_file():
                build_report(path)
            return {"status": "done", "reused": True, "trial_seconds": _trial_seconds(path)}
        if path.exists():
            shutil.rmtree(path)  # an incomplete trial: redone from scratch
        experiment = experiments.get(experiment_name)
        config = build_config(experiment, overrides=settings)
        meta = {"command": "sweep", "experiment": experiment_name, "seed": seed, "settings": settings,
                "trial_hash": trial_hash, "version": __version__}
        folder = RunFolder.create(path, meta=meta)
        try:
            record = run_experiment(experiment, config, folder, seed)
        except Exception as exc:
            folder.finish(error=_one_line(exc)[:500])
            raise
        folder.finish()
        with open(sweep_dir / EXECUTIONS, "a", encoding="utf-8") as log:  # one line per completed execution
            log.write(json.dumps({"hash": trial_hash, "pid": os.getpid(), "host": os.uname().nodename,
                                  "finished": time.time()}) + "\n")
        build_report(path)
        write_json(path / "trial.json", {"seconds": record["seconds"]})
        return {"status": "done"}


def warm_worker():
    """Import what a trial needs (torch, Pyro, the experiments) and return this process's id: a first task that
    makes a fresh worker's first trial as fast as its others."""
    import vi_toolkit.experiments  # noqa: F401

    return os.getpid()


def _one_line(exc):
    text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())


# --------------------------------------------------------------------------------------------------------------
# The sweep


def sweep(spec_or_path, out=None, *, client=None, workers=None, scheduler=None, progress=True):
    """Run a sweep; returns a :class:`SweepResult`. See the module's docstring."""
    start = time.perf_counter()
    spec = load_spec(spec_or_path)  # everything checked before anything is made
    out = Path(out) if out is not None else Path(SWEEPS_ROOT) / spec.name
    _check_folder(out)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise VIToolkitError(f"workers must be a whole number >= 0 (0: in this process), got {workers!r}")
    if client is not None and (workers is not None or scheduler is not None):
        raise VIToolkitError("pass client=, scheduler= or workers=, not several")
    with _engine(client, workers, scheduler) as submit:
        (out / TRIALS).mkdir(parents=True, exist_ok=True)
        with _sweep_lock(out):
            _write_marker(out, spec)
            records = _run(spec, out, submit, progress)
            from .sweep_report import write_report

            table, aggregates, report = write_report(out, spec, records, time.perf_counter() - start)
    statuses = [r["status"] for r in records.values()]
    return SweepResult(
        folder=out, report=report, table=table, aggregates=aggregates, trials=len(records),
        ran=sum(1 for r in records.values() if not r.get("skipped") and not r.get("reused")),
        skipped=sum(1 for r in records.values() if r.get("skipped") or r.get("reused")),
        failed=statuses.count("failed"), seconds=time.perf_counter() - start,
    )


def _check_folder(out):
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"sweep folder {str(out)!r} is a file; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not (out / SWEEP_MARKER).is_file():
        raise RunFolderError(
            f"{str(out)!r} exists and is not a sweep folder (no {SWEEP_MARKER}); choose a new --out, or the folder "
            "of an earlier run of this sweep to resume it"
        )


@contextlib.contextmanager
def _sweep_lock(out):
    import fcntl

    handle = open(out / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderError(f"another sweep is running into {str(out)!r}; wait for it or choose another --out") \
                from None
        except OSError:
            pass  # a file system without locks: the per-trial locks still keep trials apart
        yield
    finally:
        handle.close()


def _write_marker(out, spec):
    from . import __version__
    from .io import write_json

    previous = {}
    with contextlib.suppress(OSError, ValueError):
        previous = json.loads((out / SWEEP_MARKER).read_text(encoding="utf-8"))
    write_json(out / SWEEP_MARKER, {
        "experiment": spec.experiment.name, "name": spec.name, "spec": spec.source, "version": __version__,
        "created": previous.get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), "runs": int(previous.get("runs", 0)) + 1,
        "trials": [{"hash": t.hash, "folder": t.folder_name, "settings": t.settings, "seed": t.seed}
                   for t in spec.trials],
    })


def _run(spec, out, submit, progress):
    """Run the trials that are not complete yet; trial hash -> record for every trial of the sweep."""
    from tqdm.auto import tqdm

    records, todo = {}, []
    for trial in spec.trials:
        if trial_complete(out / TRIALS / trial.folder_name, trial.hash):
            records[trial.hash] = {"hash": trial.hash, "folder": trial.folder_name, "status": "done", "error": "",
                                   "skipped": True, "seconds": _trial_seconds(out / TRIALS / trial.folder_name)}
        else:
            todo.append(trial)
    bar = tqdm(total=len(spec.trials), initial=len(records), desc=f"sweep {spec.name}", unit="trial",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for record in submit(out, spec.experiment.name, todo):
            records[record["hash"]] = record
            bar.update(1)
            failed = sum(1 for r in records.values() if r["status"] == "failed")
            if failed:
                bar.set_postfix(failed=failed)
    finally:
        bar.close()
    return {t.hash: records[t.hash] for t in spec.trials if t.hash in records}


def _trial_seconds(path):
    for name in ("trial.json", "experiment.json"):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return float(json.loads((path / name).read_text(encoding="utf-8"))["seconds"])
    return float("nan")


def _args(out, experiment_name, trial):
    return (str(Path(out).resolve()), experiment_name, trial.settings, trial.seed, trial.hash, trial.folder_name)


def _serial(out, experiment_name, trials):
    for trial in trials:
        yield run_trial(*_args(out, experiment_name, trial))


def _on_dask(client):
    def submit(out, experiment_name, trials):
        from distributed import as_completed

        futures = {}
        for trial in trials:
            key = f"vi-toolkit-trial-{trial.folder_name}-{uuid.uuid4().hex[:8]}"
            futures[client.submit(run_trial, *_args(out, experiment_name, trial), key=key, pure=False,
                                  retries=1)] = trial
        try:
            for future in as_completed(futures):
                trial = futures[future]
                try:
                    yield future.result()
                except Exception as exc:  # noqa: BLE001 - the worker died (twice), or the task was lost
                    yield {"hash": trial.hash, "folder": trial.folder_name, "status": "failed", "seconds": float("nan"),
                           "error": f"worker lost: {_one_line(exc)}"}
        finally:
            client.cancel(list(futures))

    return submit


def local_cluster(workers=None):
    """A ``LocalCluster`` for trials: ``workers`` processes (default: the number of cores), one thread each.

    A trial whose worker dies is run once more (the scheduler's count of worker deaths a task may see). The workers'
    statistical profiler is off: it wakes every 10 ms to walk the running thread's stack, and on Python-heavy
    trials (Pyro's tracing) it costs several percent of each trial."""
    import logging

    import dask
    from distributed import LocalCluster

    from .workers import cores

    with dask.config.set({"distributed.scheduler.allowed-failures": 1, "distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=workers or cores(), threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=None, silence_logs=logging.ERROR)


@contextlib.contextmanager
def _engine(client, workers, scheduler):
    """A function (out, experiment, trials) -> iterator of records, on the engine asked for."""
    if client is not None:
        yield _on_dask(client)
        return
    if workers == 0 and scheduler is None:
        yield _serial
        return
    from distributed import Client

    if scheduler is not None:
        try:
            own = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise VIToolkitError(f"cannot reach the Dask scheduler at {scheduler!r}: {_one_line(exc)}") from None
        with contextlib.closing(own):
            yield _on_dask(own)
        return
    cluster = local_cluster(workers or None)
    try:
        with Client(cluster) as own:
            yield _on_dask(own)
    finally:
        cluster.close()
