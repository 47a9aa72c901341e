"""The engine as a unit of work: init/step reproduce fit_vi exactly, the caller's global state is untouched,
fits in two threads do not corrupt each other, autoguides on wrapped models work as in plain Pyro."""

import random
import threading

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoNormal

import vi_toolkit as vt
from vi_toolkit import models

from fitted import mean_field


def regression(x, y):
    """A regression written the common way: x @ beta, an unstandardized predictor, a scalar deterministic."""
    beta = pyro.sample("beta", dist.Normal(torch.zeros(2), 10.0).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
    pyro.deterministic("sigma2", sigma**2)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)


def regression_data(n=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.ones(n), 100 + 10 * torch.randn(n, generator=g)], 1)
    y = x @ torch.tensor([1.0, 0.05]) + 0.5 * torch.randn(n, generator=g)
    return x, y


@pytest.mark.parametrize("case", ["normal-mean", "x @ beta"])
def test_user_loop_over_init_and_step_reproduces_fit_vi_bit_for_bit(case):
    if case == "normal-mean":
        pair = models.get("normal-mean", noise_scale=0.5)
        model, guide, data, settings = pair.model, "normal", (torch.tensor([10.0]),), {}
    else:
        model, guide, data, settings = regression, "mvn", regression_data(), {"steps": 300, "num_particles": 4}
    fit = vt.fit_vi(model, guide, *data, seed=3, progress=False, **settings)

    state = vt.svi.init(model, guide, *data, seed=3, **settings)
    seen = []
    while not state.done:
        loss = vt.svi.step(state)
        if state.steps_run % 100 == 0:
            seen.append(loss)  # a callback every 100 steps
    mine = state.result()

    np.testing.assert_array_equal(mine.losses, fit.losses)
    assert seen == list(fit.losses[99::100])
    assert mine.params.keys() == fit.params.keys()
    for name, value in fit.params.items():
        assert torch.equal(mine.params[name], value), name
    for name, value in fit.draws(100, seed=1).items():
        np.testing.assert_array_equal(mine.draws(100, seed=1)[name], value)
    with pytest.raises(vt.ConfigError, match="finished"):
        vt.svi.step(state)


def _global_streams():
    return torch.rand(3), np.random.rand(3), random.random()


def test_fits_and_draws_leave_the_callers_random_streams_and_threads_alone():
    pair = models.get("normal-mean")
    (y,) = pair.simulate(seed=0, n=20)
    fit = vt.fit_vi(pair.model, "normal", y, steps=50, progress=False)
    threads = torch.get_num_threads()

    def calls():
        vt.fit_vi(pair.model, "normal", y, steps=30, progress=False, seed=5)
        state = vt.svi.init(regression, "mvn", *regression_data(), steps=10, seed=2)
        vt.svi.step(state)
        fit.draws(50, seed=4)
        fit.elbo(50, seed=4)
        fit.log_weights(50, seed=4)
        fit.to_inference_data(40, seed=4)

    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    expected = _global_streams()
    torch.manual_seed(11), np.random.seed(11), random.seed(11)
    calls()
    got = _global_streams()
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    assert torch.get_num_threads() == threads


def test_small_models_step_on_one_thread_and_the_caller_keeps_its_own():
    seen = []

    def model(y):
        seen.append(torch.get_num_threads())
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        vt.fit_vi(model, "normal", torch.randn(10), steps=20, jit=False, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert set(seen[-20:]) == {1}


def test_fits_in_two_threads_equal_their_serial_runs():
    """Pyro's parameter store and handler stack are process-wide: the engine serializes steps, each on its own
    parameters and random stream, so two fits in two threads interleave and each equals its serial run."""
    pair = models.get("normal-mean")
    ys = [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])]

    def fit(i, seed):
        return vt.fit_vi(pair.model, "normal", ys[i], steps=40, lr=0.2, jit=False, progress=False, seed=seed)

    for trial in range(20):
        results, errors = [None, None], []

        def work(i):
            try:
                results[i] = fit(i, trial)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for i in range(2):
            serial = fit(i, trial)
            np.testing.assert_array_equal(results[i].losses, serial.losses)
            for name, value in serial.params.items():
                assert torch.equal(results[i].params[name], value), (trial, i, name)
    after = vt.fit_vi(pair.model, "normal", ys[1], steps=300, lr=0.2, progress=False)  # still fits correctly
    assert abs(float(mean_field(after, "mu")[0]) - float(pair.posterior(ys[1])["mu"].mean)) < 0.1


def test_autoguide_on_a_wrapped_model_with_enumeration_works_as_in_pyro():
    """Pyro's enumeration pattern: AutoNormal(poutine.block(model, hide=["z"])) with TraceEnum_ELBO."""

    def mixture(y):
        locs = pyro.sample("locs", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
        with pyro.plate("data", len(y)):
            z = pyro.sample("z", dist.Categorical(torch.tensor([0.5, 0.5])), infer={"enumerate": "parallel"})
            pyro.sample("y", dist.Normal(locs[z], 1.0), obs=y)

    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.randn(100, generator=g) - 3, torch.randn(100, generator=g) + 3])
    guide = AutoNormal(poutine.block(mixture, hide=["z"]))
    fit = vt.fit_vi(mixture, guide, y, objective="elbo-enum", lr=0.05, progress=False)
    locs = torch.sort(fit.params["AutoNormal.locs.locs"]).values
    # each component mean is its cluster's sample mean to within ~3 standard errors (1/sqrt(100) = 0.1)
    assert torch.allclose(locs, torch.tensor([-3.0, 3.0]), atol=0.3), locs
    assert guide.model is not None  # the user's guide is left as it was


def test_settings_of_other_libraries_get_a_typed_error_naming_the_equivalent():
    pair = models.get("normal-mean")
    with pytest.raises(vt.ConfigError, match="steps="):
        vt.fit_vi(pair.model, "normal", torch.ones(3), num_steps=100, progress=False)
    with pytest.raises(vt.ConfigError, match="seed must be"):
        vt.fit_vi(pair.model, "normal", torch.ones(3), seed=-1, progress=False)


def test_a_model_that_raises_mid_fit_names_the_step_and_keeps_the_last_parameters():
    calls = {"n": 0}

    def flaky(y):
        calls["n"] += 1
        if calls["n"] > 30:
            raise RuntimeError("the data server went away")
        mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    with pytest.raises(vt.ModelGuideError, match="SVI step") as info:
        # init=False: the model's calls are counted, and a Laplace start's search for the mode would add to them
        vt.fit_vi(flaky, "normal", torch.ones(5), jit=False, progress=False, init=False)
    assert info.value.step > 0 and info.value.partial_result is not None
    assert len(info.value.partial_result.losses) == info.value.step
