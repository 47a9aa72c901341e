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
    from vi_toolkit import models
    import vi_toolkit as vt

    pair = models.get("eight-schools")
    y, sigma = pair.check_data([28.0, 8, -3, 7, -1, 1, 18, 12], [15.0, 10, 16, 11, 9, 11, 10, 18])
    draws = vt.run_mcmc(pair.model, y, sigma, draws=50, warmup=50, chains=1, progress=False).draws()
    assert draws["theta"].shape == (50, 8)
    np.testing.assert_allclose(draws["theta"], draws["mu"][:, None] + draws["tau"][:, None] * draws["theta_trans"],
                               rtol=1e-5, atol=1e-5)
    vi = vt.fit_vi(pair.model, pair.guide, y, sigma, steps=10, progress=False)
    assert set(vi.draws(10)) == set(draws)


def test_scalar_deterministic_site_has_the_shape_of_vi_draws():
    """Predictive returns a scalar pyro.deterministic site as (n, 1); MCMC draws give it as (n,), like VI draws."""
    import pyro
    import pyro.distributions as dist
    import torch

    import vi_toolkit as vt

    def model(y):
        sigma = pyro.sample("sigma", dist.LogNormal(0.0, 1.0))
        pyro.deterministic("sigma2", sigma**2)
        with pyro.plate("data", len(y)):
            pyro.sample("y", dist.Normal(0.0, sigma), obs=y)

    y = torch.tensor([0.3, -1.2, 0.8, 2.0])
    result = vt.run_mcmc(model, y, draws=40, warmup=40, chains=1, progress=False)
    draws = result.draws()
    assert draws["sigma"].shape == (40,) and draws["sigma2"].shape == (40,)
    np.testing.assert_allclose(draws["sigma2"], draws["sigma"] ** 2, rtol=1e-5)
    assert result.chains["sigma2"].shape == (1, 40)
    vi = vt.fit_vi(model, "normal", y, steps=10, progress=False)
    assert {name: value.shape for name, value in vi.draws(40).items()} == {n: v.shape for n, v in draws.items()}


def test_mcmc_result_implements_the_posterior_protocol(nm_mcmc):
    from vi_toolkit.posterior import Posterior

    assert isinstance(nm_mcmc, Posterior)
    assert nm_mcmc.info["method"] == "nuts" and nm_mcmc.losses is None and nm_mcmc.seconds > 0
    assert nm_mcmc.log_weights() is None and nm_mcmc.log_weights(10, seed=1) is None
    every = nm_mcmc.draws()["mu"]
    subset = nm_mcmc.draws(100, seed=1)["mu"]
    assert subset.shape == (100,) and np.isin(subset, every).all()
    np.testing.assert_array_equal(nm_mcmc.draws(100, seed=1)["mu"], subset)  # the seed fixes the subset
    assert not np.array_equal(nm_mcmc.draws(100, seed=2)["mu"], subset)
    assert nm_mcmc.draws(2 * len(every), seed=0)["mu"].shape == (2 * len(every),)  # beyond the stored: bootstrap
    idata = nm_mcmc.to_inference_data(50, seed=1)
    assert dict(idata.posterior.sizes) == {"chain": 1, "draw": 50}
    assert idata.sample_stats["diverging"].shape == (1, 50)
    np.testing.assert_array_equal(idata.posterior["mu"].values[0], nm_mcmc.draws(50, seed=1)["mu"])


def test_warmup_divergences_are_counted_apart_from_the_draws():
    """Neal's funnel (v ~ N(0, 3), x ~ N(0, exp(v / 2)), written as a user would) diverges where v is small:
    its warm-up, whose step size starts too large for the neck, has divergent transitions, which
    ``info["warmup_divergences"]`` counts apart from the draws' ``divergences``."""
    import pyro
    import pyro.distributions as dist

    import vi_toolkit as vt

    def funnel():
        v = pyro.sample("v", dist.Normal(0.0, 3.0))
        pyro.sample("x", dist.Normal(0.0, (v / 2).exp()).expand([5]).to_event(1))

    fit = vt.run_mcmc(funnel, draws=200, warmup=200, chains=1, seed=0, progress=False)
    assert fit.info["warmup_divergences"] > 0
    # with no warm-up every transition is a draw: whatever diverges is counted among the draws'
    assert vt.run_mcmc(funnel, draws=20, warmup=0, chains=1, seed=0, progress=False).info["warmup_divergences"] == 0
