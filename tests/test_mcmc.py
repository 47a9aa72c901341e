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


def test_mcmc_draws_carry_deterministic_sites_like_vi_draws():
    """Eight schools records theta = mu + tau * theta_trans with pyro.deterministic: NUTS draws carry it too,
    computed at each draw, so VI and MCMC results have the same sites."""
    import models
    import vi_toolkit as vt

    pair = models.get("eight-schools")
    y, sigma = pair.check_data([28.0, 8, -3, 7, -1, 1, 18, 12], [15.0, 10, 16, 11, 9, 11, 10, 18])
    draws = vt.run_mcmc(pair.model, y, sigma, draws=50, warmup=50, chains=1, progress=False).draws()
    assert draws["theta"].shape == (50, 8)
    np.testing.assert_allclose(draws["theta"], draws["mu"][:, None] + draws["tau"][:, None] * draws["theta_trans"],
                               rtol=1e-5, atol=1e-5)
    vi = vt.fit_vi(pair.model, pair.guide, y, sigma, steps=10, progress=False)
    assert set(vi.draws(10)) == set(draws)
