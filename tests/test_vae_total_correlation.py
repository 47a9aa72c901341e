"""`vae-total-correlation` (question 6): the Gaussian total correlation, the aggregate posterior's covariance and
the full-covariance encoder against closed forms."""

import math

import pandas as pd
import torch

from vi_toolkit import experiments, models
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.isolation import isolated
from vi_toolkit.models.vae import gaussian_total_correlation
from vi_toolkit.run_folder import RunFolder


def test_gaussian_total_correlation_of_a_correlated_pair():
    """Two unit-variance Gaussians with correlation rho share I = -log(1 - rho^2) / 2 nats; a diagonal
    covariance has none."""
    for rho in (0.0, 0.5, 0.9):
        cov = torch.tensor([[2.0, rho * 2.0], [rho * 2.0, 2.0]], dtype=torch.float64)
        assert abs(gaussian_total_correlation(cov) + math.log(1 - rho**2) / 2) < 1e-9


def test_aggregate_covariance_of_a_linear_encoder():
    """A linear encoder with fixed scale s: q(z) has covariance Cov_n(A x_n) + s^2 I (the law of total variance)."""
    vae = models.get("vae", x_dim=3, z_dim=2, hidden=(), encoder_scale=0.3, decoder="gaussian", seed=0)
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    loc = vae.encoder.net(x).detach()
    expected = torch.cov(loc.T, correction=0) + 0.09 * torch.eye(2)
    torch.testing.assert_close(vae.aggregate_covariance(x), expected)


def test_full_covariance_encoder_kl_and_usage():
    """A full-covariance encoder's closed-form KL to N(0, I) is the mean of its Monte Carlo estimate (40 repeats
    of 200 draws, 4 standard errors), and its per-unit KL uses the marginal variances, which are the diagonal
    of L L^T."""
    vae = models.get("vae", x_dim=4, z_dim=3, hidden=(8,), encoder_covariance="full", decoder="gaussian", seed=0)
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), isolated(0):
        exact = vae.kl(x)
        estimates = torch.stack([vae.kl(x, n=200) for _ in range(40)])
        q = vae.encode(x)
    assert torch.all((estimates.mean(0) - exact).abs() < 4 * estimates.std(0) / math.sqrt(40))
    torch.testing.assert_close(q.variance, torch.diagonal(q.scale_tril @ q.scale_tril.mT, dim1=-2, dim2=-1))
    assert float(vae.latent_usage(x).kl.sum()) <= float(exact.mean()) + 1e-5  # KL of the marginals <= joint KL


def test_the_experiment_reports_no_correlation_within_a_diagonal_q(tmp_path):
    experiment = experiments.get("vae-total-correlation")
    config = build_config(experiment, overrides={"epochs": 1, "z_dim": 3})
    folder = RunFolder.create(tmp_path / "run", meta={})
    run_experiment(experiment, config, folder, seed=0)
    table = pd.read_csv(folder.path / "tables" / "total-correlation.csv").set_index("encoder")
    assert abs(table.mean_tc_of_q_z_given_x["diagonal q(z|x)"]) < 1e-6
    assert (table.aggregate_tc > -1e-9).all()
