"""Checkpointed fits: resume after SIGKILL, refuse foreign or corrupt checkpoints, return a finished fit at once."""

import os
import runpy
import signal
import subprocess
import sys
import time

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from vi_toolkit import models
import vi_toolkit as vt

# One definition of the fit, run both in a child process (killed mid-fit) and in this process (resume).
SCRIPT = '''
import sys
import time

from vi_toolkit import models
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
        return torch.load(path, weights_only=True)["losses"]
    except Exception:  # not there yet (writes are atomic, so a present file is complete)
        return None


def test_resume_after_sigkill(tmp_path):
    script = tmp_path / "slow_fit.py"
    script.write_text(SCRIPT)
    ckpt = tmp_path / "fit.ckpt"
    child = subprocess.Popen([sys.executable, str(script), str(ckpt)],
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
    killed = torch.load(ckpt, weights_only=True)
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
    assert torch.load(path, weights_only=True)["done"] is True
    before = calls["n"]
    again = run()
    resumed = calls["n"] - before
    before = calls["n"]
    run(steps=1, checkpoint=None)  # set-up (checks, the Laplace start's search) and one training step
    # only set-up runs, no training step (40 steps would be >= 40 more calls)
    assert resumed < calls["n"] - before
    np.testing.assert_array_equal(again.losses, first.losses)
    for name, value in first.params.items():
        assert torch.equal(again.params[name], value), name


def test_checkpoint_of_other_data_or_model_is_refused(tmp_path):
    pair = models.get("normal-mean")
    (y,) = pair.simulate(seed=0, n=20)
    path = tmp_path / "fit.ckpt"
    settings = dict(steps=30, checkpoint=path, progress=False, jit=False)
    vt.fit_vi(pair.model, "normal", y, **settings)
    with pytest.raises(vt.CheckpointError, match="data"):
        vt.fit_vi(pair.model, "normal", y + 100, **settings)
    with pytest.raises(vt.CheckpointError, match="model"):
        vt.fit_vi(models.get("normal-mean", prior_scale=5.0).model, "normal", y, **settings)

    def my_model(y):
        pair.model(y)

    with pytest.raises(vt.CheckpointError, match="model"):
        vt.fit_vi(my_model, "normal", y, **settings)


class _Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_with_a_pickled_payload_runs_no_code(tmp_path):
    pair = models.get("normal-mean")
    path, marker = tmp_path / "evil.ckpt", tmp_path / "ran"
    torch.save({"format": 2, "settings": {}, "x": _Payload(str(marker))}, path)
    with pytest.raises(vt.CheckpointError):
        vt.fit_vi(pair.model, "normal", torch.ones(3), steps=20, checkpoint=path, progress=False)
    assert not marker.exists()


def test_a_full_disk_keeps_the_old_checkpoint_and_leaves_no_temp_file(tmp_path, monkeypatch):
    pair = models.get("normal-mean")
    path = tmp_path / "fit.ckpt"
    settings = dict(steps=40, checkpoint=path, checkpoint_every=10, progress=False, jit=False)
    vt.fit_vi(pair.model, "normal", torch.ones(3), **settings)
    before = path.read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(vt.CheckpointError, match="No space left"):
        vt.fit_vi(pair.model, "normal", torch.ones(3), **{**settings, "checkpoint": tmp_path / "new.ckpt"})
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.ckpt"]


def test_resumed_fit_validates_once_and_reports_nan_with_partial_result(tmp_path):
    """Interrupted at step 30, resumed: validation stays off after set-up (as in a fresh fit after step 0),
    and a NaN at a later step is a NumericalError carrying the last good parameters."""
    path = tmp_path / "fit.ckpt"
    calls, validating = {"n": 0, "stop": 40, "nan": None}, []

    def model(y):
        calls["n"] += 1
        validating.append(pyro.infer.util.is_validation_enabled())
        if calls["n"] == calls["stop"]:
            raise KeyboardInterrupt
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        if calls["nan"] is not None and calls["n"] >= calls["nan"]:
            mu = mu * float("nan")
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    # init=False: the model calls are counted, and a Laplace start's search for the mode would add to them
    settings = dict(steps=200, checkpoint=path, checkpoint_every=10, progress=False, jit=False, init=False)
    with pytest.raises(KeyboardInterrupt):
        vt.fit_vi(model, "normal", torch.ones(3), **settings)
    saved_steps = len(torch.load(path, weights_only=True)["losses"])
    assert saved_steps > 0
    calls.update(n=0, stop=None)
    calls["nan"] = 20  # set-up traces, then about 15 steps, then NaN
    validating.clear()
    with pytest.raises(vt.NumericalError) as info:
        vt.fit_vi(model, "normal", torch.ones(3), **settings)
    assert info.value.step > saved_steps and info.value.partial_result is not None
    last_validated = max(i for i, on in enumerate(validating) if on)  # the set-up traces validate the model
    # every training step after resuming ran without validation
    assert len(validating) - last_validated - 1 >= info.value.step - saved_steps
