"""Defense at the boundaries: files, reports, references and killed runs (the reliability issue's findings)."""

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit import models, posteriordb
from vi_toolkit.cli import main
from vi_toolkit.report import build_report
from vi_toolkit.run_folder import RunFolder


def _dead_pid():
    pid = 2**22 - 1
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        pid -= 1


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    path = tmp_path / "fit.ckpt"
    stale = tmp_path / f".fit.ckpt.{_dead_pid()}.abc.tmp"
    live = tmp_path / f".fit.ckpt.{os.getpid()}.xyz.tmp"  # a writer that is still running keeps its file
    stale.write_bytes(b"half a checkpoint")
    live.write_bytes(b"being written")
    vt.fit_vi(models.get("normal-mean").model, "normal", torch.ones(3), steps=20, checkpoint=path, progress=False)
    assert not stale.exists() and live.exists() and path.is_file()


def _posteriordb_folder(tmp_path, chains, data=None):
    folder = tmp_path / "post"
    folder.mkdir(exist_ok=True)
    (folder / "data.json").write_text(json.dumps(data if data is not None else {"y": [1.0]}))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("draws.json", json.dumps(chains))
    (folder / "reference_draws.json.zip").write_bytes(buffer.getvalue())
    return folder


def test_posteriordb_reader_refuses_what_is_not_posteriordb(tmp_path):
    good = _posteriordb_folder(tmp_path, [{"theta[1]": [0.1, 0.2], "mu": [1.0, 2.0]}])
    assert set(posteriordb.load(good).reference) == {"theta[0]", "mu"}
    with pytest.raises(vt.DataError, match="1-based"):
        posteriordb.load(_posteriordb_folder(tmp_path, [{"theta[0]": [0.1, 0.2]}]))
    with pytest.raises(vt.DataError, match="NaN"):
        posteriordb.load(_posteriordb_folder(tmp_path, [{"mu": [0.1, float("nan")]}]))
    with pytest.raises(vt.DataError, match="numeric"):
        posteriordb.load(_posteriordb_folder(tmp_path, [{"mu": [0.1, 0.2]}, {"sigma": [1.0]}]))
    folder = _posteriordb_folder(tmp_path, [{"mu": [0.1]}])
    (folder / "reference_draws.json.zip").write_bytes(b"not a zip")
    with pytest.raises(vt.DataError, match="unreadable"):
        posteriordb.load(folder)


@pytest.mark.parametrize("reference, match", [
    ({"mu": np.full(100, 3.0)}, "sd must be positive"),
    ({"mu": (0.0, -1.0)}, "sd must be positive"),
    ({"mu": (float("nan"), 1.0)}, "sd must be positive"),
    ({"mu": np.array([0.1, np.nan, 0.3])}, "finite"),
    ({"mu": 3.0}, "single number"),
])
def test_compare_refuses_references_it_cannot_measure_against(reference, match):
    draws = {"mu": np.random.default_rng(0).normal(size=200)}
    with pytest.raises(vt.DataError, match=match):
        vt.compare({"draws": draws}, reference)


def test_reports_read_nothing_through_symlinks(tmp_path):
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    run = RunFolder.create(tmp_path / "run")
    run.write_json("experiment.json", {"name": "x", "summary": "s"})
    (run.path / "tables").mkdir()
    (run.path / "tables" / "leak.csv").symlink_to(secret)
    html = build_report(run.path).read_text()
    assert "hunter2" not in html and "leak" not in html


def test_a_full_disk_during_a_cli_run_is_one_line_and_the_run_is_marked_incomplete(tmp_path, capsys, monkeypatch):
    from vi_toolkit.experiments import conjugate

    def fills_the_disk(config, folder, seed):
        raise OSError(28, "No space left on device", str(folder.path / "tables" / "x.csv"))

    monkeypatch.setattr(conjugate, "EXPERIMENT", dataclasses.replace(conjugate.EXPERIMENT, run=fills_the_disk))
    out = tmp_path / "run"
    assert main(["run", "conjugate", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
    assert json.loads((out / "run.json").read_text())["complete"] is False


def _workers_of(pid):
    """Pids of the worker processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read()
            except (OSError, IndexError, ValueError):
                continue
            if parent == pid and b"_worker_main" in cmdline:
                found.append(int(entry))
    return found


def _running(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self") or (os.cpu_count() or 1) < 2, reason="needs /proc and 2 cores")
def test_sigkill_of_a_cli_run_during_parallel_nuts_leaves_no_worker_alive(tmp_path):
    out = tmp_path / "run"
    cli = [sys.executable, "-m", "vi_toolkit.cli", "run", "vi-vs-mcmc", "--out", str(out),
           "--set", "target=normal-mean", "--set", "guides=normal", "--set", "objectives=elbo", "--set", "steps=50",
           "--set", "draws=1000000", "--set", "warmup=100", "--set", "chains=2"]
    child = subprocess.Popen(cli, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(workers := _workers_of(child.pid)) < 2:
            assert child.poll() is None, "the run ended before its parallel chains started"
            assert time.monotonic() < deadline, "no parallel chains within 120 s"
            time.sleep(0.2)
        time.sleep(1.0)  # the chains are sampling
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        killed = time.monotonic()
        while [pid for pid in workers if _running(pid)] and time.monotonic() < killed + 10:
            time.sleep(0.2)
        assert not [pid for pid in workers if _running(pid)], "workers outlived their killed run by 10 s"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert json.loads((out / "run.json").read_text())["complete"] is False
    assert main(["report", str(out)]) == 0 and "Incomplete run" in (out / "report.html").read_text()
