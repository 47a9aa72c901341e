"""Complete ArviZ InferenceData for VI and NUTS: posterior, log_likelihood, observed_data, posterior_predictive
and NUTS's per-draw sample_stats, checked by numbers (and by ArviZ's own LOO, WAIC, compare and plots)."""

import random
import warnings

import arviz as az
import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit.inference_data import predictive_groups
from vi_toolkit.problem import Problem

N = 30
TRUE_BETA = torch.tensor([1.0, -0.5])


def regression(x, y=None):
    """A small linear regression with a data plate; broadcasts over draws."""
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal((x * beta.unsqueeze(-2)).sum(-1), sigma.unsqueeze(-1)), obs=y)


def regression_matmul(x, y=None):
    """The same model written with ``x @ beta``: does not broadcast over draws."""
    beta = pyro.sample("beta", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(N, 2, generator=g)
    y = x @ TRUE_BETA + 0.3 * torch.randn(N, generator=g)
    return x, y


@pytest.fixture(scope="module")
def vi_fit(data):
    return vt.fit_vi(regression, "mvn", *data, steps=1500, lr=0.02, progress=False, seed=0)


@pytest.fixture(scope="module")
def nuts(data):
    return vt.run_mcmc(regression, *data, draws=200, warmup=200, chains=2, seed=0, progress=False)


@pytest.fixture(scope="module")
def vi_idata(vi_fit):
    return vi_fit.to_inference_data(800, seed=0)


@pytest.fixture(scope="module")
def nuts_idata(nuts):
    return nuts.to_inference_data()


def _log_lik(x, y, beta, sigma):
    """log p(y | beta, sigma) summed over points, computed independently of the toolkit."""
    beta, sigma = torch.as_tensor(beta, dtype=torch.float64), torch.as_tensor(sigma, dtype=torch.float64)
    return float(torch.distributions.Normal(x.double() @ beta, sigma).log_prob(y.double()).sum())


@pytest.mark.parametrize("which", ["vi", "nuts"])
def test_groups_shapes_and_pointwise_log_likelihood(which, data, vi_idata, nuts_idata):
    x, y = data
    idata = vi_idata if which == "vi" else nuts_idata
    chains, draws = (4, 200) if which == "vi" else (2, 200)  # VI: 800 independent draws as 4 chains of 200
    for group in ("posterior", "log_likelihood", "observed_data", "posterior_predictive"):
        assert group in idata.groups()
    assert idata.posterior["beta"].shape == (chains, draws, 2)
    assert idata.log_likelihood["y"].shape == (chains, draws, N)
    assert idata.posterior_predictive["y"].shape == (chains, draws, N)
    np.testing.assert_array_equal(idata.observed_data["y"].values, y.numpy())
    # the same dimension names in the three groups of an observed site (plot_ppc and loo rely on them)
    assert idata.log_likelihood["y"].dims[2:] == idata.posterior_predictive["y"].dims[2:] == idata.observed_data["y"].dims
    for c, d in [(0, 0), (chains - 1, draws - 1), (1, 17)]:
        beta = idata.posterior["beta"].values[c, d]
        sigma = idata.posterior["sigma"].values[c, d]
        pointwise = idata.log_likelihood["y"].values[c, d]
        assert pointwise.sum() == pytest.approx(_log_lik(x, y, beta, sigma), rel=1e-5, abs=1e-4)
        expected = torch.distributions.Normal(x.double() @ torch.as_tensor(beta).double(), float(sigma))
        np.testing.assert_allclose(pointwise, expected.log_prob(y.double()).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("which", ["vi", "nuts"])
def test_posterior_predictive_replicates_follow_the_model_at_each_draw(which, data, vi_idata, nuts_idata):
    x, _ = data
    idata = vi_idata if which == "vi" else nuts_idata
    beta = idata.posterior["beta"].values.reshape(-1, 2)
    sigma = idata.posterior["sigma"].values.reshape(-1)
    rep = idata.posterior_predictive["y"].values.reshape(-1, N)
    # standardized residuals of the replicates about their own draw's mean are N(0, 1)
    z = (rep - beta @ x.numpy().T) / sigma[:, None]
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=0.03)
    assert not np.allclose(rep[0], rep[1])  # one fresh replicate per draw


def test_nuts_sample_stats_per_draw(nuts, nuts_idata, data):
    x, y = data
    stats = nuts_idata.sample_stats
    for name in ("lp", "energy", "tree_depth", "step_size", "acceptance_rate", "diverging"):
        assert stats[name].shape == (2, 200), name
    acc = stats["acceptance_rate"].values
    assert ((acc >= 0) & (acc <= 1)).all() and 0.6 < acc.mean() < 0.99  # adapted towards target_accept=0.8
    assert (stats["tree_depth"].values >= 1).all() and stats["tree_depth"].dtype.kind == "i"
    step = stats["step_size"].values
    assert (step > 0).all() and (step == step[:, :1]).all()  # adaptation is over: one step size per chain
    assert stats["diverging"].values.sum() == nuts.divergences
    # lp is the log density in NUTS's unconstrained space: log p(y, beta, sigma) + log sigma (sigma = exp(u))
    beta, sigma = nuts.chains["beta"], nuts.chains["sigma"]
    for c, d in [(0, 0), (1, 150)]:
        b, s = torch.as_tensor(beta[c, d]).double(), torch.as_tensor(sigma[c, d]).double()
        joint = (_log_lik(x, y, b, s) + float(torch.distributions.Normal(0.0, 1.0).log_prob(b).sum())
                 + float(torch.distributions.HalfNormal(1.0).log_prob(s)) + float(torch.log(s)))
        assert stats["lp"].values[c, d] == pytest.approx(joint, rel=1e-5, abs=1e-4)
    # energy_t = U(z_{t-1}) + K(r_t) >= U(z_{t-1}) = -lp_{t-1}, with equality only for zero momentum
    energy, lp = stats["energy"].values, stats["lp"].values
    assert (energy[:, 1:] > -lp[:, :-1]).all()
    assert (az.bfmi(nuts_idata) > 0.3).all()


def test_loo_waic_and_compare_agree_between_nuts_and_full_rank_vi(vi_idata, nuts_idata):
    loo_nuts, loo_vi = az.loo(nuts_idata), az.loo(vi_idata)
    waic_nuts = az.waic(nuts_idata)
    # 3 parameters: p_loo about 3; elpd_loo about N * log density of N(0, 0.3) residuals, ~ -10
    assert 1.5 < loo_nuts.p_loo < 5 and 1.5 < loo_vi.p_loo < 5
    assert -20 < loo_nuts.elpd_loo < 0
    assert loo_vi.elpd_loo == pytest.approx(loo_nuts.elpd_loo, abs=2 * loo_nuts.se)
    assert waic_nuts.elpd_waic == pytest.approx(loo_nuts.elpd_loo, abs=0.5)
    table = az.compare({"nuts": nuts_idata, "vi": vi_idata})
    assert set(table.index) == {"nuts", "vi"}
    assert table["elpd_diff"].iloc[1] < 3 * max(table["dse"].iloc[1], 0.1)  # no real difference between them


def test_plot_ppc_and_plot_energy(vi_idata, nuts_idata):
    import matplotlib.pyplot as plt

    try:
        axes = az.plot_ppc(vi_idata, num_pp_samples=20, random_seed=0, show=False)
        assert np.asarray(axes).size >= 1
        axes = az.plot_ppc(nuts_idata, num_pp_samples=20, random_seed=0, show=False)
        assert np.asarray(axes).size >= 1
        ax = az.plot_energy(nuts_idata, show=False)
        assert "BFMI" in " ".join(t.get_text() for t in ax.get_legend().get_texts())
    finally:
        plt.close("all")


def test_predictive_groups_are_seeded_and_leave_the_callers_streams_alone(vi_fit):
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    a = vi_fit.to_inference_data(40, seed=3)
    b = vi_fit.to_inference_data(40, seed=3)
    c = vi_fit.to_inference_data(40, seed=4)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert (np.random.get_state()[1] == before[1]).all() and random.getstate() == before[2]
    np.testing.assert_array_equal(a.posterior_predictive["y"], b.posterior_predictive["y"])
    assert not np.allclose(a.posterior_predictive["y"], c.posterior_predictive["y"])
    # the posterior is the one of draws(n, seed)
    np.testing.assert_array_equal(a.posterior["beta"].values.reshape(-1, 2), vi_fit.draws(40, seed=3)["beta"])


def test_a_model_that_does_not_broadcast_runs_per_draw(data, vi_idata):
    x, y = data
    problem = Problem.of(regression_matmul, x, y)
    assert not problem.broadcasts
    posterior = {name: vi_idata.posterior[name].values[:, :25] for name in ("beta", "sigma")}
    with problem.isolated(0):
        looped = predictive_groups(problem, posterior)
    broadcasting = Problem.of(regression, x, y)
    with broadcasting.isolated(0):
        vectorized = predictive_groups(broadcasting, posterior)
    np.testing.assert_allclose(looped["log_likelihood"]["y"], vectorized["log_likelihood"]["y"], rtol=1e-5, atol=1e-5)
    assert looped["posterior_predictive"]["y"].shape == (4, 25, N)
    fit = vt.fit_vi(regression_matmul, "normal", x, y, steps=300, lr=0.05, progress=False, seed=0)
    idata = fit.to_inference_data(40, seed=0)
    b, s = idata.posterior["beta"].values[2, 3], idata.posterior["sigma"].values[2, 3]
    assert idata.log_likelihood["y"].values[2, 3].sum() == pytest.approx(_log_lik(x, y, b, s), rel=1e-5, abs=1e-4)


def test_a_subset_of_nuts_draws_keeps_its_stats_with_it(nuts):
    idata = nuts.to_inference_data(50, seed=1)
    assert idata.posterior["sigma"].shape == (1, 50)
    assert idata.sample_stats["lp"].shape == (1, 50)
    assert idata.log_likelihood["y"].shape == (1, 50, N)
    full = nuts.to_inference_data()
    lp = full.sample_stats["lp"].values.reshape(-1)
    sigma = full.posterior["sigma"].values.reshape(-1)
    for s, l in zip(idata.posterior["sigma"].values[0], idata.sample_stats["lp"].values[0]):
        assert l == lp[np.flatnonzero(sigma == s)[0]]


def test_a_deterministic_site_in_a_plate_is_posterior_not_data():
    """Non-centred eight schools written the usual way, ``theta = pyro.deterministic(...)`` inside the plate:
    theta goes to the posterior group (mu + tau * theta_trans draw by draw), and log_likelihood,
    posterior_predictive and observed_data hold y alone, with its exact pointwise log-likelihood."""
    y = torch.tensor([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
    sigma = torch.tensor([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])

    def schools(y, sigma):
        mu = pyro.sample("mu", dist.Normal(0.0, 5.0))
        tau = pyro.sample("tau", dist.HalfCauchy(5.0))
        with pyro.plate("schools", len(y)):
            theta_trans = pyro.sample("theta_trans", dist.Normal(0.0, 1.0))
            theta = pyro.deterministic("theta", mu + tau * theta_trans)
            pyro.sample("y", dist.Normal(theta, sigma), obs=y)

    fit = vt.fit_vi(schools, "normal", y, sigma, steps=50, progress=False, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        idata = fit.to_inference_data(30, seed=0)
    post = idata.posterior
    np.testing.assert_allclose(post["theta"], post["mu"] + post["tau"] * post["theta_trans"], rtol=1e-5, atol=1e-4)
    for group in ("log_likelihood", "posterior_predictive", "observed_data"):
        assert list(idata[group].data_vars) == ["y"]
    exact = dist.Normal(torch.as_tensor(post["theta"].values), sigma).log_prob(y).numpy()
    np.testing.assert_allclose(idata.log_likelihood["y"].values, exact, rtol=1e-5, atol=1e-5)
