"""`vae-estimators` (questions 7 and 10): the KL estimators against each other, importance sampling against the
exact log p(x) of a linear-Gaussian VAE."""

import math

import pandas as pd
import pytest
import torch

from vi_toolkit import experiments, models
from vi_toolkit.experiment import build_config, run_experiment
from vi_toolkit.isolation import isolated
from vi_toolkit.run_folder import RunFolder


def _vae(seed=0):
    return models.get("vae", x_dim=6, z_dim=2, hidden=(16,), decoder="gaussian", seed=seed)


def test_the_monte_carlo_kl_has_the_closed_form_as_its_mean():
    """mean_i [log q(z_i|x) - log p(z_i)], z_i ~ q, is unbiased for KL(q(z|x) || p(z)): 40 independent estimates
    from 100 draws each per row agree with the closed form within 4 standard errors of their mean (per row)."""
    vae = _vae()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0)) * 2
    with torch.no_grad(), isolated(0):
        exact = vae.kl(x)
        estimates = torch.stack([vae.kl(x, n=100) for _ in range(40)])
    se = estimates.std(0) / math.sqrt(40)
    assert torch.all((estimates.mean(0) - exact).abs() < 4 * se)
    assert torch.all(exact > 0)


def test_both_elbo_estimators_estimate_the_same_bound_below_the_exact_log_likelihood():
    """The one-draw ELBO with the KL in closed form and by Monte Carlo have the same mean (4 combined standard
    errors over 4000 draws per row), and for a linear-Gaussian VAE it lies below the exact log p(x)."""
    vae = models.get("vae", x_dim=4, z_dim=2, hidden=(), decoder="gaussian", decoder_scale=0.5, seed=0)
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), isolated(0):  # 4000 copies of the rows: one draw each
        draws = {kl: vae.elbo(x.expand(4000, *x.shape), kl) for kl in ("analytic", "monte-carlo")}
    means = {kl: d.mean(0) for kl, d in draws.items()}
    se = torch.sqrt(sum(d.var(0) for d in draws.values()) / 4000)
    assert torch.all((means["analytic"] - means["monte-carlo"]).abs() < 4 * se)
    assert torch.all(means["analytic"] + 4 * se < vae.exact_log_likelihood(x))
    assert float(draws["analytic"].var(0).mean()) < float(draws["monte-carlo"].var(0).mean())


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    experiment = experiments.get("vae-estimators")
    config = build_config(experiment, overrides={"points": 200, "steps": 100, "probes": 2, "repeats": 10,
                                                 "eval_points": 40, "pool": 1000, "ks": "1,10,100,1000"})
    folder = RunFolder.create(tmp_path_factory.mktemp("run") / "vae-estimators", meta={})
    run_experiment(experiment, config, folder, seed=0)
    return {name: pd.read_csv(folder.path / "tables" / f"{name}.csv")
            for name in ("kl-fits", "kl-gradient-variance", "iwae-curve", "iwae-per-point")}


def test_importance_sampling_with_q_is_unbiased_for_p_x_and_iwae_climbs_to_the_exact_log_p_x(small_run):
    """Per test point, w / p(x) averages to 1 (the pooled mean over 40 points of the per-point means of 1000
    ratios, within 4 standard errors over points); log p(x) - IWAE-k is >= 0 up to Monte Carlo error and falls
    with k (ELBO gap > IWAE-10 gap > IWAE-1000 gap, on the mean over points)."""
    per_point, curve = small_run["iwae-per-point"], small_run["iwae-curve"]
    ratio = per_point.p_hat_over_p
    assert abs(ratio.mean() - 1) < 4 * ratio.std() / math.sqrt(len(ratio))
    gaps = curve.set_index("k").mean_gap
    assert gaps[1] > gaps[10] > gaps[1000] > -3 * curve.set_index("k").se_gap[1000]
    fits = small_run["kl-fits"]
    assert (fits.gap > -3 * fits.gap_se).all()  # log p(x) - ELBO = KL(q || posterior) >= 0
    variance = small_run["kl-gradient-variance"]
    assert (variance.variance > 0).all() and set(variance.estimator) == {"closed form", "Monte Carlo"}
