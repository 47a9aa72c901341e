"""Checkpointed fits: resume after SIGKILL, refuse foreign or corrupt checkpoints, return a finished fit at once."""

import os
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import models
import vi_toolkit as vt

# One definition of the fit, run both in a child process (killed mid-fit) and in this process (resume).
SCRIPT = '''
import sys
import time

import models
import vi_toolkit as vt

PAIR = models.get("normal-mean")
(Y,) = PAIR.simulate(seed=0, n=20)


def slow_model(y):
    time.sleep(0.002)
    PAIR.model(y)


def fit(checkpoint):
    return vt.fit_vi(slow_model, "normal", Y, checkpoint=checkpoint, checkpoint_every=10, steps=600,
                     schedule=vt.Schedule(early_stop=False), jit=False, progress=False)


if __name__ == "__main__":
    fit(sys.argv[1])
'''

STEPS = 600


def _saved_losses(path):
    try:
        return torch.load(path, weights_only=False)["losses"]
    except Exception:  # not there yet (writes are atomic, so a present file is complete)
        return None


def test_resume_after_sigkill(tmp_path):
    script = tmp_path / "slow_fit.py"
    script.write_text(SCRIPT)
    ckpt = tmp_path / "fit.ckpt"
    child = subprocess.Popen([sys.executable, str(script), str(ckpt)], cwd="/work/main",
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert child.poll() is None, f"the fit ended before it was killed: {child.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no checkpoint with >= 100 losses within 60 s"
            losses = _saved_losses(ckpt) if ckpt.exists() else None
            if losses is not None and len(losses) >= 100:
                break
            time.sleep(0.02)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL
    killed = torch.load(ckpt, weights_only=False)
    assert 100 <= len(killed["losses"]) < STEPS and not killed["done"]

    fit = runpy.run_path(str(script), run_name="not_main")["fit"]
    resumed = fit(ckpt)
    assert len(resumed.losses) == STEPS
    assert resumed.info["steps_run"] == STEPS
    np.testing.assert_array_equal(resumed.losses[: len(killed["losses"])], killed["losses"])

    # The engine restores RNG state, parameters and optimizer state, so the resumed fit is the uninterrupted one.
    straight = fit(None)
    assert len(straight.losses) == STEPS
    assert set(resumed.params) == set(straight.params)
    for name, value in straight.params.items():
        torch.testing.assert_close(resumed.params[name], value, rtol=0, atol=1e-5)  # 1e-5 is the criterion
    np.testing.assert_allclose(resumed.losses, straight.losses, rtol=1e-5)


@pytest.fixture
def short_fit(tmp_path):
    """A small checkpointed fit that runs to completion; returns (run, path, result, call counter)."""
    pair = models.get("normal-mean")
    (y,) = pair.simulate(seed=0, n=20)
    calls = {"n": 0}

    def model(y):
        calls["n"] += 1
        pair.model(y)

    path = tmp_path / "short.ckpt"

    def run(**kw):
        settings = dict(steps=40, checkpoint=path, checkpoint_every=10, progress=False, jit=False)
        settings.update(kw)
        return vt.fit_vi(model, "normal", y, **settings)

    return run, path, run(), calls


def test_checkpoint_of_other_fit_is_refused(short_fit):
    run, path, _, _ = short_fit
    with pytest.raises(vt.CheckpointError, match="lr"):
        run(lr=0.02)


def test_corrupt_checkpoint_is_refused(tmp_path):
    pair = models.get("normal-mean")
    (y,) = pair.simulate(seed=0, n=20)
    for content in (b"not a checkpoint at all", b""):
        path = tmp_path / "corrupt.ckpt"
        path.write_bytes(content)
        with pytest.raises(vt.CheckpointError):
            vt.fit_vi(pair.model, "normal", y, steps=20, checkpoint=path, progress=False)
    path = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, path)  # a readable torch file that is no checkpoint
    with pytest.raises(vt.CheckpointError):
        vt.fit_vi(pair.model, "normal", y, steps=20, checkpoint=path, progress=False)


def test_finished_checkpoint_returns_at_once(short_fit):
    run, path, first, calls = short_fit
    assert torch.load(path, weights_only=False)["done"] is True
    before = calls["n"]
    again = run()
    # only set-up traces run (a handful of model calls), no training steps (40 steps would be >= 40 calls)
    assert calls["n"] - before < 10
    np.testing.assert_array_equal(again.losses, first.losses)
    for name, value in first.params.items():
        assert torch.equal(again.params[name], value), name
