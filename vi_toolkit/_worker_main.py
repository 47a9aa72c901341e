"""Entry point of a vi-toolkit worker process (see :mod:`vi_toolkit.workers`), run by path, never imported:

    python -P .../vi_toolkit/_worker_main.py TASK_FD RESULT_FD PARENT_PID

Standard library only up to the hand-over, so that the first thing the process does is start the watchdog:
a daemon thread that ends the worker (``os._exit``) within half a second of its parent's death, however the
parent died (SIGKILL included). Then it reads the parent's ``sys.path`` and working directory from the task
pipe, starts a thread that reads the task pipe as messages arrive, imports the toolkit's chain code without
running the package's ``__init__`` (see :func:`_light_package`), and serves tasks until the task pipe closes.
The parent's ``__main__`` is never imported: models defined there arrive pickled by value (cloudpickle).
"""

import os
import queue
import signal
import sys
import threading
import time

WATCH_INTERVAL = 0.5  # seconds between checks that the parent is alive


def _watchdog(parent):
    while True:
        if os.getppid() != parent:  # re-parented: the parent is gone
            os._exit(0)
        time.sleep(WATCH_INTERVAL)


def _reader(tasks, inbox):
    """Move messages from the task pipe to ``inbox`` as they arrive (None when the pipe closes), so that the
    parent's writes never wait for this process to finish its imports or its current task."""
    while True:
        try:
            inbox.put(tasks.recv())
        except (EOFError, OSError):
            inbox.put(None)
            return


def _light_package(name):
    """Register package ``name`` without running its ``__init__`` (which imports every module of the toolkit,
    ArviZ and matplotlib included, seconds that a chain does not need). Its submodules import as usual; the
    first access to an attribute that only ``__init__`` defines runs ``__init__`` then, so a model that uses
    ``vi_toolkit.something`` still finds it."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return  # not a package here: the normal import reports what is wrong
    package = importlib.util.module_from_spec(spec)
    state = {"initialized": False}

    def __getattr__(attr):
        if not attr.startswith("__") and not state["initialized"]:
            if importlib.util.find_spec(f"{name}.{attr}") is not None:
                raise AttributeError(attr)  # a submodule: `from package import submodule` imports it alone
            state["initialized"] = True
            spec.loader.exec_module(package)
            if attr in package.__dict__:
                return package.__dict__[attr]
        raise AttributeError(f"module {name!r} has no attribute {attr!r}")

    package.__getattr__ = __getattr__
    sys.modules[name] = package


def main(argv):
    task_fd, result_fd, parent = (int(a) for a in argv[1:4])
    threading.Thread(target=_watchdog, args=(parent,), name="vi-toolkit-watchdog", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in a terminal is for the parent; it stops its workers
    from multiprocessing.connection import Connection

    tasks = Connection(task_fd, writable=False)
    results = Connection(result_fd, readable=False)
    try:
        _, setup = tasks.recv()
    except EOFError:
        return
    sys.path[:] = setup["sys_path"]
    try:
        os.chdir(setup["cwd"])
    except OSError:
        pass
    inbox = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(tasks, inbox), name="vi-toolkit-reader", daemon=True).start()
    _light_package("vi_toolkit")
    import vi_toolkit.workers  # noqa: F401 - the submodule alone (``from vi_toolkit import`` would run __init__)

    sys.modules["vi_toolkit.workers"].serve(inbox, results, setup)


if __name__ == "__main__":
    main(sys.argv)
