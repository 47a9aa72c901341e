"""posteriordb's Gaussian regressions (earnings, kidiq, mesquite, nes) against their closed-form posterior.

With a flat prior on beta (our Normal(0, flat_scale) moves no mean by more than 0.0012 posterior sds on these
data), y ~ N(X beta, sigma) has beta | sigma, y ~ N(b, sigma^2 (X'X)^-1), b the least squares fit, and
p(sigma | y) proportional to p(sigma) sigma^-(N-K) exp(-S / 2 sigma^2), S the residual sum of squares. So
E[beta] = b, Var(beta_k) = E[sigma^2] (X'X)^-1_kk and E[sigma], E[sigma^2] are one-dimensional integrals under
the pair's own sigma prior. Checked against posteriordb's reference draws, this validates each translation's
``design`` (Stan's transformed data) and sigma prior without a sampler.
"""

import arviz as az
import numpy as np
import pytest
import torch
from scipy import integrate

from vi_toolkit import posteriordb
from vi_toolkit.models.pdb_regression import GaussianRegression, design_matrix
from vi_toolkit.models.posteriordb_targets import posteriordb_args, posteriordb_pair, translations

ROOT = posteriordb.default_root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="posteriordb data (../shared/data/posteriordb) not found")

NAMES = sorted(name for name, pair in translations().items()
               if ROOT is not None and (ROOT / name).is_dir()
               and isinstance(posteriordb_pair(name), GaussianRegression))


def exact_moments(pair, args):
    """(E beta, sd beta, E sigma, sd sigma) of the flat-beta-prior posterior, by least squares and
    Simpson's rule on 20,001 points."""
    y, columns = pair.design(*(a.double() for a in args))
    X = design_matrix(columns, len(y)).double()
    n, k = X.shape
    b = torch.linalg.lstsq(X, y.unsqueeze(-1)).solution.squeeze(-1)
    rss = float((y - X @ b).square().sum())
    mode = (rss / (n - k)) ** 0.5
    # sd(sigma) / sigma is about 1 / sqrt(2 (N - K)) <= 0.11 here: [mode / 3, 3 mode] holds all the mass
    sigma = torch.linspace(mode / 3, 3 * mode, 20001, dtype=torch.float64)
    log_p = pair.sigma_prior().log_prob(sigma) - (n - k) * sigma.log() - rss / (2 * sigma**2)
    p = (log_p - log_p.max()).exp().numpy()
    moments = [integrate.simpson(p * sigma.numpy() ** j, x=sigma.numpy()) for j in range(3)]
    e_sigma, e_sigma2 = moments[1] / moments[0], moments[2] / moments[0]
    sd_beta = (e_sigma2 * torch.linalg.inv(X.T @ X).diagonal()).sqrt()
    return b.numpy(), sd_beta.numpy(), e_sigma, (e_sigma2 - e_sigma**2) ** 0.5


@pytest.mark.parametrize("name", NAMES)
def test_reference_moments_match_the_closed_form(name):
    pair = posteriordb_pair(name)
    post = posteriordb.load(ROOT / name)
    with torch.no_grad():
        mean, sd, sigma_mean, sigma_sd = exact_moments(pair, posteriordb_args(pair, post.data))
    labels = [f"beta[{i}]" for i in range(len(mean))] + ["sigma"]
    exact_mean, exact_sd = np.append(mean, sigma_mean), np.append(sd, sigma_sd)
    chains = [post.reference[label] for label in labels]  # (10 chains, 1000 draws) each
    mcse_mean = np.array([az.mcse(c, method="mean") for c in chains])
    mcse_sd = np.array([az.mcse(c, method="sd") for c in chains])
    draws_mean = np.array([c.mean() for c in chains])
    draws_sd = np.array([c.std(ddof=1) for c in chains])
    # within 4.5 Monte Carlo standard errors (ArviZ's, from 10,000 autocorrelated reference draws): over the
    # ~200 quantities of all these posteriors, a false alarm has probability ~200 x 7e-6 = 1e-3
    z_mean = (draws_mean - exact_mean) / mcse_mean
    z_sd = (draws_sd - exact_sd) / mcse_sd
    assert np.abs(z_mean).max() < 4.5, dict(zip(labels, z_mean.round(2)))
    assert np.abs(z_sd).max() < 4.5, dict(zip(labels, z_sd.round(2)))
