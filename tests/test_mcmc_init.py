"""run_mcmc(init=vi_result) and parallel chains: exactness against the conjugate posterior, same draws in
parallel as in sequence, typed errors."""

import math
import threading

import numpy as np
import pytest
import torch

from vi_toolkit import models
import vi_toolkit as vt
from vi_toolkit.mcmc import start_from


@pytest.fixture(scope="module")
def regression():
    pair = models.get("linear-regression", prior_scale=1.0, noise_scale=1.0)
    X, y = pair.simulate(seed=0, n=40, d=3)
    return pair, (X, y), pair.posterior(X, y)["beta"]


@pytest.fixture(scope="module")
def vi_fit(regression):
    pair, args, _ = regression
    return vt.fit_vi(pair.model, "mvn", *args, steps=2000, progress=False, seed=0)


def test_start_from_vi_uses_the_vi_covariance(regression, vi_fit):
    """The full-rank fit of a Gaussian posterior is exact, so the dense inverse mass matrix is the posterior
    covariance: 4000 draws estimate variances to ~2.2% (sqrt(2/4000)); 10% leaves room for the fit's own error."""
    pair, args, exact = regression
    start = start_from(vi_fit, pair.model, args, {}, chains=3, seed=0)
    assert start.sites == ("beta",) and start.dense and len(start.values) == 3
    scale = exact.covariance_matrix.diagonal().sqrt()
    np.testing.assert_allclose(start.inverse_mass.diagonal().numpy(), exact.covariance_matrix.diagonal().numpy(), rtol=0.10)
    corr = start.inverse_mass / torch.outer(scale, scale)
    np.testing.assert_allclose(corr.numpy(), (exact.covariance_matrix / torch.outer(scale, scale)).numpy(), atol=0.06)
    diag = start_from(vi_fit, pair.model, args, {}, chains=1, seed=0, mass="diag")
    np.testing.assert_allclose(diag.inverse_mass.numpy(), start.inverse_mass.diagonal().numpy(), rtol=1e-6)


def test_nuts_from_vi_with_short_warmup_is_exact(regression, vi_fit):
    """50 warm-up steps from the VI start: the mean is within 4 MC standard errors (sd / sqrt(ess)) of the
    exact posterior mean, the sd within 10% (relative MC error of an sd ~ 1/sqrt(2 ess) ~ 3% at ess ~ 500)."""
    pair, args, exact = regression
    result = vt.run_mcmc(
        pair.model, *args, draws=400, warmup=50, chains=2, seed=0, progress=False, init=vi_fit, parallel=False
    )
    assert result.info["init"] == {"method": "vi", "guide": "mvn", "mass": "dense"}
    summary = result.summary()
    draws = result.draws()["beta"]
    for j in range(3):
        m, s = float(exact.mean[j]), float(exact.stddev[j])
        mcse = s / math.sqrt(summary.ess_bulk.iloc[j])
        assert abs(draws[:, j].mean() - m) < 4 * mcse
        assert abs(draws[:, j].std(ddof=1) / s - 1) < 0.10
    assert result.divergences == 0


def test_parallel_chains_equal_sequential_ones(regression, vi_fit):
    pair, args, _ = regression
    options = dict(draws=60, warmup=30, chains=2, seed=3, progress=False, init=vi_fit, jit=False)
    parallel = vt.run_mcmc(pair.model, *args, **options)
    sequential = vt.run_mcmc(pair.model, *args, parallel=False, **options)
    assert parallel.info["parallel"] is True and sequential.info["parallel"] is False
    np.testing.assert_array_equal(parallel.chains["beta"], sequential.chains["beta"])
    # a lambda travels by value (cloudpickle): it runs in parallel too, with the same draws
    closure = vt.run_mcmc(lambda X, y: pair.model(X, y), *args, **options)
    assert closure.info["parallel"] is True
    np.testing.assert_array_equal(closure.chains["beta"], sequential.chains["beta"])
    # a model holding a lock does not pickle: it runs sequentially, says why, with the same draws
    lock = threading.Lock()

    def locked(X, y):
        with lock:
            return pair.model(X, y)

    unpicklable = vt.run_mcmc(locked, *args, **options)
    assert unpicklable.info["parallel"] is False and "pickle" in unpicklable.info["sequential_because"]
    np.testing.assert_array_equal(unpicklable.chains["beta"], sequential.chains["beta"])


def test_bad_init_gives_config_error(regression, vi_fit):
    pair, args, _ = regression
    with pytest.raises(vt.ConfigError):
        vt.run_mcmc(pair.model, *args, draws=10, warmup=10, init="mvn", progress=False)  # a name, not a fit
    with pytest.raises(vt.ConfigError):
        vt.run_mcmc(pair.model, *args, draws=10, warmup=10, init=vi_fit, init_mass="full", progress=False)
