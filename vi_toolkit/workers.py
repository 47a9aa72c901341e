"""Worker processes for independent tasks (NUTS chains) that never re-run the caller's script.

``multiprocessing``'s spawn and forkserver start methods re-import the parent's ``__main__`` in every child,
so a script without an ``if __name__ == "__main__":`` guard runs its top level once per worker; fork can hang
a child of a process that has run torch's OpenMP threads. The workers here are plain subprocesses of
``python -P vi_toolkit/_worker_main.py`` that import only the toolkit's chain code (torch and Pyro, once per
worker: the pool is kept between calls):

- Tasks and results travel over two ``os.pipe`` pipes per worker (passed with ``pass_fds``; the worker's stdout
  and stderr stay the parent's, so a model that prints cannot corrupt the protocol), pickled with cloudpickle:
  functions and classes defined in ``__main__`` (a script, a notebook, ``python -c``) travel by value.
- Each worker runs torch on one intra-op thread and ignores SIGINT (the parent stops its workers on Ctrl-C).
- A watchdog thread in each worker ends it within 0.5 s of the parent's death, however the parent died; at
  normal interpreter exit the parent closes the pipes and waits for its workers (``atexit``).
- Anything that goes wrong with the pool rather than the task (a worker that dies, a task that does not pickle
  here or unpickle there, a busy pool) raises :class:`WorkerError`, on which the caller runs the tasks itself;
  a task's own exception is raised in the parent as it was raised in the worker.
"""

import atexit
import importlib
import multiprocessing
import os
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection, wait

import cloudpickle

WORKER_ENV = "VI_TOOLKIT_WORKER"  # "1" in a worker process (and whatever it starts)
ENTRY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_worker_main.py")
STARTUP_SECONDS = 180.0  # a worker that has not finished its imports by then counts as failed
GRACE_SECONDS = 2.0  # after a task fails, how long the others may take to finish before their workers are stopped
PROGRESS_INTERVAL = 0.2  # seconds between progress messages of a task
SHUTDOWN_SECONDS = 2.0  # at exit, how long idle workers get to end on their own before they are killed


class WorkerError(Exception):
    """The worker pool could not run the tasks (they do not pickle, a worker died, the pool is busy): the
    caller runs them itself. The message says why."""


# --------------------------------------------------------------------------------------------------------------
# Where parallel work is possible


def in_worker():
    """Whether this process is a worker (or was started by one)."""
    return os.environ.get(WORKER_ENV) == "1"


def cores():
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def unavailable():
    """Why tasks cannot run in workers here, or None if they can."""
    if os.name != "posix":
        return "worker processes need a POSIX system"
    if not sys.executable:
        return "no Python executable to start workers with"
    if in_worker():
        return "already inside a worker process"
    if multiprocessing.parent_process() is not None:
        return "inside a multiprocessing child process"
    if cores() < 2:
        return "one CPU core"
    return None


# --------------------------------------------------------------------------------------------------------------
# Worker side


_progress = None  # in a worker, while a task runs: sends its progress to the parent


def report(done, total):
    """Progress of the task running in this worker (``done`` of ``total`` steps), sent to the parent at most every
    ``PROGRESS_INTERVAL`` seconds; a no-op outside a worker. Tasks call it as they go."""
    if _progress is not None:
        _progress(done, total)


def serve(inbox, results, setup):
    """The worker's loop (called by ``_worker_main``): import ``setup["preload"]``, then run each task taken from
    ``inbox`` (a queue the task pipe feeds; None once the parent closed it) and send its outcome on ``results``."""
    global _progress
    import torch

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # only possible before any inter-op work
        pass
    for name in setup.get("preload", ()):
        importlib.import_module(name)
    results.send(("ready", os.getpid()))
    while True:
        message = inbox.get()
        if message is None or message[0] != "task":
            return
        _, task_id, sys_path, cwd, payload = message
        if sys.path != sys_path:
            sys.path[:] = sys_path
        try:
            if os.getcwd() != cwd:
                os.chdir(cwd)
        except OSError:
            pass
        try:
            fn, args, kwargs = cloudpickle.loads(payload)
        except (Exception, SystemExit):  # noqa: BLE001 - whatever stops the task from arriving: the parent decides
            results.send(("unpickle-failed", task_id, traceback.format_exc()))
            continue
        last = [0.0]

        def progress(done, total, task_id=task_id, last=last):
            now = time.monotonic()
            if done >= total or now - last[0] >= PROGRESS_INTERVAL:
                last[0] = now
                results.send(("progress", task_id, done, total))

        _progress = progress
        try:
            outcome = (True, fn(*args, **kwargs))
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - re-raised in the parent
            exc.add_note(f"(raised in vi-toolkit worker process {os.getpid()}:\n{traceback.format_exc().rstrip()})")
            outcome = (False, exc)
        finally:
            _progress = None
        try:
            data = cloudpickle.dumps(outcome)
        except Exception:  # noqa: BLE001 - a result or exception that does not pickle
            ok, value = outcome
            what = f"{type(value).__name__}: {value}" if not ok else f"a {type(value).__name__} result"
            data = cloudpickle.dumps((False, RuntimeError(f"{what} (could not be sent back from the worker: "
                                                          f"{traceback.format_exc().strip().splitlines()[-1]})")))
        results.send(("done", task_id, data))


# --------------------------------------------------------------------------------------------------------------
# Parent side


class _Worker:
    """One worker process and its two pipe ends."""

    def __init__(self, preload):
        task_read, task_write = os.pipe()
        result_read, result_write = os.pipe()
        env = dict(os.environ, **{WORKER_ENV: "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", ENTRY, str(task_read), str(result_write), str(os.getpid())],
                pass_fds=(task_read, result_write), stdin=subprocess.DEVNULL, env=env, close_fds=True,
            )
        except BaseException:
            os.close(task_write)
            os.close(result_read)
            raise
        finally:
            os.close(task_read)
            os.close(result_write)
        self.started = time.monotonic()
        self.ready = False  # imports done
        self.tasks = Connection(task_write, readable=False)
        self.results = Connection(result_read, writable=False)
        self.tasks.send(("setup", {"sys_path": list(sys.path), "cwd": os.getcwd(), "preload": list(preload)}))

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None and not self.tasks.closed

    def send(self, task_id, payload):
        self.tasks.send(("task", task_id, list(sys.path), os.getcwd(), payload))

    def stop(self):
        """Kill the process now (it is busy with a task whose outcome is no longer wanted, or broken)."""
        for conn in (self.tasks, self.results):
            try:
                conn.close()
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def close(self):
        """Ask the process to end: an idle worker exits when its task pipe closes."""
        try:
            self.tasks.close()
        except OSError:
            pass

    def why_dead(self):
        try:
            code = self.process.wait(timeout=1.0)  # its pipe closed: it is exiting, or has
        except subprocess.TimeoutExpired:
            code = None
        return f"worker process {self.pid} " + ("closed its pipe" if code is None else f"exited with code {code}")


class Pool:
    """Persistent workers, grown on demand; one :meth:`run` at a time."""

    def __init__(self):
        self.workers = []
        self.lock = threading.Lock()
        self.pid = os.getpid()

    def _drop(self, worker):
        worker.stop()
        if worker in self.workers:
            self.workers.remove(worker)

    def _grow(self, size, preload):
        for worker in [w for w in self.workers if not w.alive()]:
            self._drop(worker)
        while len(self.workers) < size:
            self.workers.append(_Worker(preload))
        return self.workers[:size]

    def run(self, payloads, size, preload=(), on_progress=None):
        """Run the pickled tasks ``payloads`` on ``size`` workers; their values in task order. Raises the first
        task exception to arrive (after the other running tasks finished, or were stopped after
        ``GRACE_SECONDS``), or WorkerError."""
        values = [None] * len(payloads)
        pending = list(range(len(payloads)))
        busy = {}  # worker -> task index
        failure = None  # (exception to raise, monotonic time of the failure)
        try:
            try:
                idle = list(reversed(self._grow(size, preload)))
            except OSError as exc:
                raise WorkerError(f"could not start worker processes: {exc}") from exc
            while pending or busy:
                while pending and idle and failure is None:
                    worker, index = idle.pop(), pending.pop(0)
                    try:
                        worker.send(index, payloads[index])
                    except OSError as exc:  # the worker is gone (broken pipe)
                        raise WorkerError(f"{worker.why_dead()} ({exc})") from exc
                    busy[worker] = index
                if not busy:
                    break
                if failure is not None and time.monotonic() - failure[1] > GRACE_SECONDS:
                    for worker in list(busy):
                        self._drop(worker)
                    busy.clear()
                    break
                ready = wait([w.results for w in busy], timeout=0.25)
                for worker in [w for w in busy if w.results in ready]:
                    try:
                        message = worker.results.recv()
                    except (EOFError, OSError) as exc:
                        raise WorkerError(f"{worker.why_dead()} while running a task") from exc
                    tag, index = message[0], message[1]
                    if tag == "ready":  # the worker finished its imports (its task is queued in the pipe)
                        worker.ready = True
                        continue
                    if tag == "progress":
                        if on_progress is not None:
                            on_progress(index, message[2], message[3])
                        continue
                    del busy[worker]
                    idle.append(worker)
                    if tag == "unpickle-failed":
                        error = WorkerError(f"the task did not unpickle in the worker: {message[2].strip().splitlines()[-1]}")
                        failure = failure or (error, time.monotonic())
                        continue
                    try:
                        ok, value = cloudpickle.loads(message[2])
                    except Exception as exc:  # noqa: BLE001 - e.g. an exception class that does not rebuild here
                        raise WorkerError(f"a task's outcome did not unpickle here: {type(exc).__name__}: {exc}") from exc
                    if ok:
                        values[index] = value
                    elif failure is None:
                        failure = (value, time.monotonic())
                for worker in list(busy):
                    if worker.process.poll() is not None and not worker.results.poll():  # dead, pipe held open
                        raise WorkerError(f"{worker.why_dead()} while running a task")
                    if not worker.ready and time.monotonic() - worker.started > STARTUP_SECONDS:
                        raise WorkerError(f"worker process {worker.pid} did not start in {STARTUP_SECONDS:.0f} s")
        except BaseException:  # WorkerError, KeyboardInterrupt, ...: the running tasks are not wanted any more
            for worker in list(busy):
                self._drop(worker)
            raise
        if failure is not None:
            raise failure[0]
        return values

    def shutdown(self):
        """End every worker: close the pipes, give them ``SHUTDOWN_SECONDS`` to exit, kill the rest."""
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.close()
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        for worker in workers:
            try:
                worker.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            worker.stop()


_POOL = None
_POOL_LOCK = threading.Lock()
_AT_EXIT = []  # whether shutdown is registered with atexit (once per process)


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            if not _AT_EXIT:
                atexit.register(shutdown)
                _AT_EXIT.append(True)
            _POOL = Pool()
        return _POOL


def shutdown():
    """End the worker processes (at interpreter exit, or to free them earlier; later calls start new ones)."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None and pool.pid == os.getpid():
        pool.shutdown()


def _forget_pool():  # in a forked child: the parent's workers are not this process's
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()  # (the atexit registration is inherited)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def run(calls, workers, preload=(), on_progress=None):
    """Run ``calls`` (a list of ``(function, args, kwargs)``) in ``workers`` worker processes and return their
    values in order. ``preload``: modules each new worker imports before its first task. ``on_progress(i, done,
    total)`` receives what task i reports (:func:`report`). A task's exception is raised here; WorkerError
    means the pool could not run them (the caller then runs them itself)."""
    reason = unavailable()
    if reason is not None:
        raise WorkerError(reason)
    try:
        payloads = [cloudpickle.dumps(call) for call in calls]
    except Exception as exc:  # noqa: BLE001 - locks, open files, generators ... in the model or data
        raise WorkerError(f"the model or data do not pickle: {type(exc).__name__}: {exc}") from exc
    pool = _pool()
    if not pool.lock.acquire(blocking=False):
        raise WorkerError("the worker pool is busy with another call")
    try:
        return pool.run(payloads, max(1, min(workers, len(calls))), preload, on_progress)
    finally:
        pool.lock.release()
