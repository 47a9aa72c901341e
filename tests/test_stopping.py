"""The default stopping rule on guides that are not Gaussian: hand-written Gamma, Beta and LogNormal guides on
conjugate pairs, whose exact posteriors are in the guide's family, so the ELBO's optimum is the exact posterior
and a converged fit's parameters equal its parameters up to the last steps' noise (well under 1%: the steps
end at lr/100 on sticking-the-landing gradients, whose noise vanishes at the optimum).

The Gamma case is the one the old rule stopped at step 600 with concentration 2 of the exact 64: its
concentration and rate are pinned only in ratio by the data (gradient noise correlated -0.99), so every
single-draw loss hides the slow gain along that ridge.
"""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import constraints

import vi_toolkit as vt

COUNTS = torch.tensor([2.0, 1, 4, 2, 0, 3, 2, 1, 2, 5, 1, 2, 3, 0, 2, 2, 1, 3, 2, 4, 1, 2, 2, 3, 1, 0, 2, 3, 2, 1, 4, 2])
FLIPS = torch.tensor([1.0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1,
                      0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 0])
LOG_Y = torch.tensor([1.2, 1.9, 0.8, 1.4, 1.1, 1.6, 0.9, 1.3, 1.5, 1.0, 1.7, 1.2, 1.4,
                      0.7, 1.8, 1.3, 1.1, 1.5, 1.2, 1.6, 1.0, 1.4, 1.3, 0.9, 1.2])


def poisson_gamma(y):
    lam = pyro.sample("lam", dist.Gamma(2.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Poisson(lam), obs=y)


def gamma_guide(y):
    a = pyro.param("a", torch.tensor(1.0), constraint=constraints.positive)
    b = pyro.param("b", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("lam", dist.Gamma(a, b))


def bernoulli_beta(y):
    p = pyro.sample("p", dist.Beta(1.0, 1.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.Bernoulli(p), obs=y)


def beta_guide(y):
    a = pyro.param("a", torch.tensor(1.0), constraint=constraints.positive)
    b = pyro.param("b", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("p", dist.Beta(a, b))


def lognormal_scale(y):
    """y_i ~ LogNormal(log s, 0.5), s ~ LogNormal(0, 3): log s | y is Normal, s | y LogNormal."""
    s = pyro.sample("s", dist.LogNormal(0.0, 3.0))
    with pyro.plate("data", len(y)):
        pyro.sample("y", dist.LogNormal(torch.log(s), 0.5), obs=y)


def lognormal_guide(y):
    m = pyro.param("m", torch.tensor(0.0))
    v = pyro.param("v", torch.tensor(1.0), constraint=constraints.positive)
    pyro.sample("s", dist.LogNormal(m, v))


def exact_lognormal(y):
    precision = 1 / 3.0**2 + len(y) / 0.5**2
    return float(torch.log(y).sum() / 0.5**2 / precision), precision**-0.5


CASES = {
    "gamma": (poisson_gamma, gamma_guide, COUNTS, (2.0 + float(COUNTS.sum()), 1.0 + len(COUNTS))),
    "beta": (bernoulli_beta, beta_guide, FLIPS, (1.0 + float(FLIPS.sum()), 1.0 + float((1 - FLIPS).sum()))),
    "lognormal": (lognormal_scale, lognormal_guide, LOG_Y, exact_lognormal(LOG_Y)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_default_fit_of_a_non_gaussian_guide_reaches_the_exact_posterior(case):
    model, guide, data, exact = CASES[case]
    fit = vt.fit_vi(model, guide, data, seed=0, progress=False)
    fitted = [float(v) for v in fit.params.values()]
    for got, want in zip(fitted, exact):
        assert abs(got / want - 1) < 0.03, (case, fitted, exact, fit.info["steps_run"])


def test_more_steps_do_not_move_a_converged_fit():
    """A converged fit is where the ELBO is maximal: allowing twice the steps changes its parameters by no more
    than the last steps' noise (measured: under 0.5%; asserted 1.5%)."""
    model, guide, data, exact = CASES["lognormal"]
    default = vt.fit_vi(model, guide, data, seed=1, progress=False)
    longer = vt.fit_vi(model, guide, data, seed=1, steps=4000, progress=False)
    for a, b in zip(default.params.values(), longer.params.values()):
        assert abs(float(a) / float(b) - 1) < 0.015
