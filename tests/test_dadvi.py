"""DADVI (vt.dadvi) against closed forms: on Gaussian targets its fixed-draw optimum, its Hessian and hence its
linear-response covariance are known exactly given the draws, and tend to the exact posterior as M grows."""

import numpy as np
import pyro.distributions as dist
import pytest
import torch

import vi_toolkit as vt

from exact_gaussians import MU, SIGMA, global_state, lognormal_regression, mvn_model, same_state

@pytest.fixture(scope="module")
def fit():
    return vt.dadvi(mvn_model, MU, SIGMA, num_draws=30, seed=0)


def fixed_draw_optimum_conditions(result):
    """The stationarity conditions of F for the Gaussian target, given the draws eps (M, D): with eps_bar their
    mean and S_hat their (1/M) covariance, m = mu - sigma * eps_bar and sigma_d (Lambda diag(sigma) S_hat)_dd = 1
    (Lambda = SIGMA^-1); returned as the two residuals."""
    eps = result.fixed_draws
    lam = torch.linalg.inv(SIGMA.double())
    m, variances = result.mean_field
    sigma = variances.sqrt()
    eps_bar, s_hat = eps.mean(0), torch.cov(eps.T, correction=0)
    return m - (MU.double() - sigma * eps_bar), sigma * (lam * s_hat * sigma[None, :]).sum(1) - 1


def closed_form_hessian(result):
    """The Hessian of F(m, s) = 1/2 mean_m (a + sigma*eps_m)' Lambda (a + sigma*eps_m) - sum(s) (a = m - mu,
    sigma = exp(s)): H_mm = Lambda, H_ms = Lambda diag(sigma * eps_bar), H_ss = diag(sigma) (Lambda o S) diag(sigma)
    + diag(sigma * (Lambda a) * eps_bar + sigma * ((Lambda o S) sigma)), S = mean_m eps_m eps_m'."""
    eps = result.fixed_draws
    lam = torch.linalg.inv(SIGMA.double())
    m, variances = result.mean_field
    sigma, a = variances.sqrt(), m - MU.double()
    eps_bar, s = eps.mean(0), eps.T @ eps / len(eps)
    h_ms = lam * (sigma * eps_bar)[None, :]
    h_ss = (sigma[:, None] * lam * s * sigma[None, :]
            + torch.diag(sigma * (lam @ a) * eps_bar + sigma * ((lam * s) @ sigma)))
    return torch.cat([torch.cat([lam, h_ms], 1), torch.cat([h_ms.T, h_ss], 1)])


def test_fixed_draw_optimum_is_the_closed_form(fit):
    # Newton in float64 to a gradient norm of 1e-8: both conditions hold to ~1e-9
    mean_residual, variance_residual = fixed_draw_optimum_conditions(fit)
    assert mean_residual.abs().max() < 1e-7
    assert variance_residual.abs().max() < 1e-7
    assert fit.info["converged"] and fit.info["dtype"] == "float64"


def test_lrvb_covariance_is_the_inverse_hessian_block(fit):
    expected = torch.linalg.inv(closed_form_hessian(fit))[:4, :4]
    _, covariance = fit.gaussian()
    torch.testing.assert_close(covariance, expected, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(fit.lrvb_covariance, expected, rtol=1e-6, atol=1e-9)


def test_lrvb_is_the_exact_covariance_and_mean_field_the_exact_mean_field_fit():
    # For a Gaussian target the population objective (M -> infinity) has the exact mean-field optimum m = mu,
    # sigma_d^2 = 1 / Lambda_dd and LRVB covariance SIGMA. With M draws the mean is off by sigma * eps_bar
    # (sd sigma / sqrt(M), so 4 standard errors bound it), the variances by the draws' sample variances S_hat_dd
    # (sd sqrt(2/M) = 0.045 relative at M = 1000: 15% is over 3 sd) and the LRVB covariance by a term
    # second order in eps_bar (H_ms is proportional to it: ~1/M = 1e-3 relative, asserted at 2e-2).
    result = vt.dadvi(mvn_model, MU, SIGMA, num_draws=1000, seed=1)
    loc, covariance = result.gaussian()
    m, variances = result.mean_field
    exact_mean_field = 1 / torch.linalg.inv(SIGMA.double()).diagonal()
    assert ((m - MU.double()).abs() < 4 * result.mean_se).all()
    torch.testing.assert_close(variances, exact_mean_field, rtol=0.15, atol=0)
    scale = SIGMA.double().diagonal().sqrt()
    assert ((covariance - SIGMA.double()).abs() / torch.outer(scale, scale)).max() < 2e-2
    torch.testing.assert_close(loc, m)


def test_standard_errors_match_the_draws(fit):
    # m - mu = -sigma * eps_bar: over draw sets its sd is sigma sqrt(S_hat_dd / M), what the sandwich estimates
    # (it differs by terms of order eps_bar^2 ~ 1/M from the s-block coupling; asserted at 15%)
    eps = fit.fixed_draws
    sigma = fit.mean_field[1].sqrt()
    expected = sigma * (eps.var(0) / len(eps)).sqrt()
    torch.testing.assert_close(fit.mean_se, expected, rtol=0.15, atol=0)
    # objective SE: the sd of the per-draw terms 1/2 (z_m - mu)' Lambda (z_m - mu) over sqrt(M)
    lam = torch.linalg.inv(SIGMA.double())
    z = fit.mean_field[0] + sigma * eps - MU.double()
    terms = 0.5 * ((z @ lam) * z).sum(1)
    assert fit.objective_se == pytest.approx(float(terms.std() / len(eps) ** 0.5), rel=1e-9)


def test_mean_field_draws_and_deterministic_sites(fit):
    mean_field = vt.dadvi(mvn_model, MU, SIGMA, num_draws=30, seed=0, lrvb=False)
    loc, covariance = mean_field.gaussian()
    torch.testing.assert_close(covariance, torch.diag(fit.mean_field[1]))
    draws = mean_field.draws(4000, seed=3)
    assert draws["z"].shape == (4000, 4) and draws["total"].shape == (4000,)
    np.testing.assert_allclose(draws["total"], draws["z"].sum(1), rtol=1e-5, atol=1e-5)
    # 4000 draws: the sample sd is within 5% (over 3 sd of its sampling error sqrt(1/(2n)) = 1.1%)
    np.testing.assert_allclose(draws["z"].std(0), covariance.diagonal().sqrt().numpy(), rtol=0.05)
    assert mean_field.info["method"] == "dadvi" and not mean_field.info["lrvb"]
    idata = mean_field.to_inference_data(400, seed=3)
    assert idata.posterior.attrs["method"] == "dadvi" and idata.posterior["z"].shape == (4, 100, 4)
    np.testing.assert_array_equal(idata.posterior["z"].values.reshape(400, 4), mean_field.draws(400, seed=3)["z"])
    assert mean_field.grad_evals % 30 == 0 and mean_field.grad_evals >= 30 * (2 * 4 + 1)
    assert len(mean_field.losses) == mean_field.info["newton_iterations"] + mean_field.info["polish_steps"]
    assert mean_field.losses[-1] == pytest.approx(mean_field.info["final_objective"])


def test_positive_site_user_written_regression_through_compare():
    # x @ beta, an unstandardized predictor and a positive site; the posterior in u = (beta, log sigma) is exactly
    # Gaussian, so LRVB is exact up to the draws (as above)
    model, data, mean, covariance = lognormal_regression()
    before = global_state()
    result = vt.dadvi(model, *data, num_draws=30)
    assert same_state(before, global_state())
    loc, lrvb = result.gaussian()
    scale = covariance.diagonal().sqrt()
    # mean within 4 of its own standard errors; LRVB second order in eps_bar (M = 30: 1/M ~ 3%, asserted 15%)
    assert ((loc - mean).abs() < 4 * result.mean_se).all()
    assert ((lrvb - covariance).abs() / torch.outer(scale, scale)).max() < 0.15
    reference = {"sigma": dist.LogNormal(float(mean[1]), float(scale[1]))}
    table = vt.compare({"dadvi": result}, reference, draws=4000)
    # 1-Wasserstein in reference sds: the mean's offset (< 4 mean_se, which is 0.03 sds here) plus ~0.03 Monte
    # Carlo error of 4000 draws (measured 0.04)
    assert table.loc[0, "kind"] == "dadvi" and table.loc[0, "w1_max"] < 0.15
