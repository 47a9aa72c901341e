"""Every analysis on models written the way users write them: ``x @ beta`` likelihoods, Python loops over
the data, scalar ``pyro.deterministic`` sites, a latent read as a Python number. None of them broadcasts over
a particle dimension the way the vectorized engine would like, yet ``vt.bounds`` (with AIS),
``vt.fit_to_draws`` and ``VIResult.draws``/``log_weights`` must work on each and give the known answers: the
conjugate models below have a closed-form posterior and log evidence, computed here with torch.

Tolerances are Monte Carlo standard errors (each estimate's own ``se``, or the sampling sd of a moment of
n exact draws) times 4, so a correct implementation fails with probability well under 1e-3 per check."""

import math
import random

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit import iwae as per_point_iwae
from vi_toolkit.errors import ConfigError, DataError

PRIOR, NOISE = 10.0, 1.0  # prior sd of the coefficients and of mu; the known noise sd
FEW = dict(k=(1, 10, 100), batches=20)  # 2000 importance draws per call: ELBO se ~0.01-0.03 nats here
AIS = vt.AIS(particles=50, temperatures=50, leapfrog=3, draws=1000)  # q is close to p: a short path suffices


# models, as a user writes them ------------------------------------------------------------------------------------


def regression(x, y):
    """Known noise sd, ``x @ beta`` with an unstandardized predictor: conjugate."""
    beta = pyro.sample("beta", dist.Normal(torch.zeros(2), PRIOR).to_event(1))
    pyro.deterministic("intercept", beta[0])  # scalar deterministic site
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(x @ beta, NOISE), obs=y)


def regression_sigma(x, y):
    """The same with an unknown noise sd (log evidence by quadrature over sigma)."""
    beta = pyro.sample("beta", dist.Normal(torch.zeros(2), PRIOR).to_event(1))
    sigma = pyro.sample("sigma", dist.HalfNormal(5.0))
    pyro.deterministic("sigma2", sigma**2)  # scalar deterministic site
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(x @ beta, sigma), obs=y)


def loop_model(y):
    """A Python loop over the data, and a constant deterministic site (no particle dimension at all)."""
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR))
    pyro.deterministic("n_obs", torch.tensor(float(len(y))))
    for i in range(len(y)):
        pyro.sample(f"y_{i}", dist.Normal(mu, NOISE), obs=y[i])


def python_number_model(y):
    """Reads the latent as a Python number: runs neither in a particle plate nor under torch.func.vmap."""
    mu = pyro.sample("mu", dist.Normal(0.0, PRIOR))
    pyro.deterministic("mu_rounded", torch.tensor(round(float(mu), 3)))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(mu, NOISE), obs=y)


def local_model(x):
    """Only local latents, flattened with ``reshape`` (fails in a particle plate): per-data-point bounds."""
    with pyro.plate("data", len(x)):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z.reshape(len(x)), 1.0), obs=x)


def local_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x / 2, 1.0))  # the exact posterior is N(x/2, 1/2): q is too wide


# exact answers -----------------------------------------------------------------------------------------------------


def exact_regression(x, y, noise=NOISE):
    """Posterior N(m, S) of beta, S^-1 = X^T X / noise^2 + I / PRIOR^2, and log p(y) = log N(y; 0, noise^2 I +
    PRIOR^2 X X^T), in float64."""
    x, y = x.double(), y.double()
    cov = torch.linalg.inv(x.T @ x / noise**2 + torch.eye(2, dtype=torch.float64) / PRIOR**2)
    mean = cov @ x.T @ y / noise**2
    marginal = noise**2 * torch.eye(len(y), dtype=torch.float64) + PRIOR**2 * x @ x.T
    return mean, cov, float(dist.MultivariateNormal(torch.zeros_like(y), marginal).log_prob(y))


def exact_sigma_log_evidence(x, y):
    """log p(y) = log int HalfNormal(sigma; 5) N(y; 0, sigma^2 I + PRIOR^2 X X^T) dsigma, by the trapezoid rule
    in t = log sigma on [-4, 3] (the posterior of sigma sits near 1 with sd ~0.1: the grid step of 0.0035 in t
    resolves it, and the tails beyond the ends are below e^-100)."""
    x, y = x.double(), y.double()
    t = torch.linspace(-4.0, 3.0, 2001, dtype=torch.float64)
    sigma = t.exp()
    eye = torch.eye(len(y), dtype=torch.float64)
    marginal = sigma[:, None, None] ** 2 * eye + PRIOR**2 * x @ x.T
    log_f = dist.MultivariateNormal(torch.zeros_like(y), marginal).log_prob(y)
    log_f = log_f + dist.HalfNormal(torch.tensor(5.0, dtype=torch.float64)).log_prob(sigma) + t  # dsigma = e^t dt
    step = float(t[1] - t[0])
    weights = torch.full_like(t, step)
    weights[0] = weights[-1] = step / 2
    return float(torch.logsumexp(log_f + weights.log(), 0))


def exact_normal_mean(y):
    """Posterior N(m, s^2) of mu in loop_model and log p(y) = log N(y; 0, NOISE^2 I + PRIOR^2 1 1^T)."""
    y = y.double()
    precision = PRIOR**-2 + len(y) / NOISE**2
    marginal = NOISE**2 * torch.eye(len(y), dtype=torch.float64) + PRIOR**2
    return float(y.sum() / NOISE**2 / precision), precision**-0.5, float(
        dist.MultivariateNormal(torch.zeros_like(y), marginal).log_prob(y)
    )


def gaussian_kl(q_loc, q_cov, p_loc, p_cov):
    """KL(N(q_loc, q_cov) || N(p_loc, p_cov)) in float64."""
    q_loc, q_cov, p_loc, p_cov = (t.detach().double() for t in (q_loc, q_cov, p_loc, p_cov))
    precision = torch.linalg.inv(p_cov)
    diff = p_loc - q_loc
    return float(0.5 * ((precision @ q_cov).trace() + diff @ precision @ diff - len(q_loc)
                        + torch.logdet(p_cov) - torch.logdet(q_cov)))


def guide_moments(result):
    """(loc, covariance) of a fitted AutoMultivariateNormal, in its (here unconstrained = constrained) space."""
    with result.scope():
        q = result.guide.get_posterior()
        return q.loc.detach(), q.covariance_matrix.detach()


# data and fits -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data():
    """50 rows, an intercept column and a predictor with mean 5 and sd 2 (posterior correlation ~ -0.92)."""
    g = torch.Generator().manual_seed(0)
    x = torch.stack([torch.ones(50), 5 + 2 * torch.randn(50, generator=g)], 1)
    y = x @ torch.tensor([1.0, 2.0]) + NOISE * torch.randn(50, generator=g)
    return x, y


@pytest.fixture(scope="module")
def regression_fit(data):
    return vt.fit_vi(regression, "mvn", *data, steps=1000, lr=0.1, progress=False)


@pytest.fixture(scope="module")
def loop_data():
    return 3.0 + NOISE * torch.randn(10, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def loop_fit(loop_data):
    return vt.fit_vi(loop_model, "mvn", loop_data, steps=1000, lr=0.1, progress=False)


# x @ beta ------------------------------------------------------------------------------------------------------


def test_regression_bounds_sandwich_the_exact_evidence(data, regression_fit):
    """On ``x @ beta``: ELBO <= IWAE-10 <= IWAE-100 <= log p(y), the gap log p(y) - ELBO equals KL(q||p) in
    closed form (any q), and AIS from q lands on log p(y)."""
    mean, cov, log_z = exact_regression(*data)
    assert not regression_fit.problem.broadcasts and not regression_fit.vectorized  # the looped path
    b = vt.bounds(regression_fit, log_evidence=log_z, ais=AIS, **FEW)
    assert b.num_weights == 2000 and b.per == "joint"
    kl = gaussian_kl(*guide_moments(regression_fit), mean, cov)
    # the gap's se is the ELBO's (~0.01 here); + 0.005 for float32 log densities of order 100
    assert abs(b.gap.value - kl) < 4 * b.gap.se + 0.005
    for low, high in ((b.elbo, b.iwae[10]), (b.iwae[10], b.iwae[100])):
        assert low.value < high.value + 4 * math.hypot(low.se, high.se)
    for k, estimate in b.iwae.items():
        assert estimate.value < log_z + 4 * estimate.se, k
    # AIS (50 particles, 50 temperatures) from a q within ~0.2 nats of p: its se is 0.02-0.06 nats here, and
    # over seeds 0-5 it stayed within 0.07 nats of log p(y)
    assert abs(b.ais.value - log_z) < max(4 * b.ais.se, 0.1)


def test_regression_draws_and_log_weights(data, regression_fit):
    """Draws carry the scalar deterministic site (beta[0] of each draw); the mean log-weight is the ELBO,
    log p(y) - KL(q||p)."""
    mean, cov, log_z = exact_regression(*data)
    draws = regression_fit.draws(500, seed=1)
    assert draws["beta"].shape == (500, 2) and draws["intercept"].shape == (500,)
    np.testing.assert_array_equal(draws["intercept"], draws["beta"][:, 0])
    log_w = regression_fit.log_weights(4000, seed=2).double()
    assert log_w.shape == (4000,) and torch.isfinite(log_w).all()
    elbo = log_z - gaussian_kl(*guide_moments(regression_fit), mean, cov)
    assert abs(float(log_w.mean()) - elbo) < 4 * float(log_w.std()) / math.sqrt(4000) + 0.005
    assert regression_fit.elbo(1000, seed=3) < log_z + 1e-6 * abs(log_z)  # (float32 rounding of an exact fit)


def test_fit_to_draws_recovers_the_exact_posterior(data):
    """20,000 exact posterior draws: the full-rank fit's mean and covariance are the draws' moments, each
    within 4 standard errors of the exact ones (mean: sqrt(S_ii / n); covariance entry: sqrt((S_ii S_jj +
    S_ij^2) / n)). At q ~ p the bounds close on log p(y): KL from moments of 20,000 draws is ~1e-4 nats."""
    mean, cov, log_z = exact_regression(*data)
    n = 20_000
    g = torch.Generator().manual_seed(2)
    exact = mean + torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    result = vt.fit_to_draws("mvn", {"beta": exact}, *data, model=regression)
    assert isinstance(result, vt.VIResult) and result.info["objective"] == "fit-to-draws"
    assert result.info["guide"] == "mvn" and not result.vectorized
    loc, q_cov = guide_moments(result)
    sd = cov.diagonal().sqrt()
    assert ((loc.double() - mean).abs() < 4 * sd / math.sqrt(n)).all()
    cov_se = ((sd[:, None] * sd[None, :]) ** 2 + cov**2).sqrt() / math.sqrt(n)
    assert ((q_cov.double() - cov).abs() < 4 * cov_se).all()
    b = vt.bounds(result, k=(1, 100), batches=20, log_evidence=log_z, ais=False)
    assert abs(b.elbo.value - log_z) < 4 * b.elbo.se + 0.005
    assert abs(b.iwae[100].value - log_z) < 4 * b.iwae[100].se + 0.005
    draws = result.draws(200)
    np.testing.assert_array_equal(draws["intercept"], draws["beta"][:, 0])


# unknown noise sd: sigma ~ HalfNormal, sigma2 = sigma^2 ------------------------------------------------------------


def test_regression_with_unknown_noise_against_quadrature(data):
    """The model of the issue (positive sigma, scalar deterministic sigma2): every analysis runs, sigma2 is
    sigma^2 draw by draw, and AIS and the bounds agree with log p(y) by quadrature over sigma."""
    log_z = exact_sigma_log_evidence(*data)
    fit = vt.fit_vi(regression_sigma, "mvn", *data, steps=1000, lr=0.1, progress=False)
    draws = fit.draws(300)
    assert draws["sigma2"].shape == (300,) and (draws["sigma"] > 0).all()
    np.testing.assert_allclose(draws["sigma2"], draws["sigma"] ** 2, rtol=1e-6)
    b = vt.bounds(fit, ais=AIS, **FEW)
    assert b.log_evidence is None and b.gap.value > -4 * b.gap.se  # KL(q||p) >= 0, estimated against AIS
    assert b.elbo.value < log_z + 4 * b.elbo.se and b.iwae[100].value < log_z + 4 * b.iwae[100].se
    assert b.iwae[100].value > b.elbo.value - 4 * math.hypot(b.elbo.se, b.iwae[100].se)
    assert abs(b.ais.value - log_z) < max(4 * b.ais.se, 0.1)
    with pytest.raises(DataError, match="outside its support"):
        vt.fit_to_draws("mvn", {"beta": torch.randn(100, 2), "sigma": -torch.rand(100)}, *data,
                        model=regression_sigma)


# a Python loop over the data ---------------------------------------------------------------------------------------


def test_loop_model_bounds_draws_and_fit_to_draws(loop_data, loop_fit):
    """A loop of 10 observe statements: bounds against the exact log p(y), AIS, the constant deterministic
    site in every draw, and fit_to_draws from 20,000 exact draws (mean within 4 sd/sqrt(n); the variance
    within 4 sd of the sample variance, sqrt(2/n) relative)."""
    m, s, log_z = exact_normal_mean(loop_data)
    b = vt.bounds(loop_fit, log_evidence=log_z, ais=AIS, **FEW)
    q_loc, q_cov = guide_moments(loop_fit)
    kl = gaussian_kl(q_loc, q_cov, torch.tensor([m]), torch.tensor([[s**2]]))
    assert abs(b.gap.value - kl) < 4 * b.gap.se + 0.005
    assert b.iwae[100].value < log_z + 4 * b.iwae[100].se + 1e-6 * abs(log_z)  # (float32 rounding, exact fit)
    assert abs(b.ais.value - log_z) < max(4 * b.ais.se, 0.1)
    draws = loop_fit.draws(100)
    assert draws["mu"].shape == (100,) and (draws["n_obs"] == 10).all()
    n = 20_000
    exact = m + s * torch.randn(n, generator=torch.Generator().manual_seed(3))
    matched = vt.fit_to_draws("normal", {"mu": exact}, loop_data, model=loop_model)
    loc, scale = matched.params["AutoNormal.locs.mu"], matched.params["AutoNormal.scales.mu"]
    assert abs(float(loc) - m) < 4 * s / math.sqrt(n)
    assert abs(float(scale) ** 2 / s**2 - 1) < 4 * math.sqrt(2 / n)


def test_model_that_reads_a_latent_as_a_python_number(loop_data):
    """No particle plate, no vmap: one trace per particle. Still exact: log-weights, bounds and AIS."""
    m, s, log_z = exact_normal_mean(loop_data)
    fit = vt.fit_vi(python_number_model, "mvn", loop_data, steps=1000, lr=0.1, progress=False)
    draws = fit.draws(50)
    np.testing.assert_allclose(draws["mu_rounded"], np.round(draws["mu"], 3), atol=1e-6)
    small = vt.AIS(particles=20, temperatures=20, leapfrog=2, draws=200)
    b = vt.bounds(fit, k=(1, 10), batches=20, log_evidence=log_z, ais=small)
    q_loc, q_cov = guide_moments(fit)
    kl = gaussian_kl(q_loc, q_cov, torch.tensor([m]), torch.tensor([[s**2]]))
    assert abs(b.gap.value - kl) < 4 * b.gap.se + 0.005
    assert abs(b.ais.value - log_z) < max(4 * b.ais.se, 0.1)


# local latents, per data point ----------------------------------------------------------------------------------


def test_per_point_bounds_on_a_model_that_does_not_broadcast():
    """z_i ~ N(0,1), x_i ~ N(z_i, 1), q(z_i) = N(x_i/2, 1): log p(x_i) = log N(x_i; 0, 2), KL(q||p) per point
    = log sqrt(1/2) + 1/2 (the posterior is N(x_i/2, 1/2)); IWAE-1000 per point is within ~1e-3 of log p."""
    x = torch.linspace(-2, 2, 50)
    log_z = float(dist.Normal(0.0, math.sqrt(2.0)).log_prob(x).sum())
    b = vt.bounds(local_model, local_guide, x, k=(1, 1000), log_evidence=log_z, batches=20)
    assert b.per == "data point (plate 'data', 50 points)"
    kl = 50 * (0.5 * math.log(0.5) + 0.5)
    assert abs(b.elbo.value - (log_z - kl)) < 4 * b.elbo.se
    assert abs(b.iwae[1000].value - log_z) < 4 * b.iwae[1000].se + 0.01


# no hidden global state; typed errors -------------------------------------------------------------------------------


def test_analyses_leave_the_callers_random_streams_and_threads_alone(data, regression_fit, loop_fit, loop_data):
    """Draws from torch's, numpy's and Python's global generators continue exactly as without the calls
    between them, and torch's thread count is unchanged."""

    def analyses():
        for fit in (regression_fit, loop_fit):
            fit.draws(50)
            fit.log_weights(50)
            fit.elbo(50)
        vt.bounds(regression_fit, k=(1, 10), batches=5, ais=vt.AIS(particles=5, temperatures=5, draws=100))
        vt.bounds(loop_fit, k=(1, 10), batches=5, ais=vt.AIS(particles=5, temperatures=5, start="prior", draws=100))
        vt.fit_to_draws("mvn", {"beta": beta}, *data, model=regression)
        log_weights = lambda rows, n: torch.randn(n, len(rows))  # noqa: E731 - draws from the global stream
        per_point_iwae.iwae(log_weights, torch.zeros(3, 1), 10)
        per_point_iwae.elbo(log_weights, torch.zeros(3, 1), 10)

    beta = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))

    def run(calls):
        torch.manual_seed(7), np.random.seed(7), random.seed(7)
        calls()
        return torch.rand(3), np.random.rand(3), random.random(), torch.get_num_threads()

    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # not the 1 thread that these small models run on
    try:
        expected = run(lambda: None)
        got = run(analyses)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2:] == expected[2:] == (got[2], 2)


def test_bad_arguments_raise_typed_errors(data, loop_fit, loop_data):
    with pytest.raises(ConfigError, match="exceeds the limit"):
        vt.bounds(loop_fit, k=(1, 10**6), batches=100)
    with pytest.raises(ConfigError, match="positive whole numbers"):
        vt.bounds(loop_fit, k=(1, 2.5))
    with pytest.raises(ConfigError, match="ais must be"):
        vt.bounds(loop_fit, ais="yes")
    with pytest.raises(DataError, match="NaN or infinite"):
        vt.fit_to_draws("normal", {"mu": torch.tensor([0.0, float("nan"), 1.0])}, loop_data, model=loop_model)
    with pytest.raises(DataError, match="do not vary"):
        vt.fit_to_draws("normal", {"mu": torch.ones(10)}, loop_data, model=loop_model)
    with pytest.raises(DataError, match="singular"):
        line = torch.randn(100)
        vt.fit_to_draws("mvn", {"beta": torch.stack([line, 2 * line], 1)}, *data, model=regression)
