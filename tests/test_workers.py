"""Parallel chains in worker processes (vi_toolkit.workers): never re-running the caller's script, models from
``__main__`` and ``python -c`` (pickled by value), the same draws as sequential chains, untouched caller state,
workers that end with their parent, fallbacks that never hang, and settings checked before any work.

The module's top level imports nothing that runs vi_toolkit's ``__init__`` in a worker (tasks defined here are
pickled by reference, so workers import this module): ``vi_toolkit`` attributes are looked up inside tests."""

import os
import random
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit import workers
from vi_toolkit.errors import ConfigError, ModelGuideError

needs_workers = pytest.mark.skipif(workers.unavailable() is not None, reason=f"no workers: {workers.unavailable()}")

Y = torch.tensor([0.4, 1.1, 0.7, 1.9, 1.3])
FAST = dict(draws=40, warmup=40, chains=2, seed=5, progress=False)

# A script as users write them: no main guard, a model at top level, output and a file written at top level.
SCRIPT = """
import sys
import torch, pyro, pyro.distributions as dist
import vi_toolkit as vt

print("TOP-LEVEL-MARKER", flush=True)
with open(sys.argv[1], "a") as log:
    log.write("top level ran\\n")

def model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    pyro.deterministic("mu2", mu**2)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

y = torch.tensor([0.4, 1.1, 0.7, 1.9, 1.3])
result = vt.run_mcmc(model, y, draws=30, warmup=30, chains=2, progress=False, jit=False, parallel=True)
print("PARALLEL", result.info["parallel"], result.info.get("sequential_because"), flush=True)
print("SHAPES", result.draws()["mu"].shape, result.draws()["mu2"].shape, flush=True)
"""

# The `python -c` run goes on to long chains, to be killed with SIGKILL while its workers run them.
LONG_TAIL = """
print("LONG-RUN", flush=True)
vt.run_mcmc(model, y, draws=10**7, warmup=10, chains=2, progress=False, jit=False)
"""


def normal_model(y):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y)


def _python(*args, cwd):
    return subprocess.Popen([sys.executable, *args], cwd=cwd, env=dict(os.environ, PYTHONUNBUFFERED="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read_until(process, token, seconds):
    """The process's stdout up to and including the line holding ``token`` (or all it wrote in ``seconds``)."""
    out, deadline = b"", time.monotonic() + seconds
    while token.encode() not in out and time.monotonic() < deadline:
        if select.select([process.stdout], [], [], 0.2)[0]:
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                break
            out += chunk
    return out.decode()


@pytest.fixture(scope="module")
def script_runs(tmp_path_factory):
    """Started at once: the script without a main guard run as a file, and the same program through
    ``python -c``, which then starts long chains and is killed with SIGKILL while its workers run them.
    Returns name -> (exit code, stdout, stderr, log file) and, under "killed", (worker pids, pids alive 10 s
    after the kill)."""
    folder = tmp_path_factory.mktemp("scripts")
    (folder / "no_guard.py").write_text(SCRIPT)
    as_file = _python(str(folder / "no_guard.py"), str(folder / "file.log"), cwd=folder)
    as_c = _python("-c", SCRIPT + LONG_TAIL, str(folder / "c.log"), cwd=folder)
    runs, workers_of_c, alive = {}, [], []
    try:
        out_c = _read_until(as_c, "LONG-RUN", 120)
        if "LONG-RUN" in out_c:
            time.sleep(1.0)  # into the chains (the pool is warm: they start at once)
            workers_of_c = _children(as_c.pid)
    finally:
        as_c.send_signal(signal.SIGKILL)
        as_c.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in workers_of_c):
        time.sleep(0.1)
    alive = [pid for pid in workers_of_c if _alive(pid)]
    for pid in alive:  # leave no stray process behind, whatever the outcome
        os.kill(pid, signal.SIGKILL)
    runs["-c"] = (None, out_c, as_c.stderr.read().decode(), folder / "c.log")
    runs["killed"] = (workers_of_c, alive)
    out, err = as_file.communicate(timeout=180)
    runs["file"] = (as_file.returncode, out.decode(), err.decode(), folder / "file.log")
    return runs


@needs_workers
@pytest.mark.parametrize("how", ["file", "-c"])
def test_a_script_without_main_guard_runs_its_top_level_once(script_runs, how):
    code, out, err, log = script_runs[how]
    assert code in (0, None), err  # None: the `python -c` run, killed later on purpose (see the fixture)
    assert out.count("TOP-LEVEL-MARKER") == 1, out
    assert log.read_text() == "top level ran\n"
    assert "PARALLEL True None" in out, out + err
    assert "SHAPES (60,) (60,)" in out, out


@needs_workers
def test_parallel_draws_equal_sequential_draws_and_the_pool_is_kept():
    parallel = vt.run_mcmc(normal_model, Y, **FAST)  # jit=True: compiled in each worker
    pids = [w.pid for w in workers._pool().workers]
    again = vt.run_mcmc(normal_model, Y, **FAST)
    assert [w.pid for w in workers._pool().workers] == pids  # the same workers served the second call
    sequential = vt.run_mcmc(normal_model, Y, parallel=False, **FAST)
    assert parallel.info["parallel"] is True and sequential.info["parallel"] is False
    assert parallel.info["jit"] is True and sequential.info["jit"] is True
    for result in (parallel, again):
        np.testing.assert_array_equal(result.chains["mu"], sequential.chains["mu"])
        np.testing.assert_array_equal(result.diverging, sequential.diverging)


def _caller_streams():
    return torch.rand(4), np.random.rand(4), random.random()


@pytest.mark.parametrize("parallel", [False, True])
def test_the_callers_random_streams_and_threads_are_untouched(parallel):
    before = torch.get_num_threads()
    threads = 2 if before == 1 else before  # a count the model (one thread: it is small) does not run on
    try:
        torch.set_num_threads(threads)
        torch.manual_seed(11), np.random.seed(11), random.seed(11)
        expected = _caller_streams()
        torch.manual_seed(11), np.random.seed(11), random.seed(11)
        result = vt.run_mcmc(normal_model, Y, parallel=parallel, **FAST)
        assert torch.get_num_threads() == threads
        got = _caller_streams()
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(got[0], expected[0], rtol=0, atol=0)
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert result.info["parallel"] is (parallel and workers.unavailable() is None)


@pytest.mark.parametrize("bad", [1.5, -1, 0, 1, True, "0.8", float("nan")])
def test_target_accept_outside_the_unit_interval_is_a_config_error(bad):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="target_accept"):
        vt.run_mcmc(normal_model, Y, target_accept=bad, progress=False)
    assert time.perf_counter() - start < 1.0  # checked before the model runs


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5])
def test_bad_seed_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="seed"):
        vt.run_mcmc(normal_model, Y, seed=bad, progress=False)


def _rebuild_refusing_workers():
    if workers.in_worker():
        raise RuntimeError("this model does not unpickle in a worker")
    return RefusesWorkers()


class RefusesWorkers:
    """A model that pickles in the parent and fails to unpickle in a worker."""

    def __call__(self, y):
        normal_model(y)

    def __reduce__(self):
        return (_rebuild_refusing_workers, ())


def fails_in_workers(y):
    if workers.in_worker():
        raise ValueError("the model fails in the worker")
    normal_model(y)


def crashes_workers(y):
    if workers.in_worker():
        os._exit(3)
    normal_model(y)


@needs_workers
def test_a_model_that_does_not_unpickle_in_a_worker_runs_sequentially():
    sequential = vt.run_mcmc(normal_model, Y, parallel=False, **FAST)
    result = vt.run_mcmc(RefusesWorkers(), Y, **FAST)
    assert result.info["parallel"] is False and "unpickle" in result.info["sequential_because"]
    np.testing.assert_array_equal(result.chains["mu"], sequential.chains["mu"])


@needs_workers
def test_a_model_error_in_a_worker_is_raised_as_in_sequential_chains():
    start = time.perf_counter()
    with pytest.raises(ModelGuideError, match="fails in the worker"):
        vt.run_mcmc(fails_in_workers, Y, **FAST)
    assert time.perf_counter() - start < 30
    assert all(w.alive() for w in workers._pool().workers)  # the workers survive their task's error


@needs_workers
def test_a_worker_that_crashes_falls_back_to_sequential_chains():
    sequential = vt.run_mcmc(normal_model, Y, parallel=False, **FAST)
    result = vt.run_mcmc(crashes_workers, Y, **FAST)
    assert result.info["parallel"] is False and "exited with code 3" in result.info["sequential_because"]
    np.testing.assert_array_equal(result.chains["mu"], sequential.chains["mu"])
    assert vt.run_mcmc(normal_model, Y, **FAST).info["parallel"] is True  # the pool replaces dead workers


def _proc_stat(pid):
    """(state, parent pid) from /proc, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[0], int(fields[1])


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _proc_stat(int(entry))
            if stat is not None and stat[1] == pid:
                found.append(int(entry))
    return found


def _alive(pid):
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has ended (it waits only to be reaped)


@needs_workers
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_workers_end_when_their_parent_is_killed(script_runs):
    """SIGKILL of the `python -c` parent during its long parallel chains: no worker is alive 10 s later."""
    pids, alive = script_runs["killed"]
    assert len(pids) == 2, f"the killed parent's worker processes: {pids}"
    assert not alive, f"workers {alive} outlived their killed parent by 10 s"
