"""The numerics inside the posteriordb translations of time series, HMMs and ODE models, against exact answers:
the HMM forward algorithm against enumeration of every hidden path, the RK4 ODE solutions against
``scipy.integrate.solve_ivp`` at tight tolerance, the GARCH scan against the plain recursion, and Stan's
restricted normal priors against scipy's truncated normal. Needs no posteriordb data."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats
from scipy.integrate import solve_ivp

import vi_toolkit as vt
from vi_toolkit import models
from vi_toolkit.errors import DataError
from vi_toolkit.isolation import isolated
from vi_toolkit.log_weights import log_weights
from vi_toolkit.models.pdb_garch import garch_variance
from vi_toolkit.models.pdb_hmm import hmm_log_likelihood
from vi_toolkit.models.pdb_lotka_volterra import lotka_volterra
from vi_toolkit.models.pdb_one_comp import concentration
from vi_toolkit.models.pdb_restricted import RestrictedNormals
from vi_toolkit.models.posteriordb_targets import posteriordb_args


def brute_force_hmm(log_trans, log_emit):
    """log sum over all K^N paths z of exp(sum_t e(t, z_t) + sum_{t>1} log theta[z_{t-1}, z_t])."""
    N, K = log_emit.shape
    terms = [sum(log_emit[t, z[t]] for t in range(N)) + sum(log_trans[z[t - 1], z[t]] for t in range(1, N))
             for z in itertools.product(range(K), repeat=N)]
    return torch.stack(terms).logsumexp(0)


@pytest.mark.parametrize("N,K", [(1, 2), (2, 2), (5, 2), (6, 3), (7, 2)])
def test_forward_algorithm_equals_enumeration_of_hidden_paths(N, K):
    gen = torch.Generator().manual_seed(N * 10 + K)
    log_trans = torch.randn(3, K, K, generator=gen, dtype=torch.float64).log_softmax(-1)
    log_emit = 3 * torch.randn(3, N, K, generator=gen, dtype=torch.float64)
    got = hmm_log_likelihood(log_trans, log_emit)  # a batch of 3 chains at once
    want = torch.stack([brute_force_hmm(log_trans[i], log_emit[i]) for i in range(3)])
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)  # exact up to float64 rounding


def test_forward_algorithm_keeps_tiny_probabilities_in_float32():
    """A chain whose likelihood is e^-2000 (underflows as a probability): the log-space recursion still gives it,
    as the float64 enumeration does, to float32 rounding (relative 1e-6)."""
    log_trans = torch.tensor([[0.9, 0.1], [0.2, 0.8]]).log()
    log_emit = torch.full((8, 2), -250.0) + torch.arange(16.0).reshape(8, 2)
    want = brute_force_hmm(log_trans.double(), log_emit.double())
    assert abs(hmm_log_likelihood(log_trans, log_emit).item() - want.item()) < 1e-6 * abs(want.item())


def test_garch_scan_equals_the_recursion():
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(37, generator=gen, dtype=torch.float64) * 2 + 5
    mu, alpha0, alpha1, beta1 = (torch.tensor([[v]], dtype=torch.float64) for v in (5.1, 1.2, 0.5, 0.3))
    sigma1 = torch.tensor(2.0, dtype=torch.float64)
    want = [sigma1**2]
    for t in range(1, len(y)):
        want.append(alpha0[0, 0] + alpha1[0, 0] * (y[t - 1] - mu[0, 0]) ** 2 + beta1[0, 0] * want[-1])
    torch.testing.assert_close(garch_variance(y, mu, alpha0, alpha1, beta1, sigma1)[0], torch.stack(want),
                               rtol=1e-12, atol=0)


# (theta, z_init): the reference posterior mean of hudson_lynx_hare-lotka_volterra and two corners ~3 sds out
LV_CASES = [([0.547, 0.0277, 0.800, 0.0241], [34.0, 5.94]), ([0.74, 0.040, 0.53, 0.014], [25.0, 7.5]),
            ([0.36, 0.015, 1.07, 0.034], [43.0, 4.3])]


def test_lotka_volterra_rk4_matches_solve_ivp():
    """Relative error below 1e-3 at every output time (measured 1.2e-4 over 200 reference draws): 0.4% of the
    measurement noise sigma ~ 0.25 on the log scale, negligible for the posterior."""
    ts = np.arange(1.0, 21.0)
    theta, z_init = (torch.tensor(v) for v in zip(*LV_CASES))
    got = lotka_volterra(theta, z_init, torch.tensor(ts)).numpy()  # the three cases as one batch
    for (th, z0), z in zip(LV_CASES, got):
        a, b, g, d = th
        sol = solve_ivp(lambda t, z: [(a - b * z[1]) * z[0], (-g + d * z[0]) * z[1]], (0, ts[-1]), z0,
                        t_eval=ts, method="DOP853", rtol=1e-10, atol=1e-10)
        assert np.abs(np.log(z) - np.log(sol.y.T)).max() < 1e-3


# (k_a, K_m, V_m): near the reference posterior median, and K_m at its 0.01% and 99.9% quantiles
ONE_COMP_CASES = [(0.76, 0.98, 0.90), (0.6, 1.2e-4, 0.45), (1.1, 84.0, 6.9), (0.55, 0.01, 0.5)]


def test_one_compartment_rk4_matches_solve_ivp():
    """Relative error below 2e-3 at every output time (measured 2.6e-4 over 200 reference draws, the K_m
    extremes included): 1.5% of the measurement noise sigma ~ 0.13 on the log scale."""
    times, D, V = np.arange(0.5, 10.01, 0.5), 30.0, 2.0
    k_a, K_m, V_m = (torch.tensor(v) for v in zip(*ONE_COMP_CASES))
    got = concentration(k_a, K_m, V_m, 0.0, D, V, torch.tensor(times))[..., 0].numpy()
    for (ka, km, vm), C in zip(ONE_COMP_CASES, got):
        sol = solve_ivp(lambda t, c: [math.exp(-ka * t) * D * ka / V - (vm / V) * c[0] / (km + c[0])],
                        (0, times[-1]), [0.0], t_eval=times, method="LSODA", rtol=1e-10, atol=1e-12)
        assert np.abs(np.log(C) - np.log(sol.y[0])).max() < 2e-3


def test_restricted_normals_are_stans_normal_on_the_support():
    """log density: the normal's, unnormalized as Stan's target; draws on theta > 0: scipy's truncated normal
    (Kolmogorov-Smirnov, 4,000 draws: p > 0.001 for a correct sampler fails one seed in 1,000)."""
    prior = RestrictedNormals([1.0, 0.05], [0.5, 0.05], "positive")
    value = torch.tensor([0.3, 0.02])
    torch.testing.assert_close(prior.log_prob(value), torch.distributions.Normal(prior.loc, prior.scale).log_prob(value))
    draws = prior.sample((4000,))
    assert (draws > 0).all()
    truncated = stats.truncnorm(-0.05 / 0.05, np.inf, loc=0.05, scale=0.05)
    assert stats.kstest(draws[:, 1].numpy(), truncated.cdf).pvalue > 1e-3
    ordered = RestrictedNormals([0.0, 3.0], 1.0, "positive_ordered").sample((500,))
    assert ordered.shape == (500, 2) and (ordered[:, 0] > 0).all() and (ordered.diff(dim=-1) > 0).all()


def small_data():
    """Small made-up data for every translation here (the model's arguments by name)."""
    gen = np.random.default_rng(0)
    series = np.cumsum(gen.normal(size=30)) * 0.1
    drive = {"K": 2, "N": 12, "u": gen.exponential(0.2, 12), "v": gen.exponential(20.0, 12),
             "alpha": [[4, 2], [2, 4]]}
    return {
        "ark": {"K": 3, "T": 30, "y": series},
        "garch11": {"T": 30, "y": series + 5, "sigma1": 1.0},
        "gp-pois-regr": {"x": np.linspace(-10, 10, 6), "k": [4, 9, 20, 30, 12, 3]},
        "hmm-example": {"N": 10, "K": 2, "y": gen.normal(5.0, 3.0, 10)},
        "hmm-drive-0": drive,
        "hmm-drive-1": {**drive, "u": gen.normal(size=12), "v": gen.normal(3.0, 1.0, 12), "tau": 0.1, "rho": 0.1},
        "lotka-volterra": {"N": 4, "ts": [1.0, 2.0, 3.0, 4.0], "y_init": [30.0, 4.0],
                           "y": [[47.2, 6.1], [70.2, 9.8], [77.4, 35.2], [36.3, 59.4]]},
        "one-comp": {"t0": 0.0, "D": 30.0, "V": 2.0, "times": [0.5, 1.0, 2.0], "C_hat": [5.7, 7.1, 9.8]},
    }


@pytest.mark.parametrize("name", sorted(small_data()))
def test_translation_broadcasts_and_its_guide_covers_its_model(name):
    """Every model runs vectorized over particles (Problem.broadcasts), and its mean-field guide, also
    vectorized, draws every latent site of the model inside its support (finite log-weights)."""
    pair = models.get(name)
    args = posteriordb_args(pair, small_data()[name])
    problem = vt.Problem.of(pair.model, *args)
    assert problem.broadcasts
    guide_sites = vt.Problem.of(pair.guide, *args).latent_shapes
    assert guide_sites == problem.latent_shapes
    with isolated(0):
        log_w = log_weights(pair.model, pair.guide, args, {}, 8, problem.max_plate_nesting)
    assert log_w.shape == (8,) and torch.isfinite(log_w).all()


@pytest.mark.parametrize("name,change,message", [
    ("ark", {"T": 31}, "length T=31"),
    ("garch11", {"sigma1": -1.0}, "sigma1"),
    ("gp-pois-regr", {"k": [4, 9, 20, -1, 12, 3]}, "counts"),
    ("hmm-example", {"K": 3}, "K = 2"),
    ("hmm-drive-0", {"u": -np.ones(12)}, "non-negative"),
    ("hmm-drive-1", {"tau": 0.0}, "tau and rho"),
    ("lotka-volterra", {"ts": [1.0, 3.0, 2.0, 4.0]}, "increasing"),
    ("one-comp", {"C_hat": [5.7, 0.0, 9.8]}, "positive"),
])
def test_bad_data_raise_data_errors_that_name_the_problem(name, change, message):
    with pytest.raises(DataError, match=message):
        posteriordb_args(models.get(name), {**small_data()[name], **change})
