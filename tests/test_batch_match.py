"""Batch-and-match (vt.batch_and_match) against exact Gaussian posteriors. For a Gaussian target the score is
linear, so the target is a fixed point of every BaM step whatever the batch, and (batch larger than the
dimension) the only one: BaM converges to the exact mean and covariance with no Monte Carlo error, and the
tolerances below are floating point's, scaled by the posterior's condition number."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

import vi_toolkit as vt
from vi_toolkit.batch_match import bam_step

from exact_gaussians import MU, SIGMA, global_state, lognormal_regression, mvn_model, same_state

def test_recovers_a_correlated_gaussian_exactly():
    """From N(0, I) (init=False: the default Laplace start would be the answer already)."""
    result = vt.batch_and_match(mvn_model, MU, SIGMA, batch_size=8, steps=50, seed=0, init=False)
    loc, covariance = result.gaussian()
    # float64 throughout: after 50 steps the error is at round-off (measured 3e-15)
    torch.testing.assert_close(loc, MU.double(), rtol=0, atol=1e-10)
    torch.testing.assert_close(covariance, SIGMA.double(), rtol=0, atol=1e-10)
    assert result.grad_evals == 8 * 50 and len(result.losses) == 50
    assert result.info["method"] == "batch-match" and result.info["learning_rate"] == 8 * 4
    draws = result.draws(4000, seed=1)
    np.testing.assert_allclose(draws["total"], draws["z"].sum(1), rtol=1e-5, atol=1e-5)
    # 4000 draws: sample mean within 4 standard errors of MU
    assert (np.abs(draws["z"].mean(0) - MU.numpy()) < 4 * SIGMA.diagonal().sqrt().numpy() / np.sqrt(4000)).all()


def test_the_target_is_a_fixed_point_of_one_step():
    # q_t = p exactly: any batch (here 3 draws < D + 1, so C is singular) and any learning rate leave it there
    mu, sigma = MU.double().numpy(), SIGMA.double().numpy()
    z = np.random.default_rng(0).standard_normal((3, 4)) * 2
    score = -(z - mu) @ np.linalg.inv(sigma)
    for lam in (0.1, 1.0, 100.0):
        mean, covariance = bam_step(mu, sigma, z, score, lam)
        np.testing.assert_allclose(mean, mu, atol=1e-12)
        np.testing.assert_allclose(covariance, sigma, atol=1e-12)


def test_user_written_regression_with_a_positive_site_through_compare():
    # x @ beta, an unstandardized predictor and a positive site; the posterior in u = (beta, log sigma) is exactly
    # Gaussian, so the paper's constant rate for Gaussian targets converges geometrically (the decaying one,
    # from q_0 = N(0, I) 100 posterior sds wide, is still 2 sds off after 200 steps here); condition number
    # ~1e4, so the round-off floor is ~1e-9 relative (measured 2e-8 after 60 steps), asserted at 1e-6 in
    # posterior sds
    model, data, mean, covariance = lognormal_regression()
    before = global_state()
    result = vt.batch_and_match(model, *data, batch_size=4, steps=60, decay=False, seed=2)
    assert same_state(before, global_state())
    loc, fitted = result.gaussian()
    scale = covariance.diagonal().sqrt()
    assert ((loc - mean).abs() / scale).max() < 1e-6
    assert ((fitted - covariance).abs() / torch.outer(scale, scale)).max() < 1e-6
    reference = {"sigma": dist.LogNormal(float(mean[1]), float(scale[1]))}
    table = vt.compare({"bam": result}, reference, draws=4000)
    # exact q: the 1-Wasserstein distance of 4000 draws to the truth is Monte Carlo only, ~0.02-0.03 sds;
    # the importance weights are all equal to round-off (k-hat -inf: tied largest weights, or far below 0.5)
    assert table.loc[0, "kind"] == "batch-match" and table.loc[0, "w1_max"] < 0.08
    assert table.loc[0, "khat"] < 0.5


def test_a_model_that_runs_only_in_float32_fits_in_float32():
    # a float32 weight matrix held by the model (a closure, as an nn.Module would) in a matmul fails on float64
    # values, so the fit runs in float32: the posterior is N(S W'y, S), S = (I + W'W)^-1, recovered to float32's
    # round-off (~1e-6 relative, asserted at 1e-4)
    weights = torch.tensor([[1.0, 0.5], [0.2, 2.0], [-1.0, 0.3]])

    def model(y):
        z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        pyro.sample("y", dist.Normal(weights @ z, 1.0).to_event(1), obs=y)

    y = torch.tensor([1.0, -2.0, 0.5])
    w = weights.double()
    covariance = torch.linalg.inv(torch.eye(2, dtype=torch.float64) + w.T @ w)
    result = vt.batch_and_match(model, y, batch_size=4, steps=40, decay=False)
    loc, fitted = result.gaussian()
    assert result.info["dtype"] == "float32"
    torch.testing.assert_close(loc, covariance @ w.T @ y.double(), rtol=0, atol=1e-4)
    torch.testing.assert_close(fitted, covariance, rtol=0, atol=1e-4)


def test_default_start_is_laplace_and_fits_an_unstandardized_regression():
    """The regression of test_gaussian_start (x ~ 100 +- 15, intercept and slope correlated at -0.99, Normal(0,
    1000) priors, X @ beta): Gaussian, so BaM from the Laplace start stays on the exact posterior (to float
    rounding of the float32 model: 1e-3 sds, 1e-3 relative), and its gradient evaluations count the start's."""
    from test_gaussian_start import X, exact_posterior, regression, y

    mean, cov = exact_posterior()
    result = vt.batch_and_match(regression, X, y, seed=0)
    loc, covariance = result.gaussian()
    sd = cov.diagonal().sqrt()
    assert ((loc - mean).abs() / sd).max() < 1e-3
    assert ((covariance - cov).abs() / (sd[:, None] * sd[None, :])).max() < 1e-3
    start = result.info["start"]
    assert start["source"] == "laplace" and result.grad_evals == 16 * 200 + start["grad_evals"] > 16 * 200
    assert result.info["learning_rate"] == 16  # lambda_0 = B from a start (B D from N(0, I): the first test)


def test_init_at_the_target_stays_there():
    # q_0 = the target: a fixed point of every step (see above), so one step leaves it at round-off
    result = vt.batch_and_match(mvn_model, MU, SIGMA, batch_size=2, steps=1, init=(MU, SIGMA))
    loc, covariance = result.gaussian()
    torch.testing.assert_close(loc, MU.double(), rtol=0, atol=1e-10)
    torch.testing.assert_close(covariance, SIGMA.double(), rtol=0, atol=1e-10)
    with pytest.raises(vt.ConfigError, match="init must be"):
        vt.batch_and_match(mvn_model, MU, SIGMA, steps=1, init=(MU[:2], SIGMA))


def test_without_a_laplace_start_it_starts_from_the_standard_normal_at_the_papers_rate():
    from test_gaussian_start import flat

    result = vt.batch_and_match(flat, batch_size=4, steps=3, seed=0)
    assert result.info["start"]["source"] == "none" and "flat" in result.info["start"]["reason"]
    assert result.info["learning_rate"] == 4 * 2  # B D, as from init=False
