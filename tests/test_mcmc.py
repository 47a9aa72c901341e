"""run_mcmc: NUTS on the normal-mean pair against the exact posterior, and the shapes of its outputs."""

import math

import numpy as np


def test_nuts_matches_exact_posterior(normal_mean, nm_mcmc):
    _, _, exact = normal_mean
    m, s = float(exact.mean), float(exact.stddev)
    row = nm_mcmc.summary().loc["mu"]
    draws = nm_mcmc.draws()["mu"]
    # "mean within 1% of the sd" cannot be checked with ~1400 effective draws: the Monte Carlo standard error of
    # the mean is sd/sqrt(ess_bulk) ~ 2.7% of sd. So: within 4 MC standard errors (a false alarm rate ~6e-5).
    mcse = s / math.sqrt(row["ess_bulk"])
    assert abs(float(draws.mean()) - m) < 4 * mcse
    # sd: the relative MC error of a sample sd is ~1/sqrt(2 ess) ~ 2%, so 5% is ~2.5 MC errors
    assert abs(float(draws.std(ddof=1)) / s - 1) < 0.05
    assert abs(row["sd"] / s - 1) < 0.05  # the (rounded) summary agrees
    assert row["r_hat"] < 1.01
    assert nm_mcmc.divergences == 0


def test_mcmc_shapes(nm_mcmc):
    draws = nm_mcmc.draws()
    assert set(draws) == {"mu"}
    assert draws["mu"].shape == (2 * 2000,)
    np.testing.assert_array_equal(draws["mu"], nm_mcmc.chains["mu"].reshape(-1))
    idata = nm_mcmc.to_inference_data()
    assert dict(idata.posterior.sizes) == {"chain": 2, "draw": 2000}
    assert set(idata.posterior.data_vars) == {"mu"}
    assert idata.sample_stats["diverging"].shape == (2, 2000)
