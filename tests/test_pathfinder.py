"""Pathfinder against exact answers: a correlated 5-D Gaussian, a conjugate regression written with ``x @ beta``
and an unstandardized predictor, a HalfNormal scale (posterior and evidence by quadrature); NUTS started from it.

Why the single-path answers are exact on Gaussian targets: the best Gaussian's mean is a Newton step u - Sigma g
from an L-BFGS iterate, and its covariance Sigma is the inverse-Hessian estimate from the last pairs (s, z). Each
pair keeps its secant condition Sigma z = s only where the steps are conjugate, which takes exact line searches
on a quadratic; Pathfinder's secant step along each search direction is exactly that minimum, so once D pairs
are in the memory (D = 5 <= 6) Sigma is the exact covariance. With scipy's inexact line search (before) the 5-D
estimate was off by up to 52% in a variance over seeds 0-5.
"""

import math
import random

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit.estimators import log_mean_exp
from vi_toolkit.mcmc import start_from

D = 5
_g = torch.Generator().manual_seed(1)
_A = torch.randn(D, D, generator=_g)
COV = _A @ _A.T + 0.5 * torch.eye(D)  # eigenvalues 1.1 to 16.2
MU = torch.arange(D, dtype=torch.float32)


def gaussian_model():
    pyro.sample("x", dist.MultivariateNormal(MU, covariance_matrix=COV))  # normalized: log Z = 0


def regression_model(x, y):
    beta = pyro.sample("beta", dist.Normal(0.0, 10.0).expand([2]).to_event(1))
    pyro.sample("y", dist.Normal(x @ beta, 2.0).to_event(1), obs=y)


@pytest.fixture(scope="module")
def regression():
    """Intercept and an unstandardized predictor (mean 50, sd 10): posterior correlation -0.99, condition number
    ~8e4. Exact posterior N(m, P), P = (X'X / 4 + I / 100)^-1, m = P X'y / 4."""
    g = torch.Generator().manual_seed(2)
    x = torch.stack([torch.ones(50), 50 + 10 * torch.randn(50, generator=g)], 1)
    y = x @ torch.tensor([1.0, 0.5]) + 2.0 * torch.randn(50, generator=g)
    xd = x.double()
    P = torch.linalg.inv(xd.T @ xd / 4 + torch.eye(2, dtype=torch.float64) / 100)
    return (x, y), P @ xd.T @ y.double() / 4, P


def scale_model(y):
    sigma = pyro.sample("sigma", dist.HalfNormal(1.0))
    pyro.deterministic("variance", sigma**2)
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Normal(0.0, sigma), obs=y)


@pytest.fixture(scope="module")
def gaussian_fit():
    return vt.pathfinder(gaussian_model, seed=0)


@pytest.mark.parametrize("seed", range(4))
def test_gaussian_target_is_exact(seed):
    """The best Gaussian of one path at the defaults is the exact posterior (see the module docstring): the target
    runs in float32, so exact means up to its rounding (measured over seeds 0-9: mean 4e-14 sd, variances 2e-7
    relative, KL 3e-14). Tolerances: 1e-5 sd, 1e-5 relative in variance and 1e-5 in correlation."""
    loc, cov = vt.pathfinder(gaussian_model, seed=seed).gaussian()
    sd = COV.diagonal().double().sqrt()
    assert ((loc - MU.double()) / sd).abs().max() < 1e-5
    assert (cov.diagonal() / COV.diagonal().double() - 1).abs().max() < 1e-5
    corr = cov / torch.outer(cov.diagonal().sqrt(), cov.diagonal().sqrt())
    assert (corr - COV.double() / torch.outer(sd, sd)).abs().max() < 1e-5


def test_gaussian_target(gaussian_fit):
    """The result as a posterior: float64 Gaussian of the right shape; importance weights whose log-mean-exp
    estimates log Z = 0 within 4 delta-method standard errors; the losses are the path's -ELBO estimates."""
    loc, cov = gaussian_fit.gaussian()
    sd = COV.diagonal().double().sqrt()
    assert loc.shape == (D,) and cov.shape == (D, D) and loc.dtype == torch.float64
    log_z = log_mean_exp(gaussian_fit.log_weights(4000, seed=1))
    assert abs(log_z.value) < 4 * log_z.se + 1e-6  # (+ float32 rounding: the paths are exact here)
    info = gaussian_fit.info
    assert info["method"] == "pathfinder" and info["num_paths"] == 1 and 0 <= info["khat"] < 0.7
    # L-BFGS evaluations, 10 ELBO draws per iterate (iterations + the start) and the 1000 importance draws
    assert info["grad_evals"] > 10 * (info["iterations"][0] + 1) + 1000
    assert len(gaussian_fit.losses) == info["iterations"][0] + 1
    assert gaussian_fit.losses[info["best_iteration"][0]] == pytest.approx(-info["elbo"])
    draws = gaussian_fit.draws(2000, seed=3)["x"]  # fresh draws of q: their moments are q's, within MC error
    np.testing.assert_allclose(draws.mean(0), loc.numpy(), atol=4 * float(sd.max()) / math.sqrt(2000))


def test_regression_with_x_at_beta_is_exact(regression):
    """Two latent coordinates: the latest two L-BFGS steps span them, so the inverse-Hessian estimate is the exact
    posterior covariance up to rounding (the model runs in float64 here; measured: mean 2e-14 sd, variances 4e-7
    relative, correlation 8e-9). Tolerances: 1e-6 sd, 1e-5 relative in variance, 1e-6 in correlation."""
    args, m, P = regression
    fit = vt.pathfinder(regression_model, *args, seed=0)
    loc, cov = fit.gaussian()
    sd = P.diagonal().sqrt()
    assert ((loc - m) / sd).abs().max() < 1e-6
    assert (cov.diagonal() / P.diagonal() - 1).abs().max() < 1e-5
    corr = cov[0, 1] / cov.diagonal().prod().sqrt()
    assert abs(float(corr - P[0, 1] / P.diagonal().prod().sqrt())) < 1e-6


def test_multi_path_resampling_recovers_the_gaussian():
    """4 paths, 1000 draws each, resampled by PSIS-smoothed weights against the paths' mixture: k-hat < 0.5 (the
    IS is reliable) and 4000 resampled draws give the exact mean and covariance within Monte Carlo error (seeds
    0-3: k-hat <= 0.31, means within 0.065 sd, variances within 7%). With an effective sample size of at least
    1000 (the pool's was ~2500 distinct draws of 4000), the se of a mean is
    <= sd/sqrt(1000) = 0.032 sd and of a variance <= sqrt(2/1000) = 4.5%: tolerances 4 se (0.13 sd, 18%)."""
    fit = vt.pathfinder(gaussian_model, num_paths=4, seed=0)
    assert fit.info["num_paths"] == 4 and len(fit.info["elbos"]) == 4
    assert fit.info["khat"] < 0.5
    x = fit.draws(4000, seed=0)["x"]
    sd = COV.diagonal().sqrt().numpy()
    assert np.abs((x.mean(0) - MU.numpy()) / sd).max() < 0.13
    cov = np.cov(x.T)
    assert np.abs(cov.diagonal() / COV.diagonal().numpy() - 1).max() < 0.18
    # log_weights are against the mixture: log-mean-exp estimates log Z = 0
    log_z = log_mean_exp(fit.log_weights(4000, seed=1))
    assert abs(log_z.value) < 4 * log_z.se + 1e-6  # (+ float32 rounding: the paths are exact here)


def test_positive_scale_site_against_quadrature():
    """sigma ~ HalfNormal(1), 30 observations N(0, 1.5^2): posterior mean and sd of sigma, and log p(y), by
    quadrature on a grid. A Gaussian in log sigma has a bias of its own here: Laplace's (exact mode and curvature
    of log p(u)) gives a lognormal whose mean is 0.10 sd low; the ELBO-selected iterate (10 draws per ELBO) lies
    near that mode (seed 0: mean 0.14 sd low, sd 3% high; seeds 0-3 gave sd up to 24% high). 4000 draws add MC
    error sd/sqrt(4000) = 0.016 sd. Tolerances: 0.25 sd on the mean, 10% on the sd. log-mean-exp of 4000
    weights estimates log p(y) within 4 se: importance weighting removes the bias (and checks the Jacobian of
    sigma = exp u).
    The deterministic site is sigma^2 at every draw; the InferenceData holds both sites and the log-likelihood."""
    y = 1.5 * torch.randn(30, generator=torch.Generator().manual_seed(4))
    fit = vt.pathfinder(scale_model, y, seed=0)
    grid = torch.linspace(1e-4, 6.0, 20001, dtype=torch.float64)
    log_post = (torch.distributions.HalfNormal(1.0).log_prob(grid)
                + torch.distributions.Normal(0.0, grid[:, None]).log_prob(y.double()).sum(1))
    step = float(grid[1] - grid[0])
    log_z = float(torch.logsumexp(log_post, 0)) + math.log(step)
    weights = (log_post - log_z).exp() * step
    mean = float((weights * grid).sum())
    sd = math.sqrt(float((weights * (grid - mean) ** 2).sum()))
    draws = fit.draws(4000, seed=0)
    sigma = draws["sigma"]
    assert sigma.shape == (4000,) and (sigma > 0).all()
    assert abs(sigma.mean() - mean) < 0.25 * sd
    assert abs(sigma.std() / sd - 1) < 0.10
    np.testing.assert_allclose(draws["variance"], sigma**2, rtol=1e-5)
    estimate = log_mean_exp(fit.log_weights(4000, seed=1))
    assert abs(estimate.value - log_z) < 4 * estimate.se + 1e-3
    idata = fit.to_inference_data(400, seed=0)
    assert idata.posterior["sigma"].shape == (4, 100) and idata.posterior.attrs["method"] == "pathfinder"
    assert idata.log_likelihood["y"].shape == (4, 100, 30)


def test_nuts_from_pathfinder(regression):
    """run_mcmc(init=pathfinder) starts chain c at Pathfinder draw c and counts leapfrog steps: a transition of
    tree depth d takes between 2^(d-1) and 2^d - 1 of them, and each of the 20 warm-up transitions at least one,
    so grad_evals >= sum 2^(d-1) over the draws + 20. The regression's posterior correlation of -0.99 is the
    mass matrix's to handle: no divergences."""
    args, m, P = regression
    fit = vt.pathfinder(regression_model, *args, seed=0)
    start = start_from(fit, regression_model, args, {}, chains=2, seed=5)
    beta = fit.draws(4000, seed=5)["beta"]
    np.testing.assert_array_equal(np.stack([v["beta"].numpy() for v in start.values]), beta[:2])
    np.testing.assert_allclose(start.inverse_mass.double().numpy(), np.cov(beta.T), rtol=0.01)
    nuts = vt.run_mcmc(regression_model, *args, init=fit, draws=20, warmup=20, chains=1, seed=5, progress=False,
                       jit=False, parallel=False)
    assert nuts.info["init"] == {"method": "pathfinder", "guide": None, "mass": "dense"}
    depth = nuts.sample_stats["tree_depth"][0]
    assert nuts.info["grad_evals"] >= int((2.0 ** (depth - 1)).sum()) + 20
    assert nuts.divergences == 0


def test_caller_state_untouched():
    """Pathfinder, its draws, weights and InferenceData leave the caller's torch, numpy and random streams and
    torch's thread count as they were; the same seed gives the same fit."""
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    states = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate(), torch.get_num_threads())
    fit = vt.pathfinder(gaussian_model, seed=7, maxiter=3)
    fit.draws(10, seed=1), fit.log_weights(100, seed=2), fit.to_inference_data(100, seed=3)
    assert torch.equal(torch.get_rng_state(), states[0])
    assert np.array_equal(np.random.get_state()[1], states[1]) and random.getstate() == states[2]
    assert torch.get_num_threads() == states[3]
    again = vt.pathfinder(gaussian_model, seed=7, maxiter=3)
    assert torch.equal(again.gaussian()[1], fit.gaussian()[1])
