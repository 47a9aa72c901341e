"""Sweeps on Dask: a real LocalCluster equals the serial run bit for bit, an external scheduler and worker, a
SIGKILLed sweep resumed with every trial done exactly once, failing trials, and the sweep file checked first.

One LocalCluster (2 worker processes, torch imported once in each) is shared by the module."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from vi_toolkit import cli
from vi_toolkit.errors import ConfigError, UnknownNameError, VIToolkitError
from vi_toolkit.sweep import EXECUTIONS, TRIALS, local_cluster, sweep, trial_complete, warm_worker
from vi_toolkit.sweep_spec import load_spec

TINY = {"objectives": "elbo", "steps": 20, "draws": 5, "warmup": 5, "chains": 1, "num_particles": 1,
        "posterior_draws": 50}
SPEC = {  # 2 models x 2 guides x 2 seeds
    "experiment": "vi-vs-mcmc",
    "seeds": [0, 1],
    "settings": TINY,
    "grid": {"target": ["normal-mean", "linear-regression"], "guides": ["normal", "mvn"]},
}


def _toml(spec):
    def value(v):
        return json.dumps(v)  # TOML strings, numbers and arrays read like JSON's

    lines = [f"experiment = {value(spec['experiment'])}", f"seeds = {value(spec['seeds'])}", "[settings]"]
    lines += [f"{k} = {value(v)}" for k, v in spec["settings"].items()]
    lines += ["[grid]"] + [f"{k} = {value(v)}" for k, v in spec["grid"].items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    cluster = local_cluster(2)
    client = Client(cluster)
    workers = list(client.scheduler_info()["workers"])
    warming = [client.submit(warm_worker, workers=[w], pure=False) for w in workers]  # imports, while we work
    yield client
    del warming
    client.close()
    cluster.close()


@pytest.fixture(scope="module")
def external(tmp_path_factory):
    """A scheduler and a worker started by Dask's own command lines, bound to 127.0.0.1; stopped at the end."""
    python = sys.executable
    info = tmp_path_factory.mktemp("scheduler") / "scheduler.json"
    procs = [subprocess.Popen([python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(info)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        deadline, address = time.monotonic() + 60, None
        while address is None and time.monotonic() < deadline:
            try:
                address = json.loads(info.read_text())["address"]  # written once the scheduler listens
            except (OSError, ValueError, KeyError):
                time.sleep(0.05)
        assert address.startswith("tcp://127.0.0.1:")
        procs.append(subprocess.Popen([python, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard",
                                       "--preload", "vi_toolkit.experiments"],  # torch imported at start
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        yield address, procs[-1]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _executions(folder):
    path = Path(folder) / EXECUTIONS
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _numbers(folder):
    """Every table of a trial, without its timing columns."""
    out = {}
    for path in sorted((Path(folder) / "tables").glob("*.csv")):
        frame = pd.read_csv(path)
        out[path.stem] = frame.drop(columns=[c for c in frame.columns if "seconds" in c])
    return out


def test_local_cluster_equals_serial_bit_for_bit(client, external, tmp_path):
    # (``external`` starts its processes now, so that they import while this test works.)
    done = {}
    on_dask = threading.Thread(target=lambda: done.update(dist=sweep(SPEC, out=tmp_path / "dask", client=client,
                                                                      progress=False)))
    on_dask.start()  # the cluster's trials run while this process runs the same trials serially
    serial = sweep(SPEC, out=tmp_path / "serial", workers=0, progress=False)
    on_dask.join()
    dist = done["dist"]
    assert serial.trials == dist.trials == 8 and serial.failed == dist.failed == 0
    names = sorted(p.name for p in (tmp_path / "dask" / TRIALS).iterdir() if p.is_dir())
    assert names == sorted(p.name for p in (tmp_path / "serial" / TRIALS).iterdir() if p.is_dir())
    assert len(names) == 8
    for name in names:
        a, b = _numbers(tmp_path / "serial" / TRIALS / name), _numbers(tmp_path / "dask" / TRIALS / name)
        assert a.keys() == b.keys() and a
        for table in a:
            pd.testing.assert_frame_equal(a[table], b[table], check_exact=True)
        assert (tmp_path / "dask" / TRIALS / name / "report.html").is_file()
    worker_pids = set(client.run(os.getpid).values())
    assert {e["pid"] for e in _executions(tmp_path / "dask")} <= worker_pids  # the trials ran in the workers
    table = pd.read_csv(tmp_path / "dask" / "trials.csv")
    assert {"target", "guides", "seed", "status", "trial_seconds", "error", "method"} <= set(table.columns)
    assert set(table["status"]) == {"done"} and len(set(table["trial"])) == 8
    aggregates = pd.read_csv(tmp_path / "dask" / "aggregates.csv")
    assert len(aggregates) == 8 and set(aggregates["seeds"]) == {2}  # 4 combinations x (VI, NUTS), 2 seeds each
    assert "std_mean_error_max_mean" in aggregates and "std_mean_error_max_sd" in aggregates
    html = (tmp_path / "dask" / "report.html").read_text()
    assert all(f'href="trials/{n}/report.html"' in html for n in names)
    assert (tmp_path / "dask" / "figures" / "error.png").is_file()
    assert (tmp_path / "dask" / "figures" / "seconds-error.png").is_file()
    again = sweep(SPEC, out=tmp_path / "dask", client=client, progress=False)  # resumed: nothing to do
    assert again.skipped == 8 and again.ran == 0 and len(_executions(tmp_path / "dask")) == 8


def test_external_scheduler_and_worker(external, tmp_path, capsys):
    address, worker = external
    spec = dict(SPEC, seeds=[0], grid={"target": ["normal-mean"], "guides": ["normal", "mvn"]})
    path = tmp_path / "two.toml"
    path.write_text(_toml(spec))
    code = cli.main(["sweep", str(path), "--out", str(tmp_path / "out"), "--scheduler", address])
    assert code == 0, capsys.readouterr()
    assert "report.html" in capsys.readouterr().out
    trials = [p for p in (tmp_path / "out" / TRIALS).iterdir() if p.is_dir()]
    assert len(trials) == 2
    assert all(json.loads((p / "run.json").read_text())["complete"] for p in trials)
    assert {e["pid"] for e in _executions(tmp_path / "out")}.isdisjoint({os.getpid()})


def test_killed_sweep_resumes_each_trial_exactly_once(client, tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(_toml(SPEC))
    out = tmp_path / "out"
    spec = load_spec(path)
    proc = subprocess.Popen([sys.executable, "-m", "vi_toolkit.cli", "sweep", str(path), "--out", str(out),
                             "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = sum(trial_complete(out / TRIALS / t.folder_name, t.hash) for t in spec.trials)
            if done >= 2 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    before = {t.hash for t in spec.trials if trial_complete(out / TRIALS / t.folder_name, t.hash)}
    assert 2 <= len(before) < 8
    time.sleep(1.0)  # the killed sweep's workers end with it
    result = sweep(path, out=out, client=client, progress=False)
    assert result.failed == 0 and result.trials == 8
    assert result.skipped >= len(before)
    folders = [p for p in (out / TRIALS).iterdir() if p.is_dir()]
    assert sorted(p.name for p in folders) == sorted(t.folder_name for t in spec.trials)  # none extra, none missing
    assert all(trial_complete(out / TRIALS / t.folder_name, t.hash) for t in spec.trials)
    counts = Counter(e["hash"] for e in _executions(out))
    assert counts == Counter({t.hash: 1 for t in spec.trials})  # each trial completed once, none twice
    assert set(pd.read_csv(out / "trials.csv")["status"]) == {"done"}


def test_an_incomplete_trial_folder_is_redone(tmp_path):
    from vi_toolkit.run_folder import RunFolder
    from vi_toolkit.sweep import run_trial

    spec = load_spec(dict(SPEC, seeds=[0], grid={"target": ["normal-mean"]}))
    (trial,) = spec.trials
    stale = RunFolder.create(tmp_path / TRIALS / trial.folder_name, meta={"trial_hash": trial.hash})
    (stale.path / "half-written.csv").write_text("x\n")  # what a killed sweep leaves: run.json says incomplete
    record = run_trial(tmp_path, "vi-vs-mcmc", trial.settings, trial.seed, trial.hash, trial.folder_name)
    assert record["status"] == "done" and not record["reused"]
    assert trial_complete(stale.path, trial.hash) and not (stale.path / "half-written.csv").exists()
    again = run_trial(tmp_path, "vi-vs-mcmc", trial.settings, trial.seed, trial.hash, trial.folder_name)
    assert again["reused"] and len(_executions(tmp_path)) == 1


def test_failing_trials_are_recorded_and_set_the_exit_code(client, tmp_path, capsys):
    mixed = dict(SPEC, seeds=[0], grid={"target": ["normal-mean", "no-such-target"], "guides": ["normal"]})
    path = tmp_path / "mixed.toml"
    path.write_text(_toml(mixed))
    address = client.scheduler.address
    code = cli.main(["sweep", str(path), "--out", str(tmp_path / "mixed"), "--scheduler", address])
    out, err = capsys.readouterr()
    assert code == 0
    assert "note: 1 of 2 trials failed" in out
    table = pd.read_csv(tmp_path / "mixed" / "trials.csv")
    bad = table[table["target"] == "no-such-target"]
    assert list(bad["status"]) == ["failed"] and "no-such-target" in bad["error"].iloc[0]
    assert "\n" not in bad["error"].iloc[0]
    assert set(table[table["target"] == "normal-mean"]["status"]) == {"done"}

    broken = dict(mixed, grid={"target": ["bogus-1", "bogus-2"], "guides": ["normal"]})
    path.write_text(_toml(broken))
    code = cli.main(["sweep", str(path), "--out", str(tmp_path / "broken"), "--scheduler", address])
    out, err = capsys.readouterr()
    assert code == 2
    errors = [line for line in err.splitlines() if "vi-toolkit:" in line]  # (the rest is the progress bar)
    assert len(errors) == 1 and "every one of the 2 trials failed" in errors[0]
    assert set(pd.read_csv(tmp_path / "broken" / "trials.csv")["status"]) == {"failed"}


@pytest.mark.parametrize(
    "change, error",
    [
        ({"experiment": "no-such-experiment"}, UnknownNameError),
        ({"grid": {"guides": ["normal", "no-such-guide"]}}, ConfigError),
        ({"grid": {"stepz": [1, 2]}}, ConfigError),
        ({"settings": {**TINY, "steps": -1}}, ConfigError),
        ({"seeds": [0, -1]}, ConfigError),
        ({"seeds": []}, ConfigError),
        ({"grid": {"guides": []}}, ConfigError),
        ({"colour": "blue"}, ConfigError),
        ({"trials": [{"guides": "normal", "seed": "x"}]}, ConfigError),
    ],
)
def test_bad_sweep_files_are_refused_before_anything_is_made(tmp_path, change, error):
    with pytest.raises(error):
        sweep({**SPEC, **change}, out=tmp_path / "out", workers=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_cli_bad_sweep_file_is_one_line_and_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text(_toml(dict(SPEC, grid={"guides": ["normal", "nope"]})))
    assert cli.main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "nope" in err
    assert not (tmp_path / "out").exists()
    assert cli.main(["sweep", str(tmp_path / "missing.toml")]) == 2


def test_spec_trials_hashes_and_extra_trials():
    spec = load_spec({**SPEC, "trials": [{"target": "normal-mean", "guides": "iaf", "seed": 7},
                                         {"target": "normal-mean", "guides": "normal", "seed": 0}]})  # a duplicate
    assert len(spec.trials) == 9 and len({t.hash for t in spec.trials}) == 9
    assert spec.swept == ("target", "guides")
    again = load_spec({**SPEC, "settings": {**TINY, "lr": 0.01}})  # lr=0.01 is the default: the same trials
    assert [t.hash for t in again.trials] == [t.hash for t in spec.trials[:8]]
    assert isinstance(ConfigError("x"), VIToolkitError)


def test_cli_imports_no_dask_or_torch():
    code = "import sys, vi_toolkit.cli as c; c.build_parser(); print('dask' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[0] == "False"
