"""VSBC (Yao et al. 2018, section 4) on a conjugate 2-D regression with strongly correlated predictors.

beta ~ N(0, I_2), y ~ N(X beta, 1) with corr(x_1, x_2) about 0.98: the exact posterior N(m, S) has a strongly
negative correlation. Mean-field VI's optimum (reverse KL) is q = N(m, diag(1 / Lambda_jj)), Lambda = S^-1: the
right centre, far too narrow. Fit callables that return exact draws of either make the known answers: the exact
posterior is calibrated (p ~ U(0, 1)); mean-field VI gives symmetric but U-shaped p (var > 1/12), which the
paper's symmetry test misses and the uniformity test flags.
"""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit import models
from vi_toolkit.errors import ConfigError

PAIR = models.get("linear-regression")
_g = torch.Generator().manual_seed(0)
_x1 = torch.randn(20, generator=_g)
X = torch.stack([_x1, _x1 + 0.2 * torch.randn(20, generator=_g)], dim=1)
Y = torch.zeros(20)  # the shape of the data to simulate (values unused)


def exact(model, X, y, seed):
    """Exact posterior draws (the fit runs on a private stream seeded by vsbc)."""
    return {"beta": PAIR.posterior(X, y)["beta"].sample((1000,))}


def mean_field(model, X, y, seed):
    """Draws of the mean-field reverse-KL optimum N(m, diag(1 / Lambda_jj))."""
    posterior = PAIR.posterior(X, y)["beta"]
    sd = torch.linalg.inv(posterior.covariance_matrix).diagonal().rsqrt()
    return {"beta": posterior.mean + sd * torch.randn(1000, 2)}


@pytest.fixture(scope="module")
def runs():
    return {fit.__name__: vt.vsbc(PAIR.model, X, Y, fit=fit, n_sims=300, seed=0, progress=False)
            for fit in (exact, mean_field)}


def test_the_design_is_strongly_correlated():
    posterior = PAIR.posterior(X, Y)["beta"]
    cov = posterior.covariance_matrix
    corr = float(cov[0, 1] / (cov[0, 0] * cov[1, 1]).sqrt())
    mean_field_var = 1 / torch.linalg.inv(cov).diagonal()
    assert corr < -0.9 and bool((mean_field_var / cov.diagonal() < 0.2).all())


def test_exact_posterior_is_calibrated(runs):
    """p ~ U(0, 1): neither test rejects at the 1% level (measured p-values: symmetry 0.25 and 0.034,
    uniformity 0.33 and 0.093), mean p within 3 standard errors of 0.5, var(p) within 20% of 1/12 (its sd at
    300 simulations is about 6%)."""
    table = runs["exact"].table
    assert list(table["parameter"]) == ["beta[0]", "beta[1]"]
    assert (table["verdict"] == "calibrated").all()
    assert ((table["mean_p"] - 0.5).abs() < 3 * table["mean_p_se"]).all()
    assert ((table["var_p"] * 12 - 1).abs() < 0.2).all()


def test_mean_field_vi_is_symmetric_but_flagged_as_under_dispersed(runs):
    """The paper's symmetry test passes (the centre is exact), the uniformity test rejects (p piles at 0 and 1:
    var(p) far above 1/12, measured 0.18; uniformity p-values 1e-22 and 8e-19, symmetry 0.12 and 0.042), and the
    verdict names the under-dispersion."""
    table = runs["mean_field"].table
    assert table["symmetric"].all() and not table["uniform"].any()
    assert (table["uniform_pvalue"] < 1e-6).all() and (table["var_p"] > 0.15).all()
    assert table["verdict"].str.contains("under-dispersed").all()


def test_default_refit_with_fit_vi_matches_the_exact_posterior_where_mean_field_is_exact():
    """The default refit (fit_vi, AutoNormal) with orthogonal predictors, where the posterior factorizes and
    mean-field VI is exact: same seeds, hence the same simulated data, as the exact fit; p from 1000 draws has
    sd at most 0.016 each, so differences below 0.08 are within 3.5 sd (measured max 0.016)."""
    X_orth = torch.linalg.qr(torch.randn(20, 2, generator=torch.Generator().manual_seed(1)))[0] * 2.0
    fitted = vt.vsbc(PAIR.model, X_orth, Y, fit_settings=dict(steps=300, lr=0.05), n_sims=2, seed=3,
                     progress=False)
    optimum = vt.vsbc(PAIR.model, X_orth, Y, fit=exact, n_sims=2, seed=3, progress=False)
    assert np.allclose(fitted.truth, optimum.truth)
    assert np.abs(fitted.p.to_numpy() - optimum.p.to_numpy()).max() < 0.08


def test_seeds_are_private_and_reproducible(runs):
    """Simulation s runs on the s-th seed spawned from ``seed``: a shorter run repeats the first simulations
    exactly; another seed gives other simulations; the caller's stream is untouched."""
    state, np_state = torch.get_rng_state(), np.random.get_state()
    again = vt.vsbc(PAIR.model, X, Y, fit=exact, n_sims=20, seed=0, progress=False)
    assert torch.equal(torch.get_rng_state(), state) and np.array_equal(np.random.get_state()[1], np_state[1])
    assert again.p.equals(runs["exact"].p.iloc[:20]) and again.truth.equals(runs["exact"].truth.iloc[:20])
    other = vt.vsbc(PAIR.model, X, Y, fit=exact, n_sims=20, seed=1, progress=False)
    assert not np.allclose(other.truth.to_numpy(), again.truth.to_numpy())


def _normal_mean(y, copy):
    """mu ~ N(0, 1), y ~ N(mu, 1) i.i.d.; ``copy``: the observed value is a new tensor (obs=y + 0), not the
    argument itself."""
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y + 0.0 if copy else y)


def _exact_normal_mean(model, y, copy, seed):
    """Exact posterior N(sum y / (n + 1), 1 / sqrt(n + 1)), reading y from the model's own trace (the
    simulated values, whether they came as the argument or by conditioning)."""
    observed = pyro.poutine.trace(model).get_trace(y, copy).nodes["y"]["value"]
    n = len(observed)
    return {"mu": dist.Normal(observed.sum() / (n + 1), (n + 1) ** -0.5).sample((1000,))}


def test_observed_sites_that_are_not_an_argument_are_conditioned():
    """obs=y + 0 is not the argument y: vsbc conditions the model on the simulated values instead of replacing
    the argument, and the simulations and p values equal those of obs=y (the same seeds draw the same data)."""
    y = torch.zeros(5)
    direct = vt.vsbc(_normal_mean, y, False, fit=_exact_normal_mean, n_sims=20, seed=2, progress=False)
    conditioned = vt.vsbc(_normal_mean, y, True, fit=_exact_normal_mean, n_sims=20, seed=2, progress=False)
    assert direct.truth.equals(conditioned.truth) and direct.p.equals(conditioned.p)
    assert direct.p["mu"].nunique() > 15  # the data varied between simulations


def test_figure_has_one_labelled_histogram_per_parameter(runs):
    fig = runs["mean_field"].figure()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert all(ax.get_xlabel().startswith("p = ") and ax.get_ylabel() == "simulations" for ax in axes)
    assert "under-dispersed" in axes[0].get_title() and "VSBC" in fig._suptitle.get_text()
    assert sum(p.get_height() for p in axes[0].patches) == 300


def test_settings_errors():
    with pytest.raises(ConfigError, match="not both"):
        vt.vsbc(PAIR.model, X, Y, fit=exact, fit_settings={"steps": 10})
    with pytest.raises(ConfigError, match="seed"):
        vt.vsbc(PAIR.model, X, Y, fit_settings={"seed": 1})
